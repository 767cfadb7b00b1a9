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
    After the critical step, ``repeat_n`` for n up to ``repeat_limit``, each
    ``repeat_seconds`` after the page before it (README "Phone", "Repeat until someone
    answers"), counted from when that page goes out: the critical step's delivery time (held
    to 08:00: the repeats follow from 08:00), or, once taken, when it actually went out
    (:attr:`LadderState.paged_at`; late after downtime or for an overdue task: the repeats
    follow from then). The repeats that fall in one quiet window page once when it ends, the
    last of them (one page in the morning, not three), and the next counts from there. An
    acknowledgement cancels them, as it cancels reminders; a snooze does not move them.
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
    at once, in ladder order; the adapter takes each once and marks it late. Except the pages
    that would ring one phone again and again within a second (an overdue high task
    would get four calls): while the critical step is due, no repeat is (they follow the critical
    page, counted from when it goes out); of several repeats due, only the last is (it
    supersedes the others, as a held one does). Breach and critical both stay (Appendix B:
    an overdue task is past both, and the critical step's reassign and safe default apply).
Far future
    A step whose time lies past the last instant a ``datetime`` holds (year 9999: a
    ``slaDeadline`` of ``9999-12-31T23:59:59Z`` meaning "none", plus the 2 h to the critical
    step) or held to a quiet window ending there is left out: never due, rather than shown
    at a made-up time (only an input instant past year 9999 once in UTC, or T + an SLA past
    it, is read as :data:`~escalation.policy.LAST_INSTANT`). Nothing raises for any aware
    input.
Decision
    A decided task has no steps (rule: "Only a decision stops the ladder").

Invariant: the delivery times of :func:`schedule` are non-decreasing in ladder order, so
"sorted by delivery time" and "ladder order" agree (ties keep ladder order).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from escalation.ladder_state import (
    LATE_GRACE_SECONDS,
    LadderState,
    PlannedStep,
    StepDue,
    later_by,
    repeat_series,
    repeats_of,
    step_offsets,
)
from escalation.models import Priority
from escalation.policy import (
    LADDER_ORDER,
    LAST_INSTANT,
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
    created_at: datetime, deadline: datetime, policy: EscalationPolicy, strict: bool = False
) -> dict[StepKind, datetime]:
    """The Appendix B steps at their nominal times, those past the last instant left out."""
    dm, mention, warning, critical_after, _ = step_offsets(policy)
    window = max(deadline - created_at, timedelta(0))
    times = {
        StepKind.REMINDER_DM: later_by(created_at, dm, strict),
        StepKind.REMINDER_MENTION: later_by(created_at, mention, strict),
        StepKind.SLA_WARNING: deadline - window * warning,  # between T and D
        StepKind.SLA_BREACH: deadline,
        StepKind.CRITICAL: later_by(deadline, critical_after, strict),
    }
    return {kind: at for kind, at in times.items() if at is not None}


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
        later step is skipped"); breach and critical are always present, unless past the
        last instant a ``datetime`` holds (module docstring, "Far future").

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
    times: dict[StepKind, datetime] = _nominal_times(created, due, policy)
    critical = times.get(StepKind.CRITICAL)
    if critical is not None:
        for step in repeat_series(critical, 0, policy, None, False):
            times[step.kind] = step.nominal_at
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


@lru_cache(maxsize=4_096)  # the tasks woken recently (see escalation.progress.MAX_PLANS)
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
        try:
            return tuple(
                StepDue(kind, created + nominal, created + deliver, False, snoozed)
                for kind, nominal, deliver, snoozed in relative
            )
        except OverflowError:
            pass  # a step past the last instant: planned below, where it is left out
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
        state.paged_at,
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
    paged_at = state.paged_at
    try:
        relative = _relative_schedule(
            as_aware_utc(deadline, "deadline") - created,
            None if snoozed_until is None else snoozed_until - created,
            priority,
            policy,
            state.acknowledged,
            state.taken,
            None if paged_at is None else paged_at - created,
        )
    except OverflowError:  # a time past what the shape's origin can hold: planned directly
        return None
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
    paged_offset: timedelta | None = None,
) -> tuple[tuple[StepKind, timedelta, timedelta, bool], ...]:
    """The schedule of a task created at an arbitrary instant, with no quiet hours to apply,
    as offsets from its creation: ``(kind, nominal offset, delivery offset, snoozed)``.

    ``window`` is D − T, ``snooze_offset`` the snooze's end − T and ``paged_offset``
    :attr:`LadderState.paged_at` − T (all may be negative).

    Raises
    ------
    OverflowError
        When a time lies outside what a ``datetime`` holds at this origin: the caller plans
        the task directly instead (where a step past the last instant is left out).
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
        None if paged_offset is None else _ORIGIN + paged_offset,
        strict=True,
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
    paged_at: datetime | None = None,
    *,
    strict: bool = False,
) -> tuple[StepDue, ...]:
    """The body of :func:`_schedule` for aware UTC ``created``/``due``: ``hold`` holds every
    step for quiet hours, ``hold_pages`` the pages (``None``: not held). A step past the last
    instant is left out (``strict``: ``OverflowError``, for :func:`_relative_schedule`)."""
    times = _nominal_times(created, due, policy, strict)
    effective: dict[StepKind, StepDue] = {}
    for kind in _drop_superseded(times):
        at = times[kind]
        reminder = kind in REMINDER_STEPS
        if acknowledged and reminder:
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
            if deliver >= LAST_INSTANT:  # held past the last instant: never due
                continue
        effective[kind] = StepDue(kind, at, deliver, window is not None, snoozed)
    if not acknowledged:  # the repeats: README "Phone"; held ones merged (_repeat_series)
        critical = effective.get(StepKind.CRITICAL)
        for step in repeats_of(critical, policy, hold_pages, taken, paged_at, strict):
            effective[step.kind] = step

    kept = _drop_superseded({k: s.deliver_at for k, s in effective.items()})
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
    try:
        return StepDue(kind, created + nominal, created + deliver, False, snoozed)
    except OverflowError:  # past the last instant: left out of the schedule planned directly
        steps = _schedule(created_at, deadline, priority, policy, state)
        return steps[0] if steps else None


def due_now(
    created_at: datetime,
    deadline: datetime,
    priority: Priority,
    policy: EscalationPolicy,
    state: LadderState,
    now: datetime,
) -> list[StepDue]:
    """The steps a wake-up at ``now`` must take: the remaining steps with ``deliver_at <= now``,
    the pages among them merged (module docstring, "Downtime").

    After downtime several steps can be due at once; they are returned in ladder order and
    the adapter takes each once (the store's unique ``(task, step)`` key guarantees "once"),
    marking it late with :meth:`StepDue.late_by_seconds`. A step taken is in ``state.taken``
    and never returned again. No repeat is returned while the critical step is (the repeats
    are counted from when it goes out: :attr:`LadderState.paged_at`), and of several repeats
    only the last: once it is taken the earlier ones are behind the ladder, never taken
    (rule: one page, not one per repeat missed).

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
    if len(due) > 1:  # several due at once (downtime): in ladder order, the pages merged
        due.sort(key=lambda s: s.kind.rank)
        others = [s for s in due if s.kind not in _REPEAT_NUMBER]
        if len(others) < len(due):
            critical_due = any(s.kind is StepKind.CRITICAL for s in others)
            due = others if critical_due else [*others, due[-1]]
    return due
