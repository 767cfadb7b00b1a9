"""In-memory fakes of every port of the ladder service, and a driver that walks ladders.

Used by ``tests/escalation/test_service.py`` and ``bench/ladder_core.py``: no database, no
Discord, no Twilio, no timer and no real waiting (the clock is set by the driver; retries
sleep through :meth:`Rig.sleep`, which only records the delay).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from escalation.deliveries import IDEMPOTENT_CHANNELS, NewDelivery
from escalation.models import Priority, Task
from escalation.notices import CallScript
from escalation.policy import EscalationPolicy, SafeDefault
from escalation.ports import (
    DeliveryError,
    DeliveryResult,
    DeliveryRow,
    LadderStepRow,
    LadderTask,
    RecipientUnreachable,
)
from escalation.recipients import Person
from escalation.service import LadderService

__all__ = [
    "ALICE",
    "DAVE",
    "ERIN",
    "Clock",
    "FakeAlarm",
    "FakeAnnouncer",
    "FakeAudit",
    "FakeDecider",
    "FakePager",
    "FakeRepository",
    "FakeRoster",
    "FakeTask",
    "FakeTasks",
    "Rig",
    "make_rig",
]

ALICE = Person(
    "Alice", discord_user_id=11, phone="+15550000001", factory_user_id="u-alice", on_call=True
)
DAVE = Person(
    "Dave",
    discord_user_id=12,
    phone="+15550000002",
    factory_user_id="u-dave",
    on_call=True,
    admin=True,
)
ERIN = Person(
    "Erin", discord_user_id=13, phone="+15550000003", factory_user_id="u-erin", admin=True
)


class Clock:
    """A settable aware-UTC clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        #: The same clock as a C-level call (no Python frame per reading): what the service
        #: is given, since it reads the clock dozens of times per ladder (bench/ladder_core.py)
        self.read: Callable[[], datetime] = partial(getattr, self, "now")

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class FakeTask:
    """A :class:`escalation.ports.LadderTask` without the bridge's store."""

    task: Task
    deadline: datetime
    decision: str | None = None
    decided_by: str | None = None
    acknowledged_at: datetime | None = None
    snoozed_until: datetime | None = None
    channel_id: int | None = 100
    message_id: int | None = 5000
    approval_id: str | None = None
    # plain attributes, not properties: the service reads them dozens of times per ladder
    task_id: str = field(init=False)
    is_decided: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "task_id", self.task.id)
        object.__setattr__(self, "is_decided", self.decision is not None)


class FakeTasks:
    """The tasks by id (:class:`escalation.ports.TaskReader`)."""

    def __init__(self) -> None:
        self.tasks: dict[str, FakeTask] = {}

    async def get(self, task_id: str) -> FakeTask | None:
        return self.tasks.get(task_id)

    async def open_tasks(self) -> list[FakeTask]:
        return [t for t in self.tasks.values() if not t.is_decided]

    def update(self, task_id: str, **changes: Any) -> None:
        # built directly: dataclasses.replace re-checks every field (bench/ladder_core.py)
        fields = {**self.tasks[task_id].__dict__, **changes}
        del fields["task_id"], fields["is_decided"]  # derived (init=False)
        self.tasks[task_id] = FakeTask(**fields)


class FakeRepository:
    """Steps and deliveries in dicts, with the store's compare-and-set semantics.

    ``audit_log`` is the audit trail the store shares with :class:`FakeAudit` (the bridge's
    one audit table): the entries written with a claim or an outcome go there.
    """

    def __init__(self, audit_log: list[tuple[str, str, str, str]] | None = None) -> None:
        self.audit_log = audit_log
        self.step_rows: dict[str, list[LadderStepRow]] = {}
        self.ids_by_task: dict[str, list[int]] = {}
        self._ids_by_step: dict[tuple[str, str], list[int]] = {}
        self._steps_claimed: set[tuple[str, str]] = set()
        self._keys: set[tuple[str, str, str, str]] = set()  # (task, step, channel, recipient)
        self.rows: dict[int, DeliveryRow] = {}
        self.phones: set[str] = set()
        self.yield_in_claims = False

    async def steps(self, task_ids: Iterable[str]) -> dict[str, list[LadderStepRow]]:
        return {i: list(self.step_rows[i]) for i in task_ids if i in self.step_rows}

    async def claim_step(
        self,
        task_id: str,
        step: str,
        *,
        due_at: datetime,
        now: datetime,
        deliveries: Sequence[NewDelivery],
        audit: dict[str, Any] | None = None,
        done_outcome: dict[str, Any] | None = None,
    ) -> bool:
        if self.yield_in_claims:
            await asyncio.sleep(0)  # a concurrent claim may run here
        rows = self.step_rows.setdefault(task_id, [])
        if (task_id, step) in self._steps_claimed:  # the store's unique (task, step) key
            return False
        self._steps_claimed.add((task_id, step))
        late = max(0.0, (now - due_at).total_seconds())
        status = "claimed" if done_outcome is None else "done"
        rows.append(LadderStepRow(task_id, step, due_at, now, late, status, done_outcome or {}))
        for d in deliveries:
            self._add(task_id, step, d, due_at, now)
        if audit is not None:
            self._audit(audit)
        return True

    def _audit(self, audit: dict[str, Any]) -> None:
        if self.audit_log is not None:
            self.audit_log.append(
                (audit["task_id"], audit["action"], audit["outcome"], audit["detail"])
            )

    def _add(
        self, task_id: str, step: str, d: NewDelivery, due_at: datetime, now: datetime
    ) -> bool:
        key = (task_id, step, d.channel, d.recipient)
        if key in self._keys:  # the store's unique key
            return False
        self._keys.add(key)
        # built without __init__ (a frozen dataclass's sets each field through
        # object.__setattr__): the fakes' own cost is not what bench/ladder_core.py measures
        row = object.__new__(DeliveryRow)
        row_id = len(self.rows) + 1
        row.__dict__.update(
            id=row_id, task_id=task_id, step=step, channel=d.channel, recipient=d.recipient,
            due_at=due_at, held=d.held, status="pending", created_at=now, claimed_at=None,
            finished_at=None, detail=dict(d.detail or {}),
        )  # fmt: skip
        self.rows[row_id] = row
        self.ids_by_task.setdefault(task_id, []).append(row_id)
        self._ids_by_step.setdefault((task_id, step), []).append(row_id)
        return True

    def _set(self, row: DeliveryRow, **changes: Any) -> None:
        # a new row (rows handed out stay as they were read, like the store's); built without
        # __init__: dataclasses.replace re-checks every field, too slow for bench/ladder_core.py
        new = object.__new__(DeliveryRow)
        new.__dict__.update(row.__dict__, **changes)
        self.rows[row.id] = new

    def of(self, task_id: str) -> list[DeliveryRow]:
        """The task's deliveries, oldest first."""
        return [self.rows[i] for i in self.ids_by_task.get(task_id, [])]

    async def finish_step(
        self, task_id: str, step: str, outcome: dict[str, Any], *, late_seconds: float | None = None
    ) -> None:
        rows = self.step_rows[task_id]
        for i, r in enumerate(rows):
            if r.step == step:
                late = r.late_seconds if late_seconds is None else late_seconds
                rows[i] = LadderStepRow(
                    r.task_id, r.step, r.due_at, r.taken_at, late, "done", outcome
                )

    async def deliveries(
        self,
        *,
        task_id: str | None = None,
        step: str | None = None,
        statuses: Sequence[str] | None = None,
        channels: Sequence[str] | None = None,
    ) -> list[DeliveryRow]:
        if task_id is not None and step is not None:  # a step's rows (most reads)
            rows = [self.rows[i] for i in self._ids_by_step.get((task_id, step), ())]
            if statuses is None and channels is None:
                return rows
            step = None
        else:
            rows = self.of(task_id) if task_id is not None else list(self.rows.values())
        return [
            r
            for r in rows
            if (step is None or r.step == step)
            and (statuses is None or r.status in statuses)
            and (channels is None or r.channel in channels)
        ]

    async def add_delivery(
        self, task_id: str, step: str, delivery: NewDelivery, *, due_at: datetime, now: datetime
    ) -> bool:
        return self._add(task_id, step, delivery, due_at, now)

    async def claim_deliveries(self, ids: Sequence[int], now: datetime) -> bool:
        for i in ids:
            if self.rows[i].status != "pending":
                return False
        for i in ids:
            self._set(self.rows[i], status="claimed", claimed_at=now)
        return True

    async def finish_delivery(
        self,
        delivery_id: int,
        status: str,
        detail: dict[str, Any],
        now: datetime,
        *,
        audit: dict[str, Any] | None = None,
    ) -> None:
        row = self.rows[delivery_id]
        self._set(row, status=status, finished_at=now, detail={**row.detail, **detail})
        if audit is not None:
            self._audit(audit)

    async def cancel_pending(
        self, task_id: str, reason: str, now: datetime, *, steps: Sequence[str] | None = None
    ) -> int:
        pending = [
            r
            for r in self.of(task_id)
            if r.status == "pending" and (steps is None or r.step in steps)
        ]
        for r in pending:
            self._set(r, status="cancelled", finished_at=now, detail={"cancelled": reason})
        return len(pending)

    async def expire_claimed(self, now: datetime) -> list[DeliveryRow]:
        claimed = [r for r in self.rows.values() if r.status == "claimed"]
        for r in claimed:
            retry = r.channel in IDEMPOTENT_CHANNELS
            self._set(r, status="pending" if retry else "unknown")
        return claimed

    async def mark_unreachable(
        self, phone: str, operator: str | None, code: int | None, now: datetime
    ) -> None:
        self.phones.add(phone)

    async def unreachable(self) -> set[str]:
        return set(self.phones)

    async def claimed_step_tasks(self) -> set[str]:
        return {i for i, rows in self.step_rows.items() if any(r.status == "claimed" for r in rows)}


class FakeRoster:
    """People in order; the assignee by factory id."""

    def __init__(self, people: Sequence[Person]) -> None:
        self._people = list(people)
        self._by_factory_id = {p.factory_user_id: p for p in reversed(self._people)}

    def people(self) -> list[Person]:
        return list(self._people)

    def assignee(self, task: LadderTask) -> Person | None:
        wanted = task.task.assignee_id
        return self._by_factory_id.get(wanted) if wanted else None


@dataclass
class FakeAnnouncer:
    """Records each post as ``(what, task id, people keys, late seconds)``."""

    posts: list[tuple[str, str, tuple[str, ...], float]] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)
    fail: int = 0  # this many posts fail with a retryable error first

    def _post(
        self, what: str, task: LadderTask, people: Sequence[Person], late: float
    ) -> dict[str, Any]:
        # plain, not a coroutine: each post method is one coroutine, as an adapter's is
        if self.fail:
            self.fail -= 1
            raise DeliveryError("Discord 503", status=503, retryable=True)
        self.posts.append((what, task.task_id, tuple([p.key for p in people]), late))
        return {"message_id": len(self.posts)}

    async def reminder(
        self, task: LadderTask, targets: Sequence[Person], late_seconds: float
    ) -> dict[str, Any]:
        return self._post("reminder", task, targets, late_seconds)

    async def warning(
        self, task: LadderTask, on_call: Sequence[Person], late_seconds: float
    ) -> dict[str, Any]:
        return self._post("warning", task, on_call, late_seconds)

    async def breach_alert(
        self, task: LadderTask, on_call: Sequence[Person], late_seconds: float
    ) -> dict[str, Any]:
        return self._post("breach_alert", task, on_call, late_seconds)

    async def incident_report(self, task: LadderTask) -> dict[str, Any]:
        return self._post("incident_report", task, (), 0.0)

    def refresh(self, task_id: str) -> None:
        self.refreshed.append(task_id)


@dataclass
class FakePager:
    """Records SMS and calls; phones in ``stopped`` answer Twilio 21610; a call to a phone
    of ``refused_calls`` is refused with that Twilio error code (HTTP 400, not retryable,
    e.g. 21211 invalid number); ``transient`` failures (503) come first."""

    sms: list[tuple[str, str]] = field(default_factory=list)
    calls: list[tuple[str, CallScript]] = field(default_factory=list)
    stopped: set[str] = field(default_factory=set)
    refused_calls: dict[str, int] = field(default_factory=dict)
    transient: int = 0

    def _check(self, to: str) -> None:
        if to in self.stopped:
            raise RecipientUnreachable("Twilio 400 21610", code=21610, status=400)
        if self.transient:
            self.transient -= 1
            raise DeliveryError("Twilio 503", status=503, retryable=True, retry_after=3.0)

    async def send_sms(self, to: str, body: str) -> str:
        self._check(to)
        self.sms.append((to, body))
        return f"SM{len(self.sms)}"

    async def call(self, to: str, script: CallScript) -> str:
        self._check(to)
        if to in self.refused_calls:
            code = self.refused_calls[to]
            raise DeliveryError(f"Twilio 400 {code}", code=code, status=400)
        self.calls.append((to, script))
        return f"CA{len(self.calls)}"

    async def aclose(self) -> None:
        return None


class FakeDecider:
    """Reassigns, escalates and decides; a safe default decides the task in
    :class:`FakeTasks`. ``escalate_answers`` are the results of the next escalations
    (then ``sent``)."""

    def __init__(self, tasks: FakeTasks) -> None:
        self.tasks = tasks
        self.reassigned: list[tuple[str, str]] = []
        self.decided: list[tuple[str, str]] = []
        #: (task id, level, reason, escalateTo) of each escalation that reached the factory
        self.escalated: list[tuple[str, int, str, str | None]] = []
        self.escalate_answers: list[DeliveryResult] = []

    async def escalate(
        self, task: LadderTask, level: int, reason: str, escalate_to: str | None
    ) -> DeliveryResult:
        if self.escalate_answers:
            return self.escalate_answers.pop(0)
        self.escalated.append((task.task_id, level, reason, escalate_to))
        return "sent", {"factory_level": level}

    async def reassign(self, task: LadderTask, admin: Person, reason: str) -> DeliveryResult:
        self.reassigned.append((task.task_id, admin.key))
        return "sent", {"assignee": admin.factory_user_id}

    async def safe_default(self, task: LadderTask, decision: str, notes: str) -> DeliveryResult:
        self.decided.append((task.task_id, decision))
        self.tasks.update(task.task_id, decision=decision, decided_by="escalation")
        return "sent", {"decision": decision}


@dataclass
class FakeAudit:
    """Audit entries as ``(task id, action, outcome, detail)``."""

    entries: list[tuple[str, str, str, str]] = field(default_factory=list)

    async def __call__(self, task_id: str, action: str, outcome: str, detail: str) -> None:
        self.entries.append((task_id, action, outcome, detail))


@dataclass
class FakeAlarm:
    """Wake-ups by task id."""

    at: dict[str, datetime] = field(default_factory=dict)

    def set(self, task_id: str, at: datetime) -> None:
        self.at[task_id] = at

    def cancel(self, task_id: str) -> None:
        self.at.pop(task_id, None)


@dataclass
class Rig:
    """A :class:`LadderService` on fakes of every port."""

    service: LadderService
    clock: Clock
    tasks: FakeTasks
    repository: FakeRepository
    announcer: FakeAnnouncer
    pager: FakePager
    decider: FakeDecider
    audit: FakeAudit
    alarm: FakeAlarm
    slept: list[float]

    def add(
        self,
        task_id: str,
        priority: Priority,
        *,
        created: datetime,
        assignee: str | None = None,
        **changes: Any,
    ) -> FakeTask:
        """Track a new task and wake its ladder now (what ``task_opened`` does)."""
        task = Task(
            id=task_id,
            title=f"Task {task_id}",
            priority=priority,
            created_at=created,
            assignee_id=assignee,
        )
        deadline = self.service.policy.deadline_for(created, priority)
        tracked = FakeTask(task, deadline, **changes)
        self.tasks.tasks[task_id] = tracked
        self.alarm.set(task_id, created)
        return tracked

    async def walk(self, task_id: str, *, until: datetime | None = None, limit: int = 50) -> int:
        """Wake the task at each of its wake-ups (moving the clock there) until it has none
        or the next is after ``until``; how many wake-ups ran (at most ``limit``: a ladder
        that never ends fails the test instead of hanging it)."""
        wakes = 0
        while task_id in self.alarm.at:
            assert wakes < limit, f"{task_id}: still waking after {limit} wake-ups"
            at = self.alarm.at[task_id]
            if until is not None and at > until:
                break
            self.clock.now = max(self.clock.now, at)
            await self.service.wake(task_id)
            wakes += 1
        return wakes


def make_rig(
    start: datetime,
    *,
    people: Sequence[Person] = (ALICE, DAVE),
    safe_default: SafeDefault = SafeDefault.DEFERRED,
    policy: EscalationPolicy | None = None,
    pager: bool = True,
) -> Rig:
    """A rig whose clock starts at ``start``; quiet hours are off unless ``policy`` says."""
    clock = Clock(start)
    tasks = FakeTasks()
    audit = FakeAudit()
    repository = FakeRepository(audit.entries)  # one audit trail, as in the bridge's store
    announcer = FakeAnnouncer()
    fake_pager = FakePager()
    decider = FakeDecider(tasks)
    alarm = FakeAlarm()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += timedelta(seconds=seconds)

    service = LadderService(
        policy=policy or EscalationPolicy(quiet_hours=None, safe_default=safe_default),
        repository=repository,
        tasks=tasks,
        roster=FakeRoster(people),
        announcer=announcer,
        pager=fake_pager if pager else None,
        decider=decider,
        audit=audit,
        alarm=alarm,
        clock=clock.read,
        sleep=sleep,
    )
    return Rig(
        service, clock, tasks, repository, announcer, fake_pager, decider, audit, alarm, slept
    )
