"""Quiet hours: when non-critical escalation steps are held, and until when.

Pure functions of a :class:`~escalation.policy.QuietHours` and an instant; no clock reads.

Rules (contract §5.3 ``quiet_hours_start`` / ``quiet_hours_end``: "No non-critical
notifications"; contract Appendix B, quiet hours)
-------------------------------------------------------------------------------------------
* The window is half-open, ``[start, end)`` in the local wall time of ``QuietHours.timezone``.
  When ``end < start`` it crosses midnight: the window that *starts* on local date ``d`` ends on
  ``d + 1``. ``start == end`` (or ``enabled=False``) means there are no quiet hours.
* Each daily window is turned into a pair of UTC instants, and an instant is quiet when it lies
  inside one of those pairs. The zoneinfo database decides the UTC offset, so DST is handled
  by the data, not by arithmetic on offsets.
* A wall time is resolved to **the first instant at which local clocks show that wall time or
  later**:

  - a time that exists once is that instant;
  - an ambiguous time (the repeated hour when clocks go back, "fold") is its **first**
    occurrence — e.g. 01:30 on 2026-11-01 in America/New_York is 01:30 EDT = 05:30 UTC;
  - a time that does not exist (the skipped hour when clocks go forward, "gap") is **the
    first instant after the gap**, i.e. the moment of the change — e.g. 02:30 on 2026-03-08 in
    America/New_York is 03:00 EDT = 07:00 UTC.

  Consequence: after a window ended at the first occurrence of an ambiguous wall time, the
  repeated hour is *not* quiet again; a window whose both ends fall in the same gap is empty.
* Near the ends of what a ``datetime`` holds (years 1 and 9999: a
  ``slaDeadline`` of 9999-12-31 meaning "none") nothing here raises: a window end past the last
  instant is :data:`~escalation.policy.LAST_INSTANT` (a step held to it is never due, see
  :mod:`escalation.ladder`), a start before the first is
  :data:`~escalation.policy.FIRST_INSTANT`, and a window of a local date no ``date`` holds is
  none.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from escalation.policy import FIRST_INSTANT, LAST_INSTANT, QuietHours, as_aware_utc

__all__ = [
    "is_quiet",
    "next_quiet_start",
    "quiet_end_after",
    "quiet_window_at",
    "resolve_wall_time",
]

_ONE_DAY = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)


def _wall(instant_utc: datetime, zone: ZoneInfo) -> datetime:
    """Local wall time (naive) of an aware instant."""
    return instant_utc.astimezone(zone).replace(tzinfo=None)


def resolve_wall_time(day: date, wall: time, timezone: str) -> datetime:
    """The first instant at which clocks in ``timezone`` show ``day`` ``wall`` or later.

    Parameters
    ----------
    day, wall
        Local calendar date and naive wall time.
    timezone
        IANA zone name.

    Returns
    -------
    datetime
        Aware UTC. Existing times map to themselves, ambiguous times (fold) to their first
        occurrence, non-existent times (gap) to the first instant after the gap.

    Raises
    ------
    zoneinfo.ZoneInfoNotFoundError
        For an unknown zone (a :class:`QuietHours` has validated its zone already).
    OverflowError
        When that instant lies outside what a UTC ``datetime`` holds (a time in year 1 or
        9999); the window functions below take it as the first / last instant instead.
    """
    zone = ZoneInfo(timezone)
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(first, zone) == naive:
        return first  # exists; fold=0 is the first occurrence of an ambiguous time
    # A gap: fold=0 used the offset before the change and lands after the gap; fold=1 used the
    # offset after the change and lands before it. Search between them for the change.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    if low > high:  # defensive: never for a plain gap
        low, high = high, low
    # invariant: _wall(low) < naive <= _wall(high)
    while high - low > _MICROSECOND:
        middle = low + (high - low) / 2
        if _wall(middle, zone) >= naive:
            high = middle
        else:
            low = middle
    return high


def _resolve_bounded(day: date, wall: time, timezone: str) -> datetime:
    """:func:`resolve_wall_time`, or the first / last instant when the answer lies before /
    past what a ``datetime`` holds (a local time in year 1 or 9999: see the module docstring)."""
    try:
        return resolve_wall_time(day, wall, timezone)
    except OverflowError:
        return LAST_INSTANT if day.year > 1 else FIRST_INSTANT


def _shifted(day: date, days: int) -> date | None:
    """``day`` + ``days`` days, or ``None`` past the dates a ``date`` holds."""
    try:
        return day + days * _ONE_DAY
    except OverflowError:
        return None


@lru_cache(maxsize=1024)
def _window_starting(qh: QuietHours, day: date) -> tuple[datetime, datetime] | None:
    """The UTC ``[start, end)`` of the quiet window starting on local date ``day``.

    Memoized: a pure function of frozen values, asked for the same few days by every task's
    schedule (arming 100,000 open tasks at start asks it ~10 times per task; resolving a wall
    time through zoneinfo each time was most of the start-up's CPU). An end past the last
    instant a ``datetime`` holds is :data:`~escalation.policy.LAST_INSTANT`.
    """
    if not qh.active:
        return None
    start = _resolve_bounded(day, qh.start, qh.timezone)
    end_day = day if qh.end > qh.start else _shifted(day, 1)
    end = LAST_INSTANT if end_day is None else _resolve_bounded(end_day, qh.end, qh.timezone)
    if end <= start:  # both ends in one gap: nothing is quiet
        return None
    return start, end


def quiet_window_at(qh: QuietHours | None, at: datetime) -> tuple[datetime, datetime] | None:
    """The quiet window ``[start, end)`` (aware UTC) containing ``at``, or ``None``.

    Parameters
    ----------
    qh
        Quiet hours, or ``None`` for none.
    at
        Aware instant.

    Raises
    ------
    ValueError
        When ``at`` is naive.
    """
    instant = as_aware_utc(at, "at")
    if qh is None or not qh.active:
        return None
    for window in _windows_on_utc_day(qh, instant.toordinal()):
        if window[0] <= instant < window[1]:
            return window
    return None


@lru_cache(maxsize=4096)
def _windows_on_utc_day(qh: QuietHours, ordinal: int) -> tuple[tuple[datetime, datetime], ...]:
    """The quiet windows that may contain an instant of the UTC date ``ordinal``, earliest
    first (memoized: arming every open task at start asks for the same few days).

    A window containing an instant starts on its local date or, crossing midnight, the day
    before (windows are shorter than a day of wall time plus one DST hour); local dates are
    within a day of the UTC date (offsets are under 15 hours): local dates ``d - 2 … d + 1``.
    """
    day = date.fromordinal(ordinal)
    days = [d for offset in (-2, -1, 0, 1) if (d := _shifted(day, offset)) is not None]
    windows = [_window_starting(qh, d) for d in days]
    return tuple(w for w in windows if w is not None)


def is_quiet(qh: QuietHours | None, at: datetime) -> bool:
    """True when ``at`` falls inside quiet hours.

    Parameters
    ----------
    qh
        Quiet hours, or ``None`` (never quiet). Disabled or ``start == end``: never quiet.
    at
        Aware instant (any zone).

    Raises
    ------
    ValueError
        When ``at`` is naive.
    """
    return quiet_window_at(qh, at) is not None


def quiet_end_after(qh: QuietHours | None, at: datetime) -> datetime:
    """When the quiet window containing ``at`` ends; ``at`` itself when it is not quiet.

    Parameters
    ----------
    qh
        Quiet hours, or ``None``.
    at
        Aware instant.

    Returns
    -------
    datetime
        Aware UTC: the end of the current window (the first non-quiet instant), computed in
        local wall time and resolved DST-correctly (see the module docstring), or ``at`` in
        UTC when ``at`` is not inside quiet hours.

    Raises
    ------
    ValueError
        When ``at`` is naive.
    """
    window = quiet_window_at(qh, at)
    if window is None:
        return as_aware_utc(at, "at")
    return window[1]


def next_quiet_start(qh: QuietHours | None, at: datetime) -> datetime | None:
    """The start of the next quiet window strictly after ``at`` (aware UTC), or ``None``.

    Useful for showing "quiet hours begin at …"; ``None`` when there are no quiet hours.

    Raises
    ------
    ValueError
        When ``at`` is naive.
    """
    instant = as_aware_utc(at, "at")
    if qh is None or not qh.active:
        return None
    try:
        local_day = instant.astimezone(qh.zone).date()
    except OverflowError:  # the local date is past year 9999 or before year 1
        local_day = instant.date()
    for offset in range(0, 3):
        day = _shifted(local_day, offset)
        window = _window_starting(qh, day) if day is not None else None
        if window is not None and window[0] > instant:
            return window[0]
    return None
