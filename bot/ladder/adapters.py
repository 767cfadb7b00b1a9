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

from collections.abc import AsyncIterator, Sequence
from typing import Any

from bot.bridge import Actor, Bridge
from bot.factory.client import FactoryClient, FactoryError, FactoryUnavailable
from bot.roster import Operator
from bot.roster import Roster as OperatorRoster
from bot.store import Store, TrackedTask
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
    """Reassign, escalation level and safe default through the bridge."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    async def reassign(self, task: LadderTask, admin: Person, reason: str) -> DeliveryResult:
        """``POST /v1/tasks/{id}/reassign`` to ``admin`` (Idempotency-Key from the task)."""
        assert admin.factory_user_id is not None
        try:
            await self.bridge.factory.reassign_task(
                task.task_id,
                assignee_id=admin.factory_user_id,
                reason=reason,
                idempotency_key=FactoryClient.new_idempotency_key(
                    f"escalation:{task.task_id}:reassign"
                ),
            )
        except (FactoryError, FactoryUnavailable) as exc:
            return "failed", {"error": str(exc)}
        return "sent", {"assignee": admin.factory_user_id}

    async def escalate(
        self, task: LadderTask, level: int, reason: str, escalate_to: str | None
    ) -> DeliveryResult:
        """``POST /v1/approvals/{id}/escalate`` (contract §1.5), Idempotency-Key from the task
        id and ``level`` (a restart or retry never escalates twice, §7.1).

        ``sent`` with the factory's ``escalationLevel`` when it answers one; ``skipped`` for
        404/409 (the approval is decided or gone: recorded, not retried); ``failed`` for any
        other refusal, or when the factory stays unreachable after the client's retries.
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
            if exc.status in (404, 409):
                return "skipped", {"note": f"approval not escalated: {exc}"}
            return "failed", {"error": str(exc)}
        except FactoryUnavailable as exc:
            return "failed", {"error": str(exc)}
        detail: dict[str, Any] = {"approval_id": approval_id}
        if escalate_to:
            detail["escalate_to"] = escalate_to
        if isinstance(answer.get("escalationLevel"), int):
            detail["factory_level"] = answer["escalationLevel"]
        return "sent", detail

    async def safe_default(self, task: LadderTask, decision: str, notes: str) -> DeliveryResult:
        """The decision through :meth:`bot.bridge.Bridge.decide` (exactly once, no role
        check: the ladder decides); ``skipped`` when someone decided first."""
        outcome = await self.bridge.decide(
            task.task_id,
            decision,
            ESCALATION_ACTOR,
            notes=notes,
            idempotency_seed=f"escalation:{task.task_id}:safe-default",
            skip_role_check=True,
        )
        status = "sent" if outcome.ok else ("skipped" if outcome.kind == "conflict" else "failed")
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
