"""What the phone may do (README "Phone"): SMS replies, keypresses during a call, unanswered calls.

The Twilio webhooks (:mod:`bot.pager.inbound`) hand each verified request here. Everything a
person does goes through :class:`bot.actions.Actions` (the Acknowledge button's code:
``POST /v1/tasks/{id}/claim``, stored, audited, shown on the task message), with an
:class:`~bot.outcomes.Actor` whose ``via`` is ``sms`` or ``phone``. No decision (approve or
reject) is ever taken by phone (README "Phone": "decisions stay in Discord where the person is
authenticated").

* The sender is the roster operator whose ``phone`` is the SMS's ``From`` (the call's
  ``To``); an unknown number changes nothing ("This number is not on the roster"). Their
  Discord roles (roster ``discord_user_id`` → guild member) decide whether they may
  acknowledge, exactly as for the button.
* The tasks "open for a phone" are the undecided, unacknowledged tasks whose SMS or call was
  sent to that operator (the ladder's deliveries).
* An unanswered call (``no-answer``, ``busy``, ``failed``, or ``completed`` without the task
  being acknowledged) calls the next operator of :func:`escalation.recipients.call_order`
  (skipping unreachable phones and those already called in that step) after
  ``ESCALATION_CALL_NEXT_AFTER_SECONDS``; each attempt is a stored ``call`` delivery of the
  step whose call went unanswered, the critical step or a repeat (unique per task, step and
  person; it names the unanswered call's callee, ``after``, and a repeated status callback
  of that call adds nothing), so it is audited, listed in the incident report, and resumed
  after a restart. A next-person call Twilio refuses (or a STOP-ed phone) adds the following
  person's call, due now (:meth:`escalation.executor.DeliveryExecutor.deliver_call`), placed
  here too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.outcomes import Actor, Outcome
from bot.roster import Operator, Roster
from escalation.deliveries import NewDelivery
from escalation.notices import sms_plain
from escalation.phone import Command, Keypress, parse_keypress, parse_reply, phone_ref, resolve_ref
from escalation.policy import StepKind
from escalation.ports import DeliveryRow
from escalation.recipients import call_order, next_fallback

if TYPE_CHECKING:
    from bot.bridge import Bridge
    from bot.ladder import LadderRuntime
    from bot.store import TrackedTask

__all__ = [
    "ANSWER_MAX_CHARS",
    "LISTED_TASKS",
    "NOT_ON_ROSTER",
    "SNOOZE_SECONDS",
    "UNANSWERED",
    "PhoneDesk",
]

log = logging.getLogger(__name__)

#: The answer to a number that is not on the roster (README "Phone").
NOT_ON_ROSTER = "This number is not on the roster. Nothing was changed."

#: ``SNOOZE <ref>`` snoozes reminders this long, seconds (README "Phone": "1 h").
SNOOZE_SECONDS = 3600.0

#: Final call statuses that mean nobody took the call (Twilio ``CallStatus``).
UNANSWERED = frozenset({"no-answer", "busy", "failed", "canceled"})

#: An SMS answer names at most this many open tasks; the others are counted ("+35 more").
LISTED_TASKS = 5

#: The longest SMS answer, characters: Twilio refuses a ``<Message>`` body over 1,600
#: characters (error 21617, "The concatenated message body exceeds the 1600 character
#: limit") and the person then gets nothing; at most four segments of GSM-7 text.
ANSWER_MAX_CHARS = 600

_HELP = "Commands: ACK <ref>, ACK (one open task), ACK ALL, SNOOZE <ref>, HELP, START."
_UNKNOWN = "Not understood. " + _HELP + " Decisions are made in Discord."


def _plain(text: str, limit: int = 300) -> str:
    """A Discord answer as plain SMS text: markup stars, backticks and emoji dropped, the
    rest in the GSM-7 basic set (:func:`escalation.notices.sms_plain`)."""
    return sms_plain(text.replace("**", "").replace("`", ""))[:limit]


def _late_fallback(row: DeliveryRow) -> bool:
    """A pending call of a fallback (:meth:`escalation.executor.DeliveryExecutor.fallback`),
    not a next-person call of this desk (``after``): its step placed it, unless the step had
    finished when it was added (then :meth:`PhoneDesk.place_due_calls` places it)."""
    return "fallback_for" in row.detail and "after" not in row.detail


def _listing(tasks: Sequence[TrackedTask]) -> str:
    """The open tasks' refs and short titles, the first :data:`LISTED_TASKS` of them; the
    others counted ("+35 more"), so an answer stays short however many are open."""
    listed = ", ".join(
        f"{phone_ref(t.task_id)} {_plain(t.task.title, 40).rstrip()}" for t in tasks[:LISTED_TASKS]
    )
    more = len(tasks) - LISTED_TASKS
    return f"{listed}, +{more} more" if more > 0 else listed


class PhoneDesk:
    """Answers SMS replies, keypresses and call statuses.

    Parameters
    ----------
    bridge:
        The bridge (its ``actions``, ``store``, ``get_or_fetch``).
    roster:
        The operators (phone → person).
    member_roles:
        ``await member_roles(discord_user_id)`` → the member's role ids, ``None`` when the
        guild has no such member (then nothing is allowed).
    ladder:
        The escalation runtime (the ladder's deliveries, unreachable phones, the call
        executor); ``None`` when ``ESCALATION_ENABLED=false`` (then no task is open for a
        phone).
    clock:
        Current aware UTC time.
    call_next_after_seconds:
        ``ESCALATION_CALL_NEXT_AFTER_SECONDS``: wait before calling the next person.
    report_changed:
        ``await report_changed(task_id)`` after a next-person call was placed: the incident
        report (posted at the critical step) is brought up to date; optional.
    """

    def __init__(
        self,
        *,
        bridge: Bridge,
        roster: Roster,
        member_roles: Callable[[int], Awaitable[frozenset[int] | None]],
        ladder: LadderRuntime | None,
        clock: Callable[[], datetime],
        call_next_after_seconds: float = 60.0,
        report_changed: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.bridge = bridge
        self.roster = roster
        self.member_roles = member_roles
        self.ladder = ladder
        self.clock = clock
        self.call_next_after_seconds = call_next_after_seconds
        self.report_changed = report_changed
        self._timers: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ who, what
    def operator(self, phone: str | None) -> Operator | None:
        """The roster operator with this E.164 phone, or ``None``."""
        if not phone:
            return None
        return next((o for o in self.roster.operators if o.phone == phone.strip()), None)

    async def actor(self, operator: Operator, via: str) -> Actor:
        """The operator as an :class:`Actor` with their Discord roles (none when unknown)."""
        roles: frozenset[int] | None = None
        if operator.discord_user_id is not None:
            try:
                roles = await self.member_roles(operator.discord_user_id)
            except Exception:
                log.exception("roles of %s could not be read", operator.name)
        return Actor(
            name=operator.name,
            via=via,
            discord_user_id=operator.discord_user_id,
            role_ids=roles or frozenset(),
        )

    async def open_tasks(self, operator: Operator) -> list[TrackedTask]:
        """Undecided, unacknowledged tasks whose SMS or call reached ``operator``, oldest
        task first (one bundled SMS may page several at once)."""
        if self.ladder is None:
            return []
        rows = await self.ladder.ladder_store.deliveries(
            channels=["sms", "call"],
            # claimed: being sent, the phone may have it already; unknown: a restart cut the
            # send short after Twilio may have taken it (README "Restart")
            statuses=["sent", "claimed", "unknown"],
        )
        # only open tasks are read: the pages of months of decided tasks are not (each reply
        # would read every task ever paged to this person, slower by the week)
        open_ids = set(await self.bridge.store.open_task_ids())
        seen: list[str] = []
        for row in rows:
            if (
                row.recipient == operator.name
                and row.task_id in open_ids
                and row.task_id not in seen
            ):
                seen.append(row.task_id)
        found = []
        for task_id in seen:
            tracked = await self.bridge.store.get_task(task_id)
            if tracked is not None and not tracked.is_decided and tracked.acknowledged_at is None:
                found.append(tracked)
        return sorted(found, key=lambda t: (t.task.created_at, t.task_id))

    # ------------------------------------------------------------------ SMS
    async def on_sms(self, from_: str, body: str, message_sid: str) -> str:
        """Answer one SMS reply (the text of the ``<Message>`` sent back, at most
        :data:`ANSWER_MAX_CHARS`; open tasks are listed by :func:`_listing`).

        ``from_`` is the sender's E.164 number, ``body`` the text, ``message_sid`` Twilio's
        id (the acknowledgement's idempotency seed: a retried webhook claims once).
        """
        return (await self._answer_sms(from_, body, message_sid))[:ANSWER_MAX_CHARS]

    async def _answer_sms(self, from_: str, body: str, message_sid: str) -> str:
        operator = self.operator(from_)
        if operator is None:
            log.warning("SMS from a number not on the roster (%s) refused", from_[-4:])
            await self._audit_refused("sms", from_, "number not on the roster")
            return NOT_ON_ROSTER
        reply = parse_reply(body)
        if reply.command is Command.UNKNOWN:
            return _UNKNOWN
        if reply.command is Command.START:
            return await self._start(operator)
        open_tasks = await self.open_tasks(operator)
        refs = _listing(open_tasks)
        if reply.command is Command.HELP:
            listed = f"Open: {refs}." if open_tasks else "No open task was paged to you."
            return f"{listed} {_HELP}"
        if reply.command is Command.ACK_ALL:
            targets = open_tasks
        elif reply.ref is None:
            if len(open_tasks) != 1:
                return (
                    f"{len(open_tasks)} open tasks: {refs}. Reply ACK <ref> or ACK ALL."
                    if open_tasks
                    else "No open task was paged to you."
                )
            targets = open_tasks
        else:
            ids = resolve_ref(reply.ref, [t.task_id for t in open_tasks])
            if not ids:
                return f"No open task with ref {_plain(reply.ref, 20)}. Open: {refs or 'none'}."
            if len(ids) > 1:
                return f"Ref {reply.ref} names {len(ids)} tasks; reply ACK ALL or use Discord."
            targets = [t for t in open_tasks if t.task_id == ids[0]]
        if not targets:
            return "No open task was paged to you."
        actor = await self.actor(operator, "sms")
        answers = []
        for tracked in targets:
            if reply.command is Command.SNOOZE:
                outcome = await self.bridge.actions.snooze(tracked.task_id, actor, SNOOZE_SECONDS)
                answers.append(self._said(outcome, "Snoozed 1 h", tracked))
            else:
                outcome = await self.bridge.actions.acknowledge(
                    tracked.task_id,
                    actor,
                    idempotency_seed=f"{message_sid}:{tracked.task_id}",
                    first=True,
                )
                answers.append(self._said(outcome, "Acknowledged", tracked))
        return " ".join(answers)

    @staticmethod
    def _said(outcome: Outcome, done: str, tracked: TrackedTask) -> str:
        title = _plain(tracked.task.title, 80)
        if outcome.ok:
            return f"{done}: {title}."
        fresh = outcome.tracked  # a conflict on an open task someone acknowledged first:
        if outcome.kind == "conflict" and fresh and fresh.acknowledged_at and not fresh.is_decided:
            return PhoneDesk._already_acknowledged(fresh)
        return f"Not done ({title}): {_plain(outcome.message, 200)}"

    async def _start(self, operator: Operator) -> str:
        phone = operator.phone or ""
        if self.ladder is not None:
            await self.ladder.ladder_store.clear_unreachable(phone)
            self.ladder.service.unreachable.discard(phone)
        await self.bridge.store.audit(
            actor_name=operator.name,
            via="sms",
            action="phone.start",
            outcome="ok",
            detail=f"{operator.name} replied START: the phone is reachable again",
        )
        return "You will get Factory Bridge pages on this number again."

    async def _audit_refused(self, via: str, phone: str, why: str) -> None:
        try:
            await self.bridge.store.audit(
                actor_name=f"...{phone[-4:]}",
                via=via,
                action=f"{via}.refused",
                outcome="refused",
                detail=why,
            )
        except Exception:
            log.exception("audit of a refused %s failed", via)

    # ------------------------------------------------------------------ calls
    async def on_keypress(
        self, to: str, task_ids: list[str], digits: str | None, call_sid: str
    ) -> tuple[Keypress, str]:
        """A key pressed during the call to ``to`` about ``task_ids``: what it asked and the
        sentence to say (1 acknowledges each task, exactly as ``ACK``).

        A task acknowledged meanwhile (by anyone, e.g. an SMS ``ACK``) is not acknowledged
        again: nothing goes to the factory and the caller hears by whom, as ``ACK`` leaves a
        task that is no longer open alone (README "Phone").
        """
        key = parse_keypress(digits)
        if key is not Keypress.ACKNOWLEDGE:
            return key, ""
        operator = self.operator(to)
        if operator is None:
            await self._audit_refused("phone", to, "callee not on the roster")
            return key, NOT_ON_ROSTER
        actor = await self.actor(operator, "phone")
        said = []
        for task_id in task_ids:
            tracked = await self.bridge.store.get_task(task_id)
            if tracked is None:
                continue
            if tracked.acknowledged_at is not None and not tracked.is_decided:
                said.append(self._already_acknowledged(tracked))
                continue
            outcome = await self.bridge.actions.acknowledge(
                task_id, actor, idempotency_seed=f"{call_sid}:{task_id}", first=True
            )
            said.append(self._said(outcome, "Acknowledged", tracked))
        return key, " ".join(said) or "There was nothing to acknowledge."

    @staticmethod
    def _already_acknowledged(tracked: TrackedTask) -> str:
        # the stored name says the channel too: "Dave via SMS" (bot.outcomes.acknowledger)
        who = tracked.acknowledged_by_name
        by = f" by {_plain(who, 60)}" if who else ""
        return f"Already acknowledged{by}: {_plain(tracked.task.title, 80)}."

    async def on_call_status(self, to: str, task_ids: list[str], status: str, sid: str) -> None:
        """A call's status callback: a final unanswered status, or a call completed while the
        task is still unacknowledged, schedules the next person's call (module docstring)."""
        if status not in UNANSWERED and status != "completed":
            return
        if self.ladder is None:
            return
        for task_id in task_ids:
            tracked = await self.bridge.store.get_task(task_id)
            if tracked is None or tracked.is_decided or tracked.acknowledged_at is not None:
                continue
            await self._plan_next_call(tracked, to, status, sid)

    async def _plan_next_call(self, tracked: TrackedTask, to: str, status: str, sid: str) -> None:
        assert self.ladder is not None
        store = self.ladder.ladder_store
        calls = await store.deliveries(task_id=tracked.task_id, channels=["call"])
        placed = next((r for r in calls if r.detail.get("sid") == sid), None)
        if placed is None:  # Twilio answered faster than the bridge stored the call's sid,
            # or a restart cut the send short after Twilio placed it (the row is unknown)
            # the call being placed first, else the newest one a restart left unknown (an
            # older unknown call's next person may be planned already)
            placed = max(
                (
                    r
                    for r in calls
                    if r.status in ("claimed", "unknown")
                    and (person := self.ladder.person(r.recipient)) is not None
                    and person.phone == to
                ),
                key=lambda r: (r.status == "claimed", r.id),
                default=None,
            )
        if placed is None:  # not a call of this task's ladder: said, never silently dropped
            log.warning(
                "call %s to %s ended %s: no call of task %s", sid, to, status, tracked.task_id
            )
            return
        step = placed.step  # the critical step or a repeat: the next person is of that step
        rows = [r for r in calls if r.step == step]
        who = placed.recipient
        if any(r.detail.get("after") == who for r in rows):
            return  # Twilio repeated this call's final status: its next person is planned
        tried = {r.recipient for r in rows}
        people = self.ladder.people()
        nxt = next_fallback(call_order(people), tried, self.ladder.service.unreachable)
        audit = self.ladder.service.audit
        if nxt is None:
            await audit(
                tracked.task_id,
                "escalation.call",
                "failed",
                f"{step}: the call to {who} ended {status}; nobody left to call "
                f"after {', '.join(sorted(tried))}",
            )
            return
        now = self.clock()
        due = now + timedelta(seconds=self.call_next_after_seconds)
        added = await store.add_delivery(
            tracked.task_id,
            step,
            NewDelivery("call", nxt.key, detail={"after": who, "after_status": status}),
            due_at=due,
            now=now,
        )
        if not added:
            return
        await audit(
            tracked.task_id,
            "escalation.call",
            "fallback",
            f"{step}: the call to {who} ended {status}; calling {nxt.key} "
            f"in {self.call_next_after_seconds:g} s",
        )
        self._later(tracked.task_id, due)

    def _later(self, task_id: str, due: datetime) -> None:
        delay = max(0.0, (due - self.clock()).total_seconds())
        task = asyncio.create_task(self._call_when_due(task_id, delay), name=f"call-next-{task_id}")
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _call_when_due(self, task_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.place_due_calls(task_id)
        except Exception:
            log.exception("the next call for task %s failed", task_id)

    async def place_due_calls(self, task_id: str | None = None) -> int:
        """Place the pending next-person calls that are due (of ``task_id``, or all); each
        is claimed first (compare-and-set: once, even across restarts). How many were."""
        placed = total = 0
        while True:
            placed = await self._place_due(task_id)
            total += placed
            if not placed:  # a call Twilio refused (STOP, 21211…) adds the next one, due now
                return total

    async def _place_due(self, task_id: str | None) -> int:
        if self.ladder is None:
            return 0
        store = self.ladder.ladder_store
        executor = self.ladder.service.executor
        now = self.clock()
        placed = 0
        rows = await store.deliveries(task_id=task_id, channels=["call"], statuses=["pending"])
        # the next person after a next-person call Twilio refused (``fallback_for``, added by
        # the executor after the step finished): no step runs it any more, so it is placed
        # here; a step's own calls, its fallbacks included, are its own while it runs
        finished = await self._finished_steps(r.task_id for r in rows if _late_fallback(r))
        for row in rows:
            if "after" not in row.detail and not (
                _late_fallback(row) and (row.task_id, row.step) in finished
            ):
                continue  # a step's own call: its step runs it
            if row.due_at > now:
                self._later(row.task_id, row.due_at)
                continue
            tracked = await self.bridge.store.get_task(row.task_id)
            if tracked is None or tracked.is_decided or tracked.acknowledged_at is not None:
                reason = "acknowledged" if tracked is not None else "task gone"
                if tracked is not None and tracked.is_decided:
                    reason = f"task {tracked.decision}"
                await store.finish_delivery(row.id, "cancelled", {"cancelled": reason}, now)
                continue
            if not await store.claim_deliveries([row.id], now):
                continue
            status, detail = await executor.deliver_call(tracked, StepKind(row.step), row.recipient)
            await store.finish_delivery(row.id, status, detail, self.clock())
            await executor.audit(
                row.task_id,
                "escalation.call",
                status,
                f"{row.step} (next person) → {row.recipient}: "
                f"{detail.get('error') or detail.get('note') or 'ok'}",
            )
            placed += 1
            if self.report_changed is not None:
                try:
                    await self.report_changed(row.task_id)
                except Exception:
                    log.exception("incident report of %s not updated", row.task_id)
        return placed

    async def _finished_steps(self, task_ids: Iterable[str]) -> set[tuple[str, str]]:
        """(task, step) of the finished (``done``) steps of ``task_ids``, for the call rows
        of :func:`_late_fallback` (read only when there is one)."""
        ids = set(task_ids)
        if not ids or self.ladder is None:
            return set()
        steps = await self.ladder.ladder_store.steps(ids)
        return {(s.task_id, s.step) for rows in steps.values() for s in rows if s.status == "done"}

    async def start(self) -> None:
        """Resume the next-person calls a restart left pending."""
        await self.place_due_calls()

    async def stop(self) -> None:
        """Cancel the waits (the pending rows stay: :meth:`start` resumes them)."""
        for task in list(self._timers):
            task.cancel()
        self._timers.clear()
