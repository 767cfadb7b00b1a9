"""Doing a ladder step's deliveries through the ports: retries, fallbacks, outcomes.

Used by :class:`escalation.service.LadderService` (the step's own deliveries: replies, the
alert, the call, the factory calls, the incident report) and by the bundler adapter (the
retry, fallback and unreachable-phone rules of DMs and SMS), so these rules exist once:

* a retryable :class:`~escalation.ports.DeliveryError` is retried after each of
  :data:`RETRY_DELAYS` seconds (``Retry-After`` honoured when longer), then the delivery is
  ``failed``; the sleep is injected;
* Twilio 21610 (:class:`~escalation.ports.RecipientUnreachable` on the phone) → the phone is
  persisted as unreachable, audited, and the next on-call operator gets a delivery
  (:meth:`DeliveryExecutor.fallback`); a call Twilio refuses otherwise (a permanent error
  such as 21211 invalid number or 21215/21219 not permitted, or one still failing after the
  retries) is ``failed`` and the next person of the call order gets a call the same way;
* without a pager, calls are ``skipped``;
* the factory's escalation level (``escalate``): levels go in order, so a level whose lower
  level is not ``sent`` yet fails without a call (the next step sends both, see
  :func:`escalation.deliveries.escalate_levels`); a 404/409 (approval decided) is
  ``skipped``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from escalation.deliveries import (
    BUNDLED_CHANNELS,
    CHANNEL_RANK,
    IDEMPOTENT_CHANNELS,
    LEVEL_LABELS,
    MAX_LEVEL,
    NewDelivery,
    level_of,
    step_level,
    stop_reason,
)
from escalation.notices import PageItem, call_script, human_duration
from escalation.policy import EscalationPolicy, StepKind
from escalation.ports import (
    Announcer,
    Audit,
    Clock,
    Decider,
    DeliveryError,
    DeliveryResult,
    DeliveryRow,
    LadderRepository,
    LadderTask,
    Pager,
    RecipientUnreachable,
    Roster,
    TaskReader,
)
from escalation.recipients import Person, call_order, next_fallback, reminder_targets

__all__ = [
    "ACTOR_NAME",
    "ACTOR_VIA",
    "RETRY_DELAYS",
    "DeliveryExecutor",
    "step_outcome",
    "with_retries",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The audit actor of everything the ladder does (name and ``via``).
ACTOR_NAME = "escalation"
ACTOR_VIA = "system"

#: Backoff between attempts of a failing delivery (seconds): 5 attempts in about 7.5 s.
RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)


async def with_retries(
    what: str,
    action: Callable[[], Awaitable[T]],
    *,
    delays: Sequence[float],
    sleep: Callable[[float], Awaitable[object]],
    first_attempt: int = 1,
) -> T:
    """Run ``action``; retry a retryable :class:`~escalation.ports.DeliveryError` after each
    of ``delays`` seconds (or its ``retry_after`` when longer), then raise it.

    ``what`` names the action in the log, where attempts are counted from ``first_attempt``
    (a caller that made the first attempt itself passes 2). Any other exception is raised
    at once.
    """
    waits = (*delays, None)
    for attempt, delay in enumerate(waits, start=first_attempt):
        try:
            return await action()
        except DeliveryError as exc:
            if not exc.retryable or delay is None:
                raise
            wait = max(delay, exc.retry_after or 0.0)
            log.warning("%s failed (attempt %d): %s; retrying in %.1fs", what, attempt, exc, wait)
            await sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


class DeliveryExecutor:
    """Does deliveries through the ports (see the module docstring).

    Parameters
    ----------
    policy, repository, tasks, roster, announcer, decider, audit, clock
        As :class:`escalation.service.LadderService`.
    pager
        SMS and calls, or ``None`` (calls are then ``skipped``).
    retry_delays
        Backoff between attempts, seconds.
    sleep
        Awaited with a delay in seconds between two attempts.

    Attributes
    ----------
    unreachable
        Phones marked unreachable (Twilio 21610).
    new_bundle_keys
        ``(person, channel)`` pairs that got a pending DM or SMS since the bundler last took
        them (the bundler empties it).
    """

    def __init__(
        self,
        *,
        policy: EscalationPolicy,
        repository: LadderRepository,
        tasks: TaskReader,
        roster: Roster,
        announcer: Announcer,
        pager: Pager | None,
        decider: Decider,
        audit: Audit,
        clock: Clock,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.policy = policy
        self.repository = repository
        self.tasks = tasks
        self.roster = roster
        self.announcer = announcer
        self.pager = pager
        self.decider = decider
        self._audit_port = audit
        self.clock = clock
        self.retry_delays = tuple(retry_delays)
        self.sleep = sleep
        self.unreachable: set[str] = set()
        self.new_bundle_keys: set[tuple[str, str]] = set()
        # deliveries added by fallback(): run_step re-reads its rows when this moves
        self._added = 0
        #: Deliveries that call the factory (``IDEMPOTENT_CHANNELS``: reassign, safe default,
        #: escalate) and may change the task itself: the ladder service re-reads the task
        #: after a step only when this moved.
        self.factory_calls = 0

    def person(self, key: str) -> Person | None:
        """The roster person with this key (name)."""
        for p in self.roster.people():
            if p.key == key:
                return p
        return None

    async def run_step(self, task: LadderTask, kind: StepKind, late: float) -> dict[str, Any]:
        """Do the step's own deliveries (not DM/SMS: the bundler's; none due later) in
        :func:`~escalation.deliveries.next_own` order, re-checking the task before each (:func:`stop_reason`), then
        finish the step.

        The step's deliveries are read once and kept in hand: a delivery is only done after
        its compare-and-set claim (:meth:`~escalation.ports.LadderRepository.claim_deliveries`)
        succeeds, so a row some other writer took meanwhile is skipped. They are read again
        when this executor added one (a fallback) or is about to cancel one (the stored row
        may be settled already), and once at the end for the step's outcome (the bundler may
        have sent its DMs and SMS meanwhile).

        ``late`` is how late the step is taken, seconds (stored with the step). Returns the
        step's stored outcome (:func:`step_outcome`)."""
        task_id = task.task_id
        step = kind._value_  # the stored name (``.value`` is a property call)
        repository = self.repository
        tasks = self.tasks
        clock = self.clock
        rows = await repository.deliveries(task_id=task_id, step=step)
        added = self._added
        own = _own_pending(rows)
        done: set[int] = set()  # rows of ``own`` settled (or taken by another writer)
        while True:
            now = clock()
            # the next by next_own's order; a delivery due later is not the step's to do now:
            # the next person's call after an unanswered one waits
            # ESCALATION_CALL_NEXT_AFTER_SECONDS (README "Phone")
            for row in own:
                if row.due_at <= now and row.id not in done:
                    break
            else:
                break
            row_id = row.id
            channel = row.channel
            fresh = await tasks.get(task_id) or task
            reason = (
                None  # stop_reason's answer for an undecided, unacknowledged task
                if fresh.acknowledged_at is None and not fresh.is_decided
                else stop_reason(
                    kind,
                    channel,
                    decision=fresh.decision if fresh.is_decided else None,
                    acknowledged=fresh.acknowledged_at is not None,
                )
            )
            if reason is not None:
                own = _own_pending(await repository.deliveries(task_id=task_id, step=step))
                if any(r.id == row_id for r in own):
                    # the safe default itself, recorded before a restart interrupted its row
                    ours = channel == "decision" and fresh.decided_by == ACTOR_NAME
                    status, detail = (
                        ("sent", {"decision": fresh.decision, "note": "recorded before a restart"})
                        if ours
                        else ("cancelled", {"cancelled": reason})
                    )
                    await repository.finish_delivery(row_id, status, detail, clock())
                done.add(row_id)
                continue
            done.add(row_id)
            if not await repository.claim_deliveries([row_id], clock()):
                continue
            try:
                status, detail = await self._deliver(fresh, kind, channel, row.recipient, late)
            except Exception as exc:  # a bug must not leave the row claimed forever
                log.exception("delivery %s of task %s failed", channel, task_id)
                status, detail = "failed", {"error": repr(exc)}
            note = detail.get("error") or detail.get("note") or "ok"
            # the outcome and its audit entry in one write (the store's one transaction)
            await repository.finish_delivery(
                row_id,
                status,
                detail,
                clock(),
                audit={
                    "actor_name": ACTOR_NAME,
                    "via": ACTOR_VIA,
                    "action": f"escalation.{channel}",
                    "outcome": status,
                    "task_id": task_id,
                    "detail": f"{step} → {row.recipient}: {note}"[:2000],
                },
            )
            if self._added != added:  # a fallback added the next person's delivery
                own = _own_pending(await repository.deliveries(task_id=task_id, step=step))
                added = self._added
        rows = await repository.deliveries(task_id=task_id, step=step)
        outcome = step_outcome(late, rows)
        await repository.finish_step(task_id, step, outcome, late_seconds=late)
        return outcome

    async def _deliver(
        self, task: LadderTask, kind: StepKind, channel: str, recipient: str, late: float
    ) -> DeliveryResult:
        if channel in IDEMPOTENT_CHANNELS:  # the factory calls (reassign, escalate, decision)
            self.factory_calls += 1
        if channel == "reply" or channel == "alert":
            people = self.roster.people()
            announcer = self.announcer
            post: Callable[..., Awaitable[dict[str, Any]]]
            if channel == "reply" and kind is StepKind.REMINDER_MENTION:
                targets = reminder_targets(self.roster.assignee(task), people)
                what, post = "Discord reply", announcer.reminder
            else:
                targets = [p for p in people if p.on_call and p.discord_user_id]
                what, post = (
                    ("Discord reply", announcer.warning)
                    if channel == "reply"
                    else ("Discord alert", announcer.breach_alert)
                )
            try:  # the first attempt here, not in retry(): a coroutine less on every post
                detail = await post(task, targets, late)
            except DeliveryError as exc:
                detail = await self.retry_after(exc, what, post, task, targets, late)
            return ("skipped" if detail.get("skipped") else "sent"), detail
        if channel == "call":
            return await self._call(task, kind, recipient)
        if channel == "reassign":
            admin = self.person(recipient)
            if admin is None or not admin.factory_user_id:
                return "failed", {"error": f"{recipient} has no factory_user_id"}
            overdue = human_duration((self.clock() - task.deadline).total_seconds())
            reason = f"SLA breached {overdue} ago with no decision; escalated by Factory Bridge"
            return await self.decider.reassign(task, admin, reason)
        if channel == "decision":
            decision = self.policy.safe_default.decision
            if decision is None:  # pragma: no cover - not planned for "none"
                return "skipped", {"note": "ESCALATION_SAFE_DEFAULT is none"}
            notes = "No decision within the SLA: safe default ESCALATION_SAFE_DEFAULT applied"
            return await self.decider.safe_default(task, decision.value, notes)
        if channel == "escalate":
            return await self._escalate(task, kind, recipient)
        if channel == "incident":
            detail = await self.retry(
                "Discord incident report", self.announcer.incident_report, task
            )
            return "sent", detail
        return "failed", {"error": f"unknown channel {channel}"}

    async def _escalate(self, task: LadderTask, kind: StepKind, recipient: str) -> DeliveryResult:
        """One level to the factory (``escalateTo``: the critical step's reassign admin)."""
        level = level_of(recipient)
        if level is None or task.approval_id is None:
            return "failed", {"error": f"cannot escalate {recipient} of a task without approval"}
        sent = {
            level_of(r.recipient)
            for r in await self.repository.deliveries(
                task_id=task.task_id, channels=["escalate"], statuses=["sent"]
            )
        }
        if level > 1 and level - 1 not in sent:
            return "failed", {"error": f"level {level - 1} was not reported to the factory"}
        escalate_to: str | None = None
        if kind is StepKind.CRITICAL and level == MAX_LEVEL:
            reassigns = await self.repository.deliveries(
                task_id=task.task_id, step=kind.value, channels=["reassign"]
            )
            admin = self.person(reassigns[0].recipient) if reassigns else None
            escalate_to = admin.factory_user_id if admin is not None else None
        age = human_duration((self.clock() - task.task.created_at).total_seconds())
        reason = (
            f"Escalation level {level} of {MAX_LEVEL} ({LEVEL_LABELS[level]}): no decision "
            f"{age} after the task was created"
        )
        if step_level(kind) != level:  # caught up by a later step
            reason += f"; reported at the {kind.value.replace('_', ' ')} step"
        reason += "; escalated by Factory Bridge"
        status, detail = await self.decider.escalate(task, level, reason, escalate_to)
        return status, {"level": level, **detail}

    async def deliver_call(
        self, task: LadderTask, kind: StepKind, recipient: str
    ) -> DeliveryResult:
        """Call ``recipient`` (a person key) about ``task`` now: ``sent`` with the call's
        ``sid``, ``skipped`` (no Twilio), ``unreachable`` (21610: the phone is marked) or
        ``failed``; when Twilio refused the call (``unreachable``, or ``failed`` with a Twilio
        error) the next person of :func:`call_order` gets a pending ``call`` delivery, due now.

        Used by the step itself and by the phone's "next person when nobody answers"
        (README "Phone", ``bot.pager.phone_desk``)."""
        return await self._call(task, kind, recipient)

    async def _call(self, task: LadderTask, kind: StepKind, recipient: str) -> DeliveryResult:
        person = self.person(recipient)
        if self.pager is None:
            log.info("Twilio is not configured: call to %s skipped", recipient)
            return "skipped", {"note": "Twilio not configured"}
        if person is None or person.phone is None:
            return "failed", {"error": f"{recipient} has no phone in the roster"}
        phone = person.phone
        pager = self.pager
        script = call_script([self.page_item(task, kind)])
        try:
            if phone in self.unreachable:
                raise RecipientUnreachable("phone marked unreachable (STOP)")
            sid = await self.retry("Twilio call", pager.call, phone, script)
        except DeliveryError as exc:
            # a call Twilio refuses (21610 STOP; 21211, 21215, 21219; still failing after the
            # retries) rings nobody: the next person is called, as after a call Twilio
            # accepted and then reported ``failed`` (README "Phone")
            stopped = isinstance(exc, RecipientUnreachable)
            if stopped and phone not in self.unreachable:
                await self.phone_unreachable(person, phone, exc, task.task_id)
            nxt = await self.fallback(task, kind, "call", call_order(self.roster.people()))
            return ("unreachable" if stopped else "failed"), {
                "error": str(exc),
                "phone": phone,
                "note": f"next on-call: {nxt or 'nobody left'}",
            }
        return "sent", {"sid": sid, "phone": phone}

    # ------------------------------------------------------------------ shared with the bundler
    def page_item(self, task: LadderTask, kind: StepKind) -> PageItem:
        """The task as an SMS or a call names it (how late: now − SLA deadline)."""
        return PageItem(
            task_id=task.task_id,
            title=task.task.title,
            priority=task.task.priority.value,
            overdue_seconds=(self.clock() - task.deadline).total_seconds(),
            step=kind,
        )

    async def retry(self, what: str, action: Callable[..., Awaitable[T]], *args: object) -> T:
        """:func:`with_retries` of ``action(*args)`` with this service's delays and sleep; the
        first attempt is made here (nearly every delivery succeeds at once: bench/ladder_core.py)."""
        try:
            return await action(*args)
        except DeliveryError as exc:
            return await self.retry_after(exc, what, action, *args)

    async def retry_after(
        self, error: DeliveryError, what: str, action: Callable[..., Awaitable[T]], *args: object
    ) -> T:
        """:meth:`retry` after its first attempt failed with ``error``: attempts 2… after
        :attr:`retry_delays` s (``error.retry_after`` when longer). Raises ``error`` when not
        retryable or no retry is configured, the last attempt's DeliveryError when all fail."""
        delays = self.retry_delays
        if not error.retryable or not delays:
            raise error
        wait = max(delays[0], error.retry_after or 0.0)
        log.warning("%s failed (attempt 1): %s; retrying in %.1fs", what, error, wait)
        await self.sleep(wait)
        return await with_retries(
            what, lambda: action(*args), delays=delays[1:], sleep=self.sleep, first_attempt=2
        )

    async def phone_unreachable(
        self, person: Person, phone: str, error: DeliveryError, task_id: str
    ) -> None:
        """Twilio 21610: persist the phone as unreachable and audit it."""
        self.unreachable.add(phone)
        await self.repository.mark_unreachable(phone, person.key, error.code, self.clock())
        await self.audit(
            task_id,
            "escalation.phone_unreachable",
            "unreachable",
            f"{person.key}'s phone answered {error.code} (replied STOP); marked unreachable",
        )

    async def fallback(
        self, task: LadderTask, kind: StepKind, channel: str, order: Sequence[Person]
    ) -> str | None:
        """Add a delivery for the next person of ``order`` not tried yet; their key (``None``
        when nobody is left, audited)."""
        tried = {
            r.recipient
            for r in await self.repository.deliveries(
                task_id=task.task_id, step=kind.value, channels=[channel]
            )
        }
        nxt = next_fallback(order, tried, self.unreachable)
        if nxt is None:
            await self.audit(
                task.task_id,
                f"escalation.{channel}",
                "failed",
                f"{kind.value}: nobody left to try after {', '.join(sorted(tried))}",
            )
            return None
        self._added += 1
        await self.repository.add_delivery(
            task.task_id,
            kind.value,
            NewDelivery(channel, nxt.key, detail={"fallback_for": sorted(tried)}),
            due_at=self.clock(),
            now=self.clock(),
        )
        if channel in BUNDLED_CHANNELS:
            self.new_bundle_keys.add((nxt.key, channel))
        await self.audit(
            task.task_id,
            f"escalation.{channel}",
            "fallback",
            f"{kind.value}: trying the next on-call, {nxt.key}",
        )
        return nxt.key

    async def audit(self, task_id: str, action: str, outcome: str, detail: str) -> None:
        """Audit through the port; a failure to audit is logged, never raised."""
        try:
            await self._audit_port(task_id, action, outcome, detail[:2000])
        except Exception:
            log.exception("could not audit %s for task %s", action, task_id)


def _own_pending(rows: Iterable[DeliveryRow]) -> list[DeliveryRow]:
    """The pending deliveries of ``rows`` a step does itself (not the bundler's DMs and SMS),
    in :func:`~escalation.deliveries.next_own` order."""
    own = [r for r in rows if r.status == "pending" and r.channel not in BUNDLED_CHANNELS]
    if len(own) > 1:
        own.sort(key=lambda r: (CHANNEL_RANK.get(r.channel, 9), r.id))
    return own


def step_outcome(late: float, deliveries: Iterable[DeliveryRow | NewDelivery]) -> dict[str, Any]:
    """A finished step's stored outcome: lateness (seconds, ms precision) and each delivery's
    channel, recipient and status (a :class:`NewDelivery` not written yet is ``pending``)."""
    return {
        "late_seconds": round(late, 3),
        "deliveries": [
            {
                "channel": d.channel,
                "recipient": d.recipient,
                "status": d.status if isinstance(d, DeliveryRow) else "pending",
            }
            for d in deliveries
        ],
    }
