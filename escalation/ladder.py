"""The escalation ladder as pure functions of the task, the policy, the steps taken and "now".

Nothing here reads a clock, sleeps or talks to Discord, Twilio or the database. An adapter
(the scheduler) loads a task's :class:`LadderState` from the store, calls :func:`due_now` on
every wake-up, takes each returned step once (recording it under the unique ``(task, step)``
key), and sets its next wake-up at :func:`next_step`'s ``deliver_at``. Because the store is
the truth and these functions only look at it, a restart after ``kill -9`` takes every step
that came due while the bridge was down exactly once, late (:meth:`StepDue.late_by_seconds`).

The ladder (contract Appendix B)
---------------------------------------------------------
For a task created at T with deadline D (:meth:`EscalationPolicy.deadline_for`):

=================  ===============================================  =======================
step               nominal time                                     what (done by adapters)
=================  ===============================================  =======================
reminder_dm        T + ``dm_after_seconds`` (1800)                  DM assignee / on-call
reminder_mention   T + ``mention_after_seconds`` (7200)             reply @mentioning them
sla_warning        D − ``warning_threshold_percent`` % × (D − T)    reply with @here
sla_breach         D                                                SMS + @here in alerts
critical           D + ``critical_after_breach_seconds`` (7200)     call, reassign, default
=================  ===============================================  =======================

Semantics chosen where the contract leaves room
--------------------------------------------
Skipping (:func:`plan`)
    The rule: "A step whose time falls after a later step is skipped". A reminder step
    (DM, mention, warning) is skipped when its time is **at or after** the time of any later
    step: two reminders at one instant are noise, so a tie goes to the later, stronger step,
    and a reminder at the deadline is superseded by the breach. The breach and critical steps
    are never skipped (critical ≥ breach always). If D < T (a ``slaDeadline`` already past),
    D − T is taken as 0, so the warning falls on D and is skipped; the breach is due at D.
Acknowledge
    Drops every reminder step not yet taken — also one that was due before the acknowledge
    but not taken (the bridge was down): the person has seen the task. Breach and critical
    stay (rule: "Acknowledge stops the reminder steps … but not the breach and critical").
Snooze
    A reminder step whose delivery time is before ``snoozed_until`` moves to
    ``snoozed_until``. Breach and critical never move (rule: "never moves the breach").
Quiet hours
    Unless the task's priority is critical (rule: "Critical tasks are never held"), any step
    (reminder, breach or critical) whose delivery time — after snooze — falls inside quiet
    hours moves to the end of that window and is flagged ``held_for_quiet_hours``; the
    bundler sends the held items as one digest per person (:mod:`escalation.bundling`).
    Exception (README "Phone", "Urgency through quiet hours"): the pages (:data:`PAGE_STEPS`,
    breach, critical and the repeats) of a task whose priority is in the policy's
    ``quiet_bypass_priorities`` (default critical and high) are never held; its reminders
    are, and one held past its breach is superseded by it.
Repeats
    After the critical step, ``repeat_n`` at critical + n × ``repeat_seconds`` for n up to
    ``repeat_limit`` (README "Phone", "Repeat until someone answers"). An acknowledgement cancels
    them, as it cancels reminders; a snooze does not move them. A repeat held for quiet hours
    to the same time as a later repeat is superseded by it (one page in the morning, not
    three).
Superseded after moving
    After snooze and quiet hours, the skipping rule is applied again to the delivery times:
    a reminder delivered at or after a later step's delivery time is dropped (a warning held
    to 08:00 together with the breach is not sent; the breach is).
Taken steps and going backwards
    Taken steps are never returned again. A step earlier in the ladder than a step already
    taken is dropped too: the ladder never goes backwards (this only matters if the policy
    changed between runs, since :func:`due_now` returns steps in ladder order).
Downtime
    After an outage every step whose delivery time has passed is returned by :func:`due_now`
    at once, in ladder order; the adapter takes each once and marks it late.
Decision
    A decided task has no steps (rule: "Only a decision stops the ladder").

Invariant: the delivery times of :func:`schedule` are non-decreasing in ladder order, so
"sorted by delivery time" and "ladder order" agree (ties keep ladder order).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from escalation.ladder_state import LATE_GRACE_SECONDS, LadderState, PlannedStep, StepDue
from escalation.models import Priority
from escalation.policy import (
    LADDER_ORDER,
    REMINDER_STEPS,
    REPEAT_STEPS,
    EscalationPolicy,
    QuietHours,
    StepKind,
    as_aware_utc,
)
from escalation.quiet_hours import quiet_window_at

__all__ = [
    "ALL_STEPS",
    "LATE_GRACE_SECONDS",
    "PAGE_STEPS",
    "LadderState",
    "PlannedStep",
    "StepDue",
    "due_now",
    "next_step",
    "plan",
    "schedule",
]

#: Every step in order: the Appendix B ladder, then the repeats.
ALL_STEPS: tuple[StepKind, ...] = (*LADDER_ORDER, *REPEAT_STEPS)

#: The steps that page by phone (SMS at the breach, the call at the critical step, both at
#: each repeat).
PAGE_STEPS = frozenset({StepKind.SLA_BREACH, StepKind.CRITICAL, *REPEAT_STEPS})


def _nominal_times(
    created_at: datetime, deadline: datetime, policy: EscalationPolicy
) -> dict[StepKind, datetime]:
    dm, mention, warning, critical_after, repeats = _offsets(policy)
    window = max(deadline - created_at, timedelta(0))
    critical = deadline + critical_after
    times = {
        StepKind.REMINDER_DM: created_at + dm,
        StepKind.REMINDER_MENTION: created_at + mention,
        StepKind.SLA_WARNING: deadline - window * warning,
        StepKind.SLA_BREACH: deadline,
        StepKind.CRITICAL: critical,
    }
    for kind, offset in repeats:
        times[kind] = critical + offset
    return times


@lru_cache(maxsize=64)
def _offsets(
    policy: EscalationPolicy,
) -> tuple[timedelta, timedelta, float, timedelta, tuple[tuple[StepKind, timedelta], ...]]:
    """The policy's step offsets as timedeltas (built once per policy, not per task)."""
    return (
        timedelta(seconds=policy.dm_after_seconds),
        timedelta(seconds=policy.mention_after_seconds),
        policy.warning_threshold_percent / 100.0,
        timedelta(seconds=policy.critical_after_breach_seconds),
        tuple(
            (kind, timedelta(seconds=n * policy.repeat_seconds))
            for n, kind in enumerate(REPEAT_STEPS[: policy.repeat_limit], start=1)
        ),
    )


def _drop_superseded(times: dict[StepKind, datetime]) -> list[StepKind]:
    """Kinds of ``times`` in ladder order, without reminders at/after a later step's time."""
    kept: list[StepKind] = []
    earliest_later: datetime | None = None  # the earliest time of any later step, kept or not
    for kind in reversed(ALL_STEPS):
        at = times.get(kind)
        if at is None:
            continue
        if not (kind in REMINDER_STEPS and earliest_later is not None and at >= earliest_later):
            kept.append(kind)
        if earliest_later is None or at < earliest_later:
            earliest_later = at
    kept.reverse()
    return kept


def plan(created_at: datetime, deadline: datetime, policy: EscalationPolicy) -> list[PlannedStep]:
    """The ladder of a task at its nominal times, skipped steps left out.

    Parameters
    ----------
    created_at
        T, aware.
    deadline
        D, aware (from :meth:`EscalationPolicy.deadline_for`).
    policy
        Timing.

    Returns
    -------
    list of PlannedStep
        In ladder order (times non-decreasing). A reminder whose time is at or after a later
        step's time is skipped (contract Appendix B; rule: "A step whose time falls after a
        later step is skipped"); breach and critical are always present.

    Raises
    ------
    ValueError
        When a datetime is naive.

    Examples
    --------
    A critical task (1 h SLA) with the default policy: DM +30 min, warning +45 min, breach
    +1 h, critical +3 h; the +2 h mention comes after the breach and is skipped.
    """
    created = as_aware_utc(created_at, "created_at")
    due = as_aware_utc(deadline, "deadline")
    times = _nominal_times(created, due, policy)
    return [PlannedStep(kind, times[kind]) for kind in _drop_superseded(times)]


def schedule(
    created_at: datetime,
    deadline: datetime,
    priority: Priority,
    policy: EscalationPolicy,
    state: LadderState,
) -> list[StepDue]:
    """The steps still to take, with their effective delivery times.

    Independent of "now": the result only changes when ``state`` changes (a step taken, an
    acknowledge, a snooze, a decision), so it can be recomputed on every wake-up and after a
    restart with the same answer. See the module docstring for each rule.

    Parameters
    ----------
    created_at, deadline
        T and D, aware.
    priority
        Task priority; critical tasks are never held for quiet hours.
    policy
        Timing and quiet hours.
    state
        Decision, acknowledge, snooze and steps taken.

    Returns
    -------
    list of StepDue
        Sorted by ``deliver_at``, ties in ladder order (which is also plain ladder order).
        Empty when decided or everything was taken.

    Raises
    ------
    ValueError
        When a datetime is naive.
    """
    return list(_schedule(created_at, deadline, priority, policy, state))


@lru_cache(maxsize=16_384)
def _schedule(
    created_at: datetime,
    deadline: datetime,
    priority: Priority,
    policy: EscalationPolicy,
    state: LadderState,
) -> tuple[StepDue, ...]:
    """:func:`schedule`, memoized: its arguments are frozen values and it reads no clock, so
    a wake-up that re-plans the state the previous wake-up planned costs a dictionary lookup
    (every wake-up plans twice: the steps due, then the next one after taking them)."""
    if state.decided:
        return ()
    shape = _no_quiet_shape(created_at, deadline, priority, policy, state)
    if shape is not None:
        created, relative = shape
        return tuple(
            StepDue(kind, created + nominal, created + deliver, False, snoozed)
            for kind, nominal, deliver, snoozed in relative
        )
    critical = Priority(priority) is Priority.CRITICAL
    hold = policy.quiet_hours if not critical else None
    if hold is not None and not hold.active:
        hold = None
    hold_pages = hold if Priority(priority) not in policy.quiet_bypass_priorities else None
    return _compute_schedule(
        as_aware_utc(created_at, "created_at"),
        as_aware_utc(deadline, "deadline"),
        policy,
        hold,
        hold_pages,
        state.acknowledged,
        state.snoozed_until,
        state.taken,
    )


def _no_quiet_shape(
    created_at: datetime,
    deadline: datetime,
    priority: Priority,
    policy: EscalationPolicy,
    state: LadderState,
) -> tuple[datetime, tuple[tuple[StepKind, timedelta, timedelta, bool], ...]] | None:
    """``(T in UTC, the task's shape from _relative_schedule)`` when no quiet hours can hold
    any of its steps, else ``None`` (quiet windows depend on the instant, not on offsets).

    Without quiet hours every rule compares times of one task with each other, so the
    schedule is the same shape for every task with the same SLA window, snooze offset and
    steps taken, shifted to its creation time: computed once per shape, not once per task
    (arming 100,000 open tasks at a restart, bench/arm.py).
    """
    quiet = policy.quiet_hours
    if quiet is not None and quiet.active and Priority(priority) is not Priority.CRITICAL:
        return None  # its reminders at least may be held (critical tasks are never held)
    created = as_aware_utc(created_at, "created_at")
    snoozed_until = state.snoozed_until
    relative = _relative_schedule(
        as_aware_utc(deadline, "deadline") - created,
        None if snoozed_until is None else snoozed_until - created,
        priority,
        policy,
        state.acknowledged,
        state.taken,
    )
    return created, relative


#: Any fixed instant: the origin :func:`_relative_schedule` plans a shape at.
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=4_096)
def _relative_schedule(
    window: timedelta,
    snooze_offset: timedelta | None,
    priority: Priority,
    policy: EscalationPolicy,
    acknowledged: bool,
    taken: frozenset[StepKind],
) -> tuple[tuple[StepKind, timedelta, timedelta, bool], ...]:
    """The schedule of a task created at an arbitrary instant, with no quiet hours to apply,
    as offsets from its creation: ``(kind, nominal offset, delivery offset, snoozed)``.

    ``window`` is D − T and ``snooze_offset`` the snooze's end − T (both may be negative).
    """
    steps = _compute_schedule(
        _ORIGIN,
        _ORIGIN + window,
        policy,
        None,
        None,
        acknowledged,
        None if snooze_offset is None else _ORIGIN + snooze_offset,
        taken,
    )
    return tuple(
        (s.kind, s.nominal_at - _ORIGIN, s.deliver_at - _ORIGIN, s.delayed_by_snooze) for s in steps
    )


def _compute_schedule(
    created: datetime,
    due: datetime,
    policy: EscalationPolicy,
    hold: QuietHours | None,
    hold_pages: QuietHours | None,
    acknowledged: bool,
    snoozed_until: datetime | None,
    taken: frozenset[StepKind],
) -> tuple[StepDue, ...]:
    """The body of :func:`_schedule` for aware UTC ``created``/``due``: ``hold`` holds every
    step for quiet hours, ``hold_pages`` the pages (``None``: not held)."""
    times = _nominal_times(created, due, policy)
    effective: dict[StepKind, StepDue] = {}
    for kind in _drop_superseded(times):
        at = times[kind]
        reminder = kind in REMINDER_STEPS
        if acknowledged and (reminder or kind in _REPEAT_NUMBER):
            continue
        deliver = at
        snoozed = False
        if reminder and snoozed_until is not None and deliver < snoozed_until:
            deliver = snoozed_until
            snoozed = True
        quiet = hold_pages if kind in PAGE_STEPS else hold
        window = quiet_window_at(quiet, deliver) if quiet is not None else None
        if window is not None:
            deliver = window[1]
        effective[kind] = StepDue(kind, at, deliver, window is not None, snoozed)

    kept = _drop_superseded({k: s.deliver_at for k, s in effective.items()})
    # a repeat held to the time of a later repeat (or after it) is superseded by it
    later_repeat: datetime | None = None
    for k in reversed(kept[:]):
        if k in _REPEAT_NUMBER:
            at = effective[k].deliver_at
            if later_repeat is not None and later_repeat <= at:
                kept.remove(k)
            if later_repeat is None or at < later_repeat:
                later_repeat = at
    highest_taken = max((_RANK[k] for k in taken), default=-1)
    remaining = [effective[k] for k in kept if k not in taken and _RANK[k] > highest_taken]
    return tuple(sorted(remaining, key=_delivery_order))


#: Rank of each step, and ``n`` of each repeat (property calls cost more than a lookup).
_RANK: dict[StepKind, int] = {k: k.rank for k in ALL_STEPS}
_REPEAT_NUMBER: dict[StepKind, int] = {k: n for k in ALL_STEPS if (n := k.repeat_number)}


def _delivery_order(step: StepDue) -> tuple[datetime, int]:
    return step.deliver_at, _RANK[step.kind]


def next_step(
    created_at: datetime,
    deadline: datetime,
    priority: Priority,
    policy: EscalationPolicy,
    state: LadderState,
) -> StepDue | None:
    """The next step to take (the first of :func:`schedule`), or ``None`` when none remain.

    This is what the task message shows as "next: <step> at <deliver_at>", and when the
    adapter's next wake-up for the task is.

    Raises
    ------
    ValueError
        When a datetime is naive.
    """
    if state.decided:
        return None
    shape = _no_quiet_shape(created_at, deadline, priority, policy, state)
    if shape is None:
        steps = _schedule(created_at, deadline, priority, policy, state)
        return steps[0] if steps else None
    created, relative = shape
    if not relative:
        return None
    kind, nominal, deliver, snoozed = relative[0]  # only the first is built
    return StepDue(kind, created + nominal, created + deliver, False, snoozed)


def due_now(
    created_at: datetime,
    deadline: datetime,
    priority: Priority,
    policy: EscalationPolicy,
    state: LadderState,
    now: datetime,
) -> list[StepDue]:
    """The steps a wake-up at ``now`` must take: every remaining step with ``deliver_at <= now``.

    After downtime several steps can be due at once; they are returned in ladder order and
    the adapter takes each once (the store's unique ``(task, step)`` key guarantees "once"),
    marking it late with :meth:`StepDue.late_by_seconds`. A step taken is in ``state.taken``
    and never returned again.

    Parameters
    ----------
    created_at, deadline, priority, policy, state
        As for :func:`schedule`.
    now
        The injected current instant, aware.

    Raises
    ------
    ValueError
        When a datetime is naive.
    """
    instant = as_aware_utc(now, "now")
    steps = _schedule(created_at, deadline, priority, policy, state)
    due = [s for s in steps if s.deliver_at <= instant]
    if len(due) > 1:  # several due at once (downtime): in ladder order
        due.sort(key=lambda s: s.kind.rank)
    return due
