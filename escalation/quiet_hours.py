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
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from escalation.policy import QuietHours, as_aware_utc

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


@lru_cache(maxsize=1024)
def _window_starting(qh: QuietHours, day: date) -> tuple[datetime, datetime] | None:
    """The UTC ``[start, end)`` of the quiet window starting on local date ``day``.

    Memoized: a pure function of frozen values, asked for the same few days by every task's
    schedule (arming 100,000 open tasks at start asks it ~10 times per task; resolving a wall
    time through zoneinfo each time was most of the start-up's CPU).
    """
    if not qh.active:
        return None
    start = resolve_wall_time(day, qh.start, qh.timezone)
    end_day = day if qh.end > qh.start else day + _ONE_DAY
    end = resolve_wall_time(end_day, qh.end, qh.timezone)
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
    windows = (_window_starting(qh, day + offset * _ONE_DAY) for offset in (-2, -1, 0, 1))
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
    local_day = instant.astimezone(qh.zone).date()
    for offset in range(0, 3):
        window = _window_starting(qh, local_day + offset * _ONE_DAY)
        if window is not None and window[0] > instant:
            return window[0]
    return None
