"""Escalation policy: the steps of the ladder and the numbers that time them.

This module is part of the pure core. It holds plain, frozen values only — no clock reads,
no I/O, no Discord, Twilio, HTTP, database or scheduler imports. The adapters build an
:class:`EscalationPolicy` from the settings (``bot.settings.Settings.escalation_policy``) and
hand it to the pure functions of :mod:`escalation.ladder`, :mod:`escalation.quiet_hours` and
:mod:`escalation.bundling`.

Sources of the rules
--------------------
* Contract Appendix B "SLA Escalation Timeline": T+30 min reminder DM, T+2 h @mention,
  T+SLA−25 % SLA warning (@here), T+SLA breach (all channels + SMS), T+SLA+2 h critical
  (phone call, auto-escalate to an admin).
* Contract §5.3 ``factory.sla``: ``critical_seconds`` 3600, ``high_seconds`` 14400,
  ``medium_seconds`` 86400, ``low_seconds`` 259200, ``warning_threshold_percent`` 25
  ("warn at 25 % time remaining"); ``notifications.quiet_hours_start`` "22:00",
  ``quiet_hours_end`` "08:00" ("no non-critical notifications").
* Issue (escalation ladder): the settings names, the safe default sent to the factory at the
  critical step (``none``, ``deferred`` or ``rejected`` — never ``approved``), quiet hours
  time zone (IANA name, default UTC) and the bundle window (120 s).

All durations are seconds (``float``, finite, ≥ 0); all instants are aware datetimes, and the
functions of the core return them in UTC.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from escalation.models import FIRST_INSTANT, LAST_INSTANT, Priority, TaskDecision

__all__ = [
    "DEFAULT_QUIET_HOURS",
    "DEFAULT_SLA_SECONDS",
    "FIRST_INSTANT",
    "HARD_STEPS",
    "LADDER_ORDER",
    "LAST_INSTANT",
    "MAX_REPEATS",
    "REMINDER_STEPS",
    "REPEAT_STEPS",
    "EscalationPolicy",
    "QuietHours",
    "SafeDefault",
    "StepKind",
    "as_aware_utc",
]


def as_aware_utc(value: datetime, name: str = "datetime") -> datetime:
    """Return ``value`` converted to UTC, refusing naive datetimes.

    Parameters
    ----------
    value
        An aware datetime (any time zone).
    name
        What the value is, for the error message (e.g. ``"created_at"``).

    Returns
    -------
    datetime
        The same instant with ``tzinfo=UTC``; an instant a UTC ``datetime`` cannot hold (within
        a UTC offset of year 1 or year 9999's ends) is :data:`FIRST_INSTANT` or
        :data:`LAST_INSTANT`, never an ``OverflowError``.

    Raises
    ------
    ValueError
        When ``value`` is naive: the core never guesses a time zone.
    TypeError
        When ``value`` is not a datetime.
    """
    if value.__class__ is datetime and value.tzinfo is UTC:  # the common case, checked first
        return value
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    offset = value.utcoffset() if value.tzinfo is not None else None
    if offset is None:
        raise ValueError(f"{name} must be an aware datetime (UTC), got naive {value.isoformat()}")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # past year 9999 or before year 1 once in UTC
        return LAST_INSTANT if offset < timedelta(0) else FIRST_INSTANT


class StepKind(StrEnum):
    """One step of the escalation ladder, in ladder order (contract Appendix B).

    The task post itself (T+0) is not a ladder step: it is built elsewhere.
    """

    REMINDER_DM = "reminder_dm"
    """T + ``dm_after_seconds``: a DM to the assignee (no assignee: the on-call operators)."""
    REMINDER_MENTION = "reminder_mention"
    """T + ``mention_after_seconds``: a reply @mentioning the assignee / on-call."""
    SLA_WARNING = "sla_warning"
    """D − ``warning_threshold_percent`` % of (D − T): a reply with @here."""
    SLA_BREACH = "sla_breach"
    """D: SMS to the on-call operators with a phone (and the assignee); @here in alerts."""
    CRITICAL = "critical"
    """D + ``critical_after_breach_seconds``: phone call, reassign, safe default, incident."""
    REPEAT_1 = "repeat_1"
    """Critical + n × ``repeat_seconds`` (n ≤ ``repeat_limit``): the breach page again, SMS
    and a call to the on-call rotation, until a decision or an acknowledgement (README "Phone",
    "Repeat until someone answers"). One member per repeat so each is its own stored step."""
    REPEAT_2 = "repeat_2"
    REPEAT_3 = "repeat_3"
    REPEAT_4 = "repeat_4"
    REPEAT_5 = "repeat_5"
    REPEAT_6 = "repeat_6"
    REPEAT_7 = "repeat_7"
    REPEAT_8 = "repeat_8"
    REPEAT_9 = "repeat_9"
    REPEAT_10 = "repeat_10"

    @property
    def rank(self) -> int:
        """Position in the ladder, 0 for :attr:`REMINDER_DM` up to 4 for :attr:`CRITICAL`,
        then 5… for the repeats."""
        return _RANKS[self]

    @property
    def is_reminder(self) -> bool:
        """True for the steps acknowledge cancels, snooze delays (see :data:`REMINDER_STEPS`)."""
        return self in REMINDER_STEPS

    @property
    def repeat_number(self) -> int | None:
        """``n`` of a ``repeat_n`` step (1 … :data:`MAX_REPEATS`), ``None`` for the others."""
        return _REPEATS.get(self)


#: The ladder of contract Appendix B, earliest step first (the repeats of README "Phone" follow
#: it: :data:`REPEAT_STEPS`; ``tuple(StepKind)`` is both, in order).
LADDER_ORDER: tuple[StepKind, ...] = tuple(k for k in StepKind if not k.value.startswith("repeat_"))
_RANKS: dict[StepKind, int] = {kind: index for index, kind in enumerate(StepKind)}

#: Steps that an acknowledge cancels and a snooze delays (rule: "Acknowledge stops the
#: reminder steps (DM, mention, warning)"; "Snooze delays reminder steps").
REMINDER_STEPS: frozenset[StepKind] = frozenset(
    {StepKind.REMINDER_DM, StepKind.REMINDER_MENTION, StepKind.SLA_WARNING}
)

#: Steps only a decision stops: acknowledge and snooze never move or cancel them.
HARD_STEPS: frozenset[StepKind] = frozenset({StepKind.SLA_BREACH, StepKind.CRITICAL})

#: The repeat steps, in order (README "Phone"); ``ESCALATION_REPEAT_LIMIT`` takes the first ones.
REPEAT_STEPS: tuple[StepKind, ...] = tuple(k for k in StepKind if k.value.startswith("repeat_"))
_REPEATS: dict[StepKind, int] = {kind: n for n, kind in enumerate(REPEAT_STEPS, start=1)}

#: The most repeats a policy may ask for (``ESCALATION_REPEAT_LIMIT``).
MAX_REPEATS = len(REPEAT_STEPS)


class SafeDefault(StrEnum):
    """Decision the bridge sends to the factory at the critical step (``ESCALATION_SAFE_DEFAULT``).

    ``none`` (the default) sends nothing; ``deferred`` or ``rejected`` send that decision.
    ``approved`` is refused: an unanswered request must never ship by itself (rule: "never
    ``approved``"). Construction is case-insensitive and ignores surrounding blanks; an empty
    string means ``none``.

    Raises
    ------
    ValueError
        From ``SafeDefault("approved")`` (with the reason) or any other unknown value.
    """

    NONE = "none"
    DEFERRED = "deferred"
    REJECTED = "rejected"

    @classmethod
    def _missing_(cls, value: object) -> SafeDefault | None:
        if not isinstance(value, str):
            return None
        text = value.strip().lower()
        if text == TaskDecision.APPROVED.value:
            raise ValueError(
                "ESCALATION_SAFE_DEFAULT may not be 'approved': an unanswered decision must "
                "never approve itself; use 'none', 'deferred' or 'rejected'"
            )
        if text == "":
            return cls.NONE
        for member in cls:
            if member.value == text:
                return member
        return None

    @property
    def decision(self) -> TaskDecision | None:
        """The contract decision to send, or ``None`` for :attr:`NONE` (send nothing)."""
        if self is SafeDefault.NONE:
            return None
        return TaskDecision(self.value)


def _parse_time(value: time | str, name: str) -> time:
    if isinstance(value, str):
        try:
            value = time.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{name} must be a wall time like '22:00', got {value!r}") from None
    if not isinstance(value, time):
        raise TypeError(f"{name} must be a datetime.time, got {type(value).__name__}")
    if value.tzinfo is not None:
        raise ValueError(f"{name} must be a naive wall time; the zone is QuietHours.timezone")
    return value


@dataclass(frozen=True)
class QuietHours:
    """A daily quiet window in local wall time (``QUIET_HOURS_*`` settings; contract §5.3).

    The window is half-open, ``[start, end)``, and crosses midnight when ``end < start``
    (22:00–08:00). ``start == end`` means no window at all. How wall times map to instants
    around DST changes is described in :mod:`escalation.quiet_hours`.

    Parameters
    ----------
    start, end
        Naive wall times; ``"HH:MM"`` strings are accepted and parsed.
    timezone
        IANA zone name (``"Europe/Berlin"``); the zoneinfo database decides DST.
    enabled
        ``False`` switches quiet hours off (``QUIET_HOURS_ENABLED``).

    Raises
    ------
    ValueError
        When ``timezone`` is not a known IANA zone (the message names it), or a time is not a
        wall time.
    """

    start: time
    end: time
    timezone: str = "UTC"
    enabled: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _parse_time(self.start, "QuietHours.start"))
        object.__setattr__(self, "end", _parse_time(self.end, "QuietHours.end"))
        if not isinstance(self.timezone, str):
            raise TypeError("QuietHours.timezone must be an IANA zone name (str)")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(
                f"unknown IANA time zone {self.timezone!r} for quiet hours "
                "(QUIET_HOURS_TIMEZONE), e.g. 'UTC' or 'Europe/Berlin'"
            ) from None

    @property
    def zone(self) -> ZoneInfo:
        """The :class:`zoneinfo.ZoneInfo` of :attr:`timezone` (cached by zoneinfo)."""
        return ZoneInfo(self.timezone)

    @property
    def active(self) -> bool:
        """True when the window can hold anything: enabled and ``start != end``."""
        return self.enabled and self.start != self.end


#: 22:00–08:00 UTC, enabled (contract §5.3 ``quiet_hours_start`` / ``quiet_hours_end``).
DEFAULT_QUIET_HOURS = QuietHours(start=time(22, 0), end=time(8, 0), timezone="UTC", enabled=True)

#: SLA per priority in seconds (contract §5.3 ``factory.sla``).
DEFAULT_SLA_SECONDS: Mapping[Priority, float] = MappingProxyType(
    {
        Priority.CRITICAL: 3600.0,
        Priority.HIGH: 14400.0,
        Priority.MEDIUM: 86400.0,
        Priority.LOW: 259200.0,
    }
)


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return seconds


@dataclass(frozen=True)
class EscalationPolicy:
    """The timing of the ladder (contract Appendix B, §5.3).

    Parameters
    ----------
    sla_seconds
        SLA per priority, seconds. Missing priorities take :data:`DEFAULT_SLA_SECONDS`
        (critical 3600, high 14400, medium 86400, low 259200). Stored read-only.
    dm_after_seconds
        Reminder DM at T + this (``ESCALATION_DM_AFTER_SECONDS``, 1800).
    mention_after_seconds
        Reminder @mention at T + this (``ESCALATION_MENTION_AFTER_SECONDS``, 7200).
    warning_threshold_percent
        SLA warning when this percentage of the SLA window remains, 0–100
        (``SLA_WARNING_THRESHOLD_PERCENT``, 25).
    critical_after_breach_seconds
        Critical step at D + this (``ESCALATION_CRITICAL_AFTER_BREACH_SECONDS``, 7200).
    safe_default
        Decision sent to the factory at the critical step (``ESCALATION_SAFE_DEFAULT``);
        a string is parsed with :class:`SafeDefault` (``"approved"`` is refused).
    quiet_hours
        The quiet window, or ``None`` for none (default 22:00–08:00 UTC, enabled).
    bundle_seconds
        Bundle window per person and channel (``ESCALATION_BUNDLE_SECONDS``, 120).
    repeat_seconds
        After the critical step, the breach page repeats this often
        (``ESCALATION_REPEAT_SECONDS``, 1800; README "Phone").
    repeat_limit
        At most this many repeats, 0–:data:`MAX_REPEATS` (``ESCALATION_REPEAT_LIMIT``; 0, the
        core's default, turns them off — the setting's default is 3). A decision or an
        acknowledgement stops them.
    quiet_bypass_priorities
        Priorities whose SLA breach and critical steps (the pages: SMS, call) are never held
        for quiet hours (``QUIET_HOURS_BYPASS_PRIORITIES``, critical and high; README "Phone":
        "Quiet hours hold reminders, never a breach or critical page" of these). Their
        reminders are still held; a critical task is never held at all, whatever this says.

    Raises
    ------
    ValueError
        A duration that is negative, NaN or infinite; a percentage outside 0–100; an SLA for
        something that is not a :class:`~escalation.models.Priority`; ``safe_default`` of
        ``"approved"``.
    TypeError
        A duration that is not a number.
    """

    sla_seconds: Mapping[Priority, float] = field(
        default_factory=lambda: dict(DEFAULT_SLA_SECONDS), hash=False
    )
    dm_after_seconds: float = 1800.0
    mention_after_seconds: float = 7200.0
    warning_threshold_percent: float = 25.0
    critical_after_breach_seconds: float = 7200.0
    safe_default: SafeDefault = SafeDefault.NONE
    quiet_hours: QuietHours | None = DEFAULT_QUIET_HOURS
    bundle_seconds: float = 120.0
    repeat_seconds: float = 1800.0
    repeat_limit: int = 0
    quiet_bypass_priorities: frozenset[Priority] = frozenset({Priority.CRITICAL, Priority.HIGH})

    def __post_init__(self) -> None:
        merged: dict[Priority, float] = dict(DEFAULT_SLA_SECONDS)
        for key, value in dict(self.sla_seconds).items():
            try:
                priority = Priority(key)
            except ValueError:
                raise ValueError(f"sla_seconds has an unknown priority {key!r}") from None
            merged[priority] = _seconds(value, f"sla_seconds[{priority.value}]")
        object.__setattr__(self, "sla_seconds", MappingProxyType(merged))
        for name in (
            "dm_after_seconds",
            "mention_after_seconds",
            "critical_after_breach_seconds",
            "bundle_seconds",
            "repeat_seconds",
        ):
            object.__setattr__(self, name, _seconds(getattr(self, name), name))
        percent = self.warning_threshold_percent
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise TypeError("warning_threshold_percent must be a number")
        if not (0.0 <= float(percent) <= 100.0):  # also refuses NaN
            raise ValueError(f"warning_threshold_percent must be within 0–100, got {percent!r}")
        object.__setattr__(self, "warning_threshold_percent", float(percent))
        object.__setattr__(self, "safe_default", SafeDefault(self.safe_default))
        if self.quiet_hours is not None and not isinstance(self.quiet_hours, QuietHours):
            raise TypeError("quiet_hours must be a QuietHours or None")
        limit = self.repeat_limit
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError("repeat_limit must be an integer")
        if not 0 <= limit <= MAX_REPEATS:
            raise ValueError(f"repeat_limit must be within 0–{MAX_REPEATS}, got {limit!r}")
        if limit and self.repeat_seconds <= 0:
            raise ValueError("repeat_seconds must be > 0 when repeats are on")
        try:
            bypass = frozenset(Priority(p) for p in self.quiet_bypass_priorities)
        except ValueError as exc:
            raise ValueError(f"quiet_bypass_priorities: {exc}") from None
        object.__setattr__(self, "quiet_bypass_priorities", bypass)

    def sla_seconds_for(self, priority: Priority) -> float:
        """SLA of ``priority`` in seconds."""
        return self.sla_seconds[Priority(priority)]

    def deadline_for(
        self,
        created_at: datetime,
        priority: Priority,
        sla_deadline: datetime | None = None,
    ) -> datetime:
        """The SLA deadline D of a task, aware UTC.

        The task's own ``slaDeadline`` wins when the factory sent one; otherwise
        D = ``created_at`` + the SLA of ``priority`` (rule: "the task's ``slaDeadline``, or
        T + the SLA for its priority").

        Parameters
        ----------
        created_at
            T, aware.
        priority
            Task priority.
        sla_deadline
            The task's ``slaDeadline``, aware, or ``None``.

        Returns
        -------
        datetime
            Aware UTC; :data:`LAST_INSTANT` when T + the SLA lies past it.

        Raises
        ------
        ValueError
            When a datetime is naive.
        """
        created = as_aware_utc(created_at, "created_at")
        if sla_deadline is not None:
            return as_aware_utc(sla_deadline, "sla_deadline")
        try:
            return created + timedelta(seconds=self.sla_seconds_for(priority))
        except OverflowError:  # past year 9999 (the SLA itself may be too long for a timedelta)
            return LAST_INSTANT

    @property
    def quiet_hours_active(self) -> bool:
        """True when quiet hours are configured, enabled and non-empty."""
        return self.quiet_hours is not None and self.quiet_hours.active
