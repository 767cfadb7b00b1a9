"""Adapters of the ladder service's small ports onto the bridge: tasks, roster, factory, audit.

* :class:`StoreTasks` (:class:`escalation.ports.TaskReader`): the bridge's store; a
  :class:`bot.store.TrackedTask` is a :class:`escalation.ports.LadderTask` as it is.
* :class:`RosterPeople` (:class:`escalation.ports.Roster`): ``roster.toml`` operators as
  :class:`escalation.recipients.Person`.
* :class:`BridgeDecider` (:class:`escalation.ports.Decider`): reassign, the escalation level
  and the safe default through the factory client and :meth:`bot.bridge.Bridge.decide`, each
  with an Idempotency-Key derived from the task (and level), factory contract §7.1.
* :class:`StoreAudit` (:class:`escalation.ports.Audit`): the audit table, actor
  :data:`ESCALATION_ACTOR`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from bot.bridge import Actor, Bridge
from bot.factory.client import FactoryClient, FactoryError, FactoryUnavailable
from bot.roster import Operator
from bot.roster import Roster as OperatorRoster
from bot.store import GONE, Store, TrackedTask
from escalation.models import Task
from escalation.ports import DeliveryResult, LadderTask, OpenTaskClock
from escalation.recipients import Person
from escalation.service import ACTOR_NAME, ACTOR_VIA

__all__ = [
    "ESCALATION_ACTOR",
    "BridgeDecider",
    "RosterPeople",
    "StoreAudit",
    "StoreTasks",
    "person_of",
]

log = logging.getLogger(__name__)

#: What a safe default's :class:`bot.outcomes.Outcome` kind is as a delivery (any other
#: kind is ``failed``): ``unconfirmed`` is ``unknown``, not ``failed`` — the decision is still
#: in flight and re-sent in the background with the same key (:mod:`bot.decision_send`).
_SAFE_DEFAULT_STATUS = {"done": "sent", "conflict": "skipped", "unconfirmed": "unknown"}

#: The actor of everything the ladder does (audit, the safe-default decision).
ESCALATION_ACTOR = Actor(name=ACTOR_NAME, via=ACTOR_VIA)


def person_of(op: Operator) -> Person:
    """A roster operator as the core sees them."""
    return Person(
        key=op.name,
        discord_user_id=op.discord_user_id,
        phone=op.phone,
        factory_user_id=op.factory_user_id,
        on_call=op.on_call,
        admin=op.admin,
    )


class StoreTasks:
    """The tasks of the bridge's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, task_id: str) -> TrackedTask | None:
        """The tracked task, or ``None``."""
        return await self.store.get_task(task_id)

    async def open_tasks(self) -> Sequence[TrackedTask]:
        """Undecided tasks that have a Discord message."""
        return [t for t in await self.store.open_tasks() if t.has_message]

    async def open_task_pages(self) -> AsyncIterator[list[TrackedTask]]:
        """:meth:`open_tasks` a page at a time (see :meth:`bot.store.Store.open_task_pages`):
        what the ladder's rebuild reads, so that every open task is never in memory at once."""
        async for page in self.store.open_task_pages():
            yield [t for t in page if t.has_message]

    def open_task_clocks(self) -> AsyncIterator[list[OpenTaskClock]]:
        """What the ladder's rebuild reads: the open tasks with a message, a page at a time,
        only the columns arming needs (:meth:`bot.store.Store.open_task_clocks`)."""
        return self.store.open_task_clocks()


class RosterPeople:
    """The operators of a bridge's roster (read each time: a reloaded roster counts)."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    @property
    def roster(self) -> OperatorRoster:
        """The bridge's current roster."""
        return self.bridge.roster

    def people(self) -> list[Person]:
        """Everyone, in file order."""
        return [person_of(op) for op in self.roster.operators]

    def assignee(self, task: LadderTask) -> Person | None:
        """The task's assignee, when the roster maps its ``assigneeId``."""
        op = self.roster.by_factory_id(task.task.assignee_id)
        return person_of(op) if op is not None else None


class BridgeDecider:
    """Reassign, escalation level and safe default through the bridge.

    The factory's answer is judged, never trusted blindly (contract §1.5: ``reassign`` answers
    the updated ``Task``, ``escalate`` the ``Approval``): a delivery is ``sent`` only when the
    answer shows it done, ``skipped`` when the task or approval is decided or gone (nothing
    left to do), ``unknown`` when the factory may or may not have acted (the incident report
    shows ❔, :data:`bot.ladder.incident.STATUS_ICON`) and ``failed`` when it certainly did not.
    """

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    async def reassign(self, task: LadderTask, admin: Person, reason: str) -> DeliveryResult:
        """``POST /v1/tasks/{id}/reassign`` to ``admin`` (Idempotency-Key from the task,
        contract §7.1), and what its answer says.

        * 200 (the updated ``Task``, contract §1.5): judged by :meth:`_reassign_result`;
        * 404/410: the factory no longer has the task → ``skipped``, and the task is closed
          here too (:meth:`bot.bridge.Bridge.task_gone`);
        * 409 (decided meanwhile): the task is read back and the factory's record applied
          (:meth:`_reassign_conflict`);
        * an uncertain outcome (:attr:`~bot.factory.errors.FactoryUnavailable.uncertain`: a
          timeout after the factory may have acted): the task is read back, ``sent`` when its
          assignee is ``admin``, ``unknown`` otherwise;
        * any other refusal, or a factory that refused every attempt → ``failed``.
        """
        assert admin.factory_user_id is not None
        task_id, want = task.task_id, admin.factory_user_id
        try:
            answer = await self.bridge.factory.reassign_task(
                task_id,
                assignee_id=want,
                reason=reason,
                idempotency_key=FactoryClient.new_idempotency_key(f"escalation:{task_id}:reassign"),
            )
        except FactoryError as exc:
            if exc.status in (404, 410):
                await self._close_gone(
                    task_id, f"the factory answered {exc.status} to the reassign"
                )
                return "skipped", {"note": f"task gone, not reassigned: {exc}"}
            if exc.is_conflict:
                return await self._reassign_conflict(task_id, want, exc)
            return "failed", {"error": str(exc)}
        except FactoryUnavailable as exc:
            if not exc.uncertain:  # every attempt refused or never sent: nothing was done
                return "failed", {"error": str(exc)}
            return await self._reassign_read_back(task_id, want, f"unconfirmed ({exc})")
        return await self._reassign_result(task_id, want, answer, "answered")

    async def _reassign_result(
        self, task_id: str, want: str, answer: Task, how: str
    ) -> DeliveryResult:
        """What the factory's record of the task (its answer, or read back: ``how``) says of
        the reassign to ``want``: ``sent`` when it is this task assigned to ``want`` (stored
        at once, :meth:`bot.bridge.Bridge.apply_factory_task`); ``skipped`` when it is decided
        (stored too); ``unknown`` for another task's record or one still assigned elsewhere."""
        if answer.id != task_id:
            return "unknown", {"note": f"the factory {how} with another task ({answer.id[:64]!r})"}
        if answer.decision is not None:
            await self._apply(answer)
            by = answer.decided_by or "the factory"
            note = f"not reassigned: already {answer.decision.value} by {by} ({how})"
            return "skipped", {"note": note[:500]}
        if answer.assignee_id != want:
            note = f"the factory {how} with the task assigned to {answer.assignee_id!r}"
            return "unknown", {"note": note[:500]}
        await self._apply(answer)
        return "sent", {"assignee": want}

    async def _reassign_conflict(
        self, task_id: str, want: str, exc: FactoryError
    ) -> DeliveryResult:
        """409 CONFLICT (contract §7.1: the task was decided meanwhile): read the task back and
        apply the factory's record; ``skipped`` (``sent`` if it turns out assigned to ``want``
        after all, ``failed`` if it is open and assigned elsewhere: the 409 was no decision)."""
        state, found = await self._read_task(task_id)
        if state == "gone":
            await self._close_gone(task_id, "the factory answered 404 or 410 when it was read back")
            return "skipped", {"note": f"task gone, not reassigned: {exc}"}
        if found is None:  # not readable: the 409 says decided, the record comes by event
            return "skipped", {"note": f"not reassigned: {exc} (task not readable)"}
        status, detail = await self._reassign_result(task_id, want, found, "read back")
        if status == "unknown" and found.id == task_id:  # open, someone else's: refused
            return "failed", {"error": f"{exc}; read back: {detail['note']}"[:500]}
        return status, detail

    async def _reassign_read_back(self, task_id: str, want: str, why: str) -> DeliveryResult:
        """The reassign may or may not have been done (``why``): the task read back decides;
        ``unknown`` when it cannot be read."""
        state, found = await self._read_task(task_id)
        if state == "gone":
            await self._close_gone(task_id, "the factory answered 404 or 410 when it was read back")
            return "skipped", {"note": f"{why}; read back: task gone"[:500]}
        if found is None:
            return "unknown", {"note": f"{why}; the task could not be read back"[:500]}
        status, detail = await self._reassign_result(task_id, want, found, "read back")
        return status, {
            **detail,
            "note": f"{why}; {detail.get('note', 'read back: reassigned')}"[:500],
        }

    async def _read_task(self, task_id: str) -> tuple[str, Task | None]:
        """``GET /v1/tasks/{id}`` (contract §1.5): ``("found", task)``, ``("gone", None)``
        for 404/410, ``("unknown", None)`` when it cannot be read."""
        try:
            return "found", await self.bridge.factory.get_task(task_id)
        except FactoryError as exc:
            if exc.status in (404, 410):
                return "gone", None
            log.warning("ladder: task %s not readable: %s", task_id, exc)
        except Exception as exc:  # unreachable, or an answer nobody foresaw: not known
            log.warning("ladder: task %s not readable: %r", task_id, exc)
        return "unknown", None

    async def _apply(self, task: Task) -> None:
        """Store the factory's record (:meth:`bot.bridge.Bridge.apply_factory_task`), as every
        factory answer is applied; a failure to store it is logged, not the delivery's."""
        try:
            await self.bridge.apply_factory_task(task)
        except Exception:
            log.exception("ladder: the factory's record of task %s not applied", task.id)

    async def _close_gone(self, task_id: str, reason: str) -> None:
        """Close a task the factory no longer has (:meth:`bot.bridge.Bridge.task_gone`)."""
        try:
            await self.bridge.task_gone(task_id, reason)
        except Exception:
            log.exception("ladder: task %s gone at the factory but not closed", task_id)

    async def escalate(
        self, task: LadderTask, level: int, reason: str, escalate_to: str | None
    ) -> DeliveryResult:
        """``POST /v1/approvals/{id}/escalate`` (contract §1.5), Idempotency-Key from the task
        id and ``level`` (a restart or retry never escalates twice, §7.1).

        ``sent`` with the factory's ``escalationLevel`` when it answers this approval, still
        ``pending`` or ``expired``; ``skipped`` for 404/409/410 (the approval is decided or
        gone: recorded, not retried) and for an answer showing it decided (``approved``,
        ``rejected``: contract §1.4 ``ApprovalStatus``); ``unknown`` for an
        answer that is another approval (``id``); ``failed`` for any other refusal, or when
        the factory stays unreachable after the client's retries.
        """
        approval_id = task.approval_id
        if approval_id is None:
            return "skipped", {"note": "no approval behind the task"}
        try:
            answer = await self.bridge.factory.escalate_approval(
                approval_id,
                reason=reason,
                escalate_to=escalate_to,
                idempotency_key=FactoryClient.new_idempotency_key(
                    f"escalation:{task.task_id}:escalate:{level}"
                ),
            )
        except FactoryError as exc:
            if exc.status in (404, 409, 410):
                return "skipped", {"note": f"approval not escalated: {exc}"}
            return "failed", {"error": str(exc)}
        except FactoryUnavailable as exc:
            return "failed", {"error": str(exc)}
        detail: dict[str, Any] = {"approval_id": approval_id}
        if answer.get("id", approval_id) != approval_id:  # an answer without id is not judged
            other = str(answer.get("id"))[:64]
            return "unknown", {
                **detail,
                "note": f"the factory answered another approval ({other!r})",
            }
        status = answer.get("status", "pending")
        # decided: nothing left to escalate; an ``expired`` approval (SLA breached, the very
        # case the ladder escalates, contract §1.4) was escalated when the factory says 200
        if status in ("approved", "rejected"):
            return "skipped", {
                **detail,
                "note": f"approval not escalated: it is {str(status)[:40]}",
            }
        if escalate_to:
            detail["escalate_to"] = escalate_to
        if isinstance(answer.get("escalationLevel"), int):
            detail["factory_level"] = answer["escalationLevel"]
        return "sent", detail

    async def safe_default(self, task: LadderTask, decision: str, notes: str) -> DeliveryResult:
        """The decision through :meth:`bot.bridge.Bridge.decide` (exactly once, no role
        check: the ladder decides).

        ``sent`` when the factory confirmed it as the ladder's; ``skipped`` when someone
        decided first (a 409, or an answer naming someone else: :mod:`bot.decision_send`);
        ``unknown`` when its outcome is not known yet (``unconfirmed``: still in flight and
        re-sent in the background with the same Idempotency-Key, contract §7.1 — it may well
        be recorded, so it is not called failed); ``skipped`` too when the factory no longer
        has the task (404/410: closed as gone); ``failed`` when the factory did not record it.
        """
        outcome = await self.bridge.decide(
            task.task_id,
            decision,
            ESCALATION_ACTOR,
            notes=notes,
            idempotency_seed=f"escalation:{task.task_id}:safe-default",
            skip_role_check=True,
        )
        status = _SAFE_DEFAULT_STATUS.get(outcome.kind, "failed")
        if status == "failed":
            stored = await self.bridge.store.get_task(task.task_id)
            if stored is not None and stored.decision == GONE:  # a 404/410 closed it
                return "skipped", {"note": f"task gone, no safe default: {outcome.message}"}
        return status, {"decision": decision, "note": outcome.message}


class StoreAudit:
    """Audit entries of the ladder in the bridge's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def __call__(self, task_id: str, action: str, outcome: str, detail: str) -> None:
        """Append one entry, actor :data:`ESCALATION_ACTOR`."""
        await self.store.audit(
            actor_name=ESCALATION_ACTOR.name,
            via=ESCALATION_ACTOR.via,
            action=action,
            outcome=outcome,
            task_id=task_id,
            detail=detail[:2000],
        )
