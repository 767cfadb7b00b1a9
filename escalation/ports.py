"""Ports of the escalation ladder: what its adapters (store, Discord, Twilio, factory, timer)
must offer to :class:`escalation.service.LadderService`.

The core never imports discord.py, twilio, httpx, SQLAlchemy or APScheduler. The service talks
to the outside world only through these small protocols (``typing.Protocol``: an adapter
satisfies them structurally, e.g. ``bot.store.ladder.LadderStore`` *is* a
:class:`LadderRepository` and ``bot.store.TrackedTask`` *is* a :class:`LadderTask`). The
adapters translate their library's errors into :class:`DeliveryError` /
:class:`RecipientUnreachable`, so the retry and fallback rules of the ladder (rule:
escalation ladder) are written once, against these types:

* a :class:`DeliveryError` with ``retryable=True`` (Discord 5xx, Twilio 5xx or 429, a network
  error) is retried with backoff;
* :class:`RecipientUnreachable` (Discord 50007 "Cannot send messages to this user", Twilio 21610
  "Attempt to send to unsubscribed recipient") is never retried: the service falls back (an
  @mention in a reply instead of the DM; the next on-call operator instead of the phone);
* any other :class:`DeliveryError` is permanent: recorded as failed, not retried.

Words and markup a person reads in Discord are the :class:`Announcer`'s (the bot side); the
core hands it the task, the people to mention and how late the step is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from escalation.deliveries import NewDelivery
from escalation.models import Priority, Task
from escalation.notices import CallScript
from escalation.recipients import Person

__all__ = [
    "Alarm",
    "Announcer",
    "Audit",
    "Clock",
    "Decider",
    "DeliveryError",
    "DeliveryResult",
    "DeliveryRow",
    "LadderRepository",
    "LadderStepRow",
    "LadderTask",
    "Messenger",
    "OpenTaskClock",
    "Pager",
    "RecipientUnreachable",
    "Roster",
    "TaskReader",
]

#: The outcome of one delivery: its status (``sent``, ``failed``, ``skipped``,
#: ``unreachable``) and a JSON-able detail merged into the stored row (``message_id``,
#: ``error``, ``note`` …).
DeliveryResult = tuple[str, dict[str, Any]]


class DeliveryError(Exception):
    """A notification could not be delivered.

    Parameters
    ----------
    message
        What went wrong (shown in the audit trail; never contains secrets).
    code
        The provider's error code (Discord JSON ``code``, Twilio error code), if any.
    status
        HTTP status, if any.
    retryable
        True for a transient failure (5xx, 429, network): try again after a backoff.
    retry_after
        Seconds the provider asked to wait (``Retry-After``), if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class RecipientUnreachable(DeliveryError):
    """The recipient cannot be reached through this channel (DMs closed, phone opted out).

    Never retryable; the runtime persists it where it matters (a phone that answered STOP) and
    falls back to another channel or person.
    """

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None):
        super().__init__(message, code=code, status=status, retryable=False)


class Pager(Protocol):
    """SMS and phone calls (implemented by ``bot.pager.twilio_pager.TwilioPager``)."""

    async def send_sms(self, to: str, body: str) -> str:
        """Send ``body`` (plain ASCII, ≤ 160 characters) to the E.164 number ``to``.

        Returns the provider's message id. Raises :class:`DeliveryError` or
        :class:`RecipientUnreachable`.
        """
        ...

    async def call(self, to: str, script: CallScript) -> str:
        """Place a call to ``to`` that says ``script`` (the adapter renders it, e.g. as
        TwiML); the call id.

        Raises :class:`DeliveryError` or :class:`RecipientUnreachable`.
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class Messenger(Protocol):
    """Discord, as the ladder needs it (implemented by ``bot.discord.ladder_output``).

    Channel and message ids are Discord snowflakes; ``user_ids`` are the Discord users the
    message may ping (allowed mentions); ``everyone`` lets ``@here`` ping.
    """

    async def send_dm(self, user_id: int, content: str) -> int:
        """DM ``user_id``; the message id. :class:`RecipientUnreachable` for closed DMs."""
        ...

    async def post(
        self,
        channel_id: int,
        content: str,
        *,
        reply_to: int | None = None,
        user_ids: Sequence[int] = (),
        everyone: bool = False,
    ) -> int:
        """Post ``content`` in ``channel_id`` (as a reply to ``reply_to``); the message id."""
        ...

    def may_mention_everyone(self, channel_id: int) -> bool:
        """True when the bot's ``@here`` would ping in ``channel_id`` (MENTION_EVERYONE)."""
        ...


class Clock(Protocol):
    """The current time, aware UTC."""

    def __call__(self) -> datetime: ...


class LadderTask(Protocol):
    """The service's read model of a task (``bot.store.TrackedTask`` satisfies it).

    Times are aware UTC; ``channel_id`` and ``message_id`` are the Discord ids of the task
    message (``None`` before it is posted).
    """

    @property
    def task(self) -> Task:
        """The factory's task (title, priority, ``created_at``, ``assignee_id``)."""
        ...

    @property
    def task_id(self) -> str: ...

    @property
    def deadline(self) -> datetime:
        """The SLA deadline."""
        ...

    @property
    def decision(self) -> str | None:
        """The confirmed decision, or ``None``."""
        ...

    @property
    def is_decided(self) -> bool: ...

    @property
    def decided_by(self) -> str | None:
        """Who decided (a name), or ``None``."""
        ...

    @property
    def acknowledged_at(self) -> datetime | None: ...

    @property
    def snoozed_until(self) -> datetime | None: ...

    @property
    def channel_id(self) -> int | None: ...

    @property
    def message_id(self) -> int | None: ...

    @property
    def approval_id(self) -> str | None:
        """The id of the factory ``Approval`` behind the task (contract §1.4), or ``None``
        when the bridge knows none (then the factory is not told the escalation level)."""
        ...


@dataclass(frozen=True, slots=True)
class LadderStepRow:
    """A stored step: ``status`` is ``claimed`` (side effects may be under way) or ``done``.

    ``late_seconds`` is how late it was taken (seconds after ``due_at``).
    """

    task_id: str
    step: str
    due_at: datetime
    taken_at: datetime
    late_seconds: float
    status: str
    outcome: dict[str, Any]


@dataclass(frozen=True)
class DeliveryRow:
    """A stored delivery. ``status``: ``pending``, ``claimed``, ``sent``, ``failed``,
    ``skipped``, ``unreachable``, ``unknown`` (interrupted by a restart), ``cancelled``."""

    id: int
    task_id: str
    step: str
    channel: str
    recipient: str
    due_at: datetime
    held: bool
    status: str
    created_at: datetime
    claimed_at: datetime | None
    finished_at: datetime | None
    detail: dict[str, Any]


class LadderRepository(Protocol):
    """The ladder's truth: steps and deliveries with compare-and-set claims (implemented by
    ``bot.store.ladder.LadderStore``; see its docstrings for the transactions)."""

    async def steps(self, task_ids: Iterable[str]) -> dict[str, list[LadderStepRow]]:
        """Step rows per task, in the order claimed."""
        ...

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
        """Claim a step with its deliveries (one transaction); ``False`` if claimed before."""
        ...

    async def finish_step(
        self, task_id: str, step: str, outcome: dict[str, Any], *, late_seconds: float | None = None
    ) -> None:
        """Mark a claimed step ``done``."""
        ...

    async def deliveries(
        self,
        *,
        task_id: str | None = None,
        step: str | None = None,
        statuses: Sequence[str] | None = None,
        channels: Sequence[str] | None = None,
    ) -> list[DeliveryRow]:
        """Deliveries matching every filter given, oldest first."""
        ...

    async def add_delivery(
        self, task_id: str, step: str, delivery: NewDelivery, *, due_at: datetime, now: datetime
    ) -> bool:
        """Add one pending delivery (a fallback); ``False`` when that key exists already."""
        ...

    async def claim_deliveries(self, ids: Sequence[int], now: datetime) -> bool:
        """Compare-and-set ``pending`` → ``claimed`` for all of ``ids`` (all or nothing)."""
        ...

    async def finish_delivery(
        self,
        delivery_id: int,
        status: str,
        detail: dict[str, Any],
        now: datetime,
        *,
        audit: dict[str, Any] | None = None,
    ) -> None:
        """Record the outcome of a delivery; ``audit`` (columns of the audit table, as
        :meth:`claim_step` takes them) is appended in the same write."""
        ...

    async def cancel_pending(
        self, task_id: str, reason: str, now: datetime, *, steps: Sequence[str] | None = None
    ) -> int:
        """Cancel the task's pending deliveries; how many were."""
        ...

    async def expire_claimed(self, now: datetime) -> list[DeliveryRow]:
        """Settle deliveries a crash left ``claimed``; the rows as they were."""
        ...

    async def claimed_step_tasks(self) -> set[str]:
        """Ids of the tasks with a step left ``claimed`` (a crash interrupted it), decided
        or not."""
        ...

    async def mark_unreachable(
        self, phone: str, operator: str | None, code: int | None, now: datetime
    ) -> None:
        """Persist that ``phone`` must not be texted or called (Twilio 21610)."""
        ...

    async def unreachable(self) -> set[str]:
        """Phones marked unreachable."""
        ...


class OpenTaskClock(NamedTuple):
    """What arming an open task's ladder needs of it, and nothing more (no payload).

    Attributes
    ----------
    task_id
        The factory's task id.
    created_at, deadline
        T and D of the ladder, aware UTC.
    priority
        The task's priority.
    acknowledged_at, snoozed_until
        As :class:`LadderTask` has them (aware UTC or ``None``).
    """

    task_id: str
    created_at: datetime
    deadline: datetime
    priority: Priority
    acknowledged_at: datetime | None
    snoozed_until: datetime | None


class TaskReader(Protocol):
    """The tasks, as the ladder reads them.

    A reader may also offer ``open_task_pages()``: an async iterator of sequences of the
    same tasks as :meth:`open_tasks`, a page at a time (the ladder's rebuild then never holds
    every open task at once; :meth:`escalation.service.LadderService.rebuild`); or, cheaper,
    ``open_task_clocks()``: the same pages as sequences of :class:`OpenTaskClock` (only the
    columns arming reads; no task model is built per row).
    """

    async def get(self, task_id: str) -> LadderTask | None:
        """The task now, or ``None`` when unknown."""
        ...

    async def open_tasks(self) -> Sequence[LadderTask]:
        """Every undecided task that has a Discord message (its ladder runs)."""
        ...


class Roster(Protocol):
    """The operators (``roster.toml``) as the ladder sees them."""

    def people(self) -> list[Person]:
        """Everyone, in file order."""
        ...

    def assignee(self, task: LadderTask) -> Person | None:
        """The task's assignee when the roster maps its ``assigneeId``."""
        ...


class Audit(Protocol):
    """The audit trail (the actor is the escalation ladder)."""

    async def __call__(self, task_id: str, action: str, outcome: str, detail: str) -> None:
        """Append one entry (``detail`` at most 2,000 characters)."""
        ...


class Decider(Protocol):
    """The factory calls of the ladder: the critical step's reassign and safe default, and
    each level's escalation. Each carries an Idempotency-Key derived from the task (and the
    level), factory contract §7.1, so a call interrupted by a restart is simply sent again."""

    async def reassign(self, task: LadderTask, admin: Person, reason: str) -> DeliveryResult:
        """Reassign ``task`` to ``admin``: ``sent`` when the factory's answer shows the admin
        as assignee; ``skipped`` when the task was decided or is gone (404/409/410);
        ``unknown`` when the answer or a lost reply leaves it unclear; ``failed`` with the
        error otherwise."""
        ...

    async def safe_default(self, task: LadderTask, decision: str, notes: str) -> DeliveryResult:
        """Decide ``task`` with ``decision`` (``sent``; ``skipped`` when decided meanwhile;
        ``unknown`` while the outcome is not confirmed and it is re-sent in the background;
        ``failed``)."""
        ...

    async def escalate(
        self, task: LadderTask, level: int, reason: str, escalate_to: str | None
    ) -> DeliveryResult:
        """Tell the factory the ladder reached ``level`` (1–4): ``POST
        /v1/approvals/{task.approval_id}/escalate`` with ``reason`` and, when the critical
        step reassigns, ``escalateTo`` = the admin's factory user id (contract §1.5).

        The Idempotency-Key comes from the task id and ``level``. Returns ``sent``;
        ``skipped`` when the factory answers 404/409/410 or with an approval no longer pending
        (decided or gone: not retried); ``unknown`` for an answer about another approval;
        ``failed`` with the error otherwise.
        """
        ...


class Announcer(Protocol):
    """The ladder's Discord posts, worded by the adapter (``bot.ladder.announcer``).

    Each method makes one post and returns the detail to store (``message_id`` …); it raises
    :class:`DeliveryError` for the service to retry. ``late_seconds`` > 1 adds "(late by …)".
    A detail with ``"skipped": True`` says the same news was already posted by someone else
    (the factory's own SLA event): the delivery is recorded ``skipped``, not ``sent``.
    """

    async def reminder(
        self, task: LadderTask, targets: Sequence[Person], late_seconds: float
    ) -> dict[str, Any]:
        """The reminder @mention of ``targets`` in a reply to the task message."""
        ...

    async def warning(
        self, task: LadderTask, on_call: Sequence[Person], late_seconds: float
    ) -> dict[str, Any]:
        """The SLA warning in a reply to the task message: ``@here``, or ``on_call`` without
        the MENTION_EVERYONE permission."""
        ...

    async def breach_alert(
        self, task: LadderTask, on_call: Sequence[Person], late_seconds: float
    ) -> dict[str, Any]:
        """The SLA breach alert in the alerts channel (``@here`` or ``on_call``)."""
        ...

    async def incident_report(self, task: LadderTask) -> dict[str, Any]:
        """The incident report in the alerts channel: every step and delivery so far."""
        ...

    def refresh(self, task_id: str) -> None:
        """Re-render the task message soon (next step and when); must not block."""
        ...


class Alarm(Protocol):
    """Wake-ups of the ladder (implemented by ``bot.ladder.timers.WakeTimers``)."""

    def set(self, task_id: str, at: datetime) -> None:
        """Wake the task's ladder at ``at`` (aware UTC; now or earlier: at once)."""
        ...

    def cancel(self, task_id: str) -> None:
        """The task needs no wake-up any more."""
        ...
