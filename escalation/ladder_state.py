"""The values the ladder works with: a task's state as the store records it
(:class:`LadderState`), a step at its nominal time (:class:`PlannedStep`) and a remaining step
with its delivery time (:class:`StepDue`). The rules that produce them are in
:mod:`escalation.ladder`, which re-exports these names; the arithmetic it does on times (the
policy's offsets, additions that never overflow, the series of repeat pages) is here too, so
that module stays readable."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from escalation.policy import (
    LAST_INSTANT,
    REPEAT_STEPS,
    EscalationPolicy,
    QuietHours,
    StepKind,
    as_aware_utc,
)
from escalation.quiet_hours import quiet_window_at

__all__ = [
    "LATE_GRACE_SECONDS",
    "LadderState",
    "PlannedStep",
    "StepDue",
    "later_by",
    "repeat_series",
    "repeats_of",
    "step_offsets",
]

#: A step taken more than this many seconds after its delivery time counts as late (a timer
#: wake-up is a little late by nature; a restart after downtime is much later).
LATE_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class PlannedStep:
    """A ladder step at its nominal time.

    Attributes
    ----------
    kind
        The step.
    due_at
        Nominal time, aware UTC (before acknowledge, snooze and quiet hours).
    """

    kind: StepKind
    due_at: datetime


@dataclass(frozen=True)
class LadderState:
    """What has happened to a task, as the store records it.

    Attributes
    ----------
    decided
        A decision was made: the ladder stops entirely.
    acknowledged_at
        When someone acknowledged (aware), or ``None``; any value cancels the reminder steps.
    snoozed_until
        End of a snooze (aware), or ``None``; reminder steps wait until then.
    taken
        Steps already taken (unique ``(task, step)`` rows). Strings are accepted and parsed
        as :class:`~escalation.policy.StepKind`.
    paged_at
        When the highest step taken, if it is the critical step or a repeat (a call), actually
        went out: its row's ``taken_at`` (aware), or ``None``. The repeats after it are
        counted from this instant (README "Phone", "Repeat until someone answers"), so a
        page that went out late (downtime, an overdue task) is not followed at once by the
        repeats that fell due meanwhile. Ignored when the highest step taken is not a call;
        ``None``: counted from its planned delivery time.

    Raises
    ------
    ValueError
        A naive datetime or an unknown step name.
    """

    decided: bool = False
    acknowledged_at: datetime | None = None
    snoozed_until: datetime | None = None
    taken: frozenset[StepKind] = field(default_factory=frozenset)
    paged_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.acknowledged_at is not None:
            object.__setattr__(
                self, "acknowledged_at", as_aware_utc(self.acknowledged_at, "acknowledged_at")
            )
        if self.snoozed_until is not None:
            object.__setattr__(
                self, "snoozed_until", as_aware_utc(self.snoozed_until, "snoozed_until")
            )
        if self.paged_at is not None:
            object.__setattr__(self, "paged_at", as_aware_utc(self.paged_at, "paged_at"))
        taken = self.taken
        if not (taken.__class__ is frozenset and all(k.__class__ is StepKind for k in taken)):
            object.__setattr__(self, "taken", frozenset(StepKind(k) for k in self.taken))

    @property
    def acknowledged(self) -> bool:
        """True once someone acknowledged the task."""
        return self.acknowledged_at is not None

    def with_taken(self, *kinds: StepKind, at: datetime | None = None) -> LadderState:
        """A copy with ``kinds`` added to :attr:`taken` (handy for adapters and tests).

        ``at``: when they were taken, the new :attr:`paged_at` (``None``: not known).
        """
        return LadderState(
            decided=self.decided,
            acknowledged_at=self.acknowledged_at,
            snoozed_until=self.snoozed_until,
            taken=self.taken | frozenset(kinds),
            paged_at=at,
        )


@dataclass(frozen=True)
class StepDue:
    """A remaining step with its effective delivery time.

    Attributes
    ----------
    kind
        The step.
    nominal_at
        Nominal time from :func:`plan`, aware UTC; for a repeat, the time counted from the
        page before it as it goes out (before quiet hours).
    deliver_at
        When to take it, aware UTC: nominal, moved by a snooze and/or held to the end of
        quiet hours. Record this as the step's ``due_at``.
    held_for_quiet_hours
        Moved to the end of quiet hours: deliver it in the person's digest.
    delayed_by_snooze
        Moved to the end of a snooze.
    """

    kind: StepKind
    nominal_at: datetime
    deliver_at: datetime
    held_for_quiet_hours: bool = False
    delayed_by_snooze: bool = False

    def late_by_seconds(self, now: datetime) -> float:
        """Seconds between :attr:`deliver_at` and ``now`` (0 when not yet due).

        Raises
        ------
        ValueError
            When ``now`` is naive.
        """
        delta = as_aware_utc(now, "now") - self.deliver_at
        return max(0.0, delta.total_seconds())

    def is_late(self, now: datetime, grace_seconds: float = LATE_GRACE_SECONDS) -> bool:
        """True when taken at ``now`` it is more than ``grace_seconds`` late (mark it late)."""
        return self.late_by_seconds(now) > grace_seconds


def later_by(at: datetime, delta: timedelta, strict: bool) -> datetime | None:
    """``at + delta``, or ``None`` when that is past the last instant a ``datetime`` holds.

    A step at such a time is never due (:mod:`escalation.ladder`, "Far future").

    Raises
    ------
    OverflowError
        Instead of returning ``None`` when ``strict``.
    """
    try:
        return at + delta
    except OverflowError:
        if strict:
            raise
        return None


#: Longer than any span between two instants a ``datetime`` holds: a longer offset is cut to
#: it (the step is past the last instant either way; a timedelta cannot hold ~1e14 s).
_FOREVER = timedelta(days=3_700_000)


def _span(seconds: float) -> timedelta:
    """``seconds`` as a timedelta, cut to :data:`_FOREVER`."""
    return timedelta(seconds=seconds) if seconds < _FOREVER.total_seconds() else _FOREVER


@lru_cache(maxsize=64)
def step_offsets(
    policy: EscalationPolicy,
) -> tuple[timedelta, timedelta, float, timedelta, timedelta]:
    """The policy's offsets, built once per policy rather than once per task.

    Returns
    -------
    tuple
        DM after T, mention after T, warning fraction of D − T, critical after D, repeat
        interval (contract Appendix B; README "Phone"); a duration too long for a timedelta
        is cut to :data:`_FOREVER`.
    """
    return (
        _span(policy.dm_after_seconds),
        _span(policy.mention_after_seconds),
        policy.warning_threshold_percent / 100.0,
        _span(policy.critical_after_breach_seconds),
        _span(policy.repeat_seconds),
    )


def repeat_series(
    anchor: datetime,
    after: int,
    policy: EscalationPolicy,
    hold: QuietHours | None,
    strict: bool,
) -> list[StepDue]:
    """The repeat pages after page number ``after`` (0: the critical step), sent at ``anchor``.

    Each repeat comes ``repeat_seconds`` after the page before it, as that page goes out
    (README "Phone", "Repeat until someone answers": "repeats every
    ``ESCALATION_REPEAT_SECONDS``"). The repeats that fall in one quiet window of ``hold``
    page once when it ends, as the last of them, and the next counts from there (one page in
    the morning, not three, and never the critical page and a repeat at once). A repeat past the last instant, or held to a window ending there, is left out.

    Parameters
    ----------
    anchor
        When page ``after`` goes (or went) out, aware UTC.
    after
        Its number: 0 for the critical step, n for ``repeat_n``.
    policy
        ``repeat_seconds`` and ``repeat_limit``.
    hold
        The quiet hours that hold the pages, or ``None``.
    strict
        Raise ``OverflowError`` rather than leave a step out (see :func:`later_by`).

    Returns
    -------
    list of StepDue
        Repeats ``after + 1`` … ``repeat_limit`` that remain, in order; ``nominal_at`` is the
        time counted from the page before, ``deliver_at`` the time after quiet hours.
    """
    every = step_offsets(policy)[4]
    series: list[StepDue] = []
    n, base = after + 1, anchor
    while n <= policy.repeat_limit:
        slot = later_by(base, every, strict)
        if slot is None:
            break
        window = quiet_window_at(hold, slot) if hold is not None else None
        if window is None:
            series.append(StepDue(REPEAT_STEPS[n - 1], slot, slot))
            n, base = n + 1, slot
            continue
        while n < policy.repeat_limit:  # the later repeats held to the same end: superseded
            following = later_by(slot, every, strict)
            if following is None or following >= window[1]:
                break
            n, slot = n + 1, following
        if window[1] >= LAST_INSTANT:  # held past the last instant: never due
            break
        series.append(StepDue(REPEAT_STEPS[n - 1], slot, window[1], True, False))
        n, base = n + 1, window[1]
    return series


def repeats_of(
    critical: StepDue | None,
    policy: EscalationPolicy,
    hold: QuietHours | None,
    taken: frozenset[StepKind],
    paged_at: datetime | None,
    strict: bool,
) -> list[StepDue]:
    """The repeats of a task: :func:`repeat_series` from the right page.

    Before any call is taken, from the critical step's delivery time. Once the critical
    step or a repeat is the highest step in ``taken``, from ``paged_at``, when it actually
    went out (:attr:`LadderState.paged_at`: late after downtime, or for a task that arrived
    overdue), but
    never from before its planned delivery time (a row taken "early" means the policy
    changed, or a test's stand-in); without ``paged_at``, from the planned times.

    Parameters
    ----------
    critical
        The critical step as scheduled (after quiet hours), ``None`` when it has none.
    policy, hold, strict
        As for :func:`repeat_series`.
    taken
        Steps taken.
    paged_at
        When the highest step taken went out, or ``None``.

    Returns
    -------
    list of StepDue
        The repeats after the highest call taken (the caller drops those at or below it).
    """
    if critical is None or not policy.repeat_limit:
        return []
    series = repeat_series(critical.deliver_at, 0, policy, hold, strict)
    last = max(taken, key=_rank, default=None)
    if paged_at is None or last is None or last.rank < StepKind.CRITICAL.rank:
        return series
    planned = {s.kind: s.deliver_at for s in series}
    planned[StepKind.CRITICAL] = critical.deliver_at
    went = planned.get(last)
    anchor = paged_at if went is None else max(paged_at, went)
    return repeat_series(anchor, last.repeat_number or 0, policy, hold, strict)


def _rank(kind: StepKind) -> int:
    return kind.rank
