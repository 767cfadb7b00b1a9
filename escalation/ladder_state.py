"""The values the ladder works with: a task's state as the store records it
(:class:`LadderState`), a step at its nominal time (:class:`PlannedStep`) and a remaining step
with its delivery time (:class:`StepDue`). The rules that produce them are in
:mod:`escalation.ladder`, which re-exports these names."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from escalation.policy import StepKind, as_aware_utc

__all__ = ["LATE_GRACE_SECONDS", "LadderState", "PlannedStep", "StepDue"]

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

    Raises
    ------
    ValueError
        A naive datetime or an unknown step name.
    """

    decided: bool = False
    acknowledged_at: datetime | None = None
    snoozed_until: datetime | None = None
    taken: frozenset[StepKind] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.acknowledged_at is not None:
            object.__setattr__(
                self, "acknowledged_at", as_aware_utc(self.acknowledged_at, "acknowledged_at")
            )
        if self.snoozed_until is not None:
            object.__setattr__(
                self, "snoozed_until", as_aware_utc(self.snoozed_until, "snoozed_until")
            )
        taken = self.taken
        if not (taken.__class__ is frozenset and all(k.__class__ is StepKind for k in taken)):
            object.__setattr__(self, "taken", frozenset(StepKind(k) for k in self.taken))

    @property
    def acknowledged(self) -> bool:
        """True once someone acknowledged the task."""
        return self.acknowledged_at is not None

    def with_taken(self, *kinds: StepKind) -> LadderState:
        """A copy with ``kinds`` added to :attr:`taken` (handy for adapters and tests)."""
        return LadderState(
            decided=self.decided,
            acknowledged_at=self.acknowledged_at,
            snoozed_until=self.snoozed_until,
            taken=self.taken | frozenset(kinds),
        )


@dataclass(frozen=True)
class StepDue:
    """A remaining step with its effective delivery time.

    Attributes
    ----------
    kind
        The step.
    nominal_at
        Nominal time from :func:`plan`, aware UTC.
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
