"""Quiet hours across midnight and DST changes (contract §5.3; issue: quiet hours)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from escalation.policy import QuietHours
from escalation.quiet_hours import (
    is_quiet,
    next_quiet_start,
    quiet_end_after,
    quiet_window_at,
    resolve_wall_time,
)

NIGHT_UTC = QuietHours(time(22), time(8), "UTC")
NIGHT_NY = QuietHours(time(22), time(8), "America/New_York")
NIGHT_BERLIN = QuietHours(time(22), time(8), "Europe/Berlin")
US = 1e-6


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "quiet"),
    [
        (utc(2026, 1, 5, 21, 59, 59), False),
        (utc(2026, 1, 5, 22, 0), True),
        (utc(2026, 1, 5, 23, 59, 59), True),
        (utc(2026, 1, 6, 0, 0), True),
        (utc(2026, 1, 6, 3, 0), True),
        (utc(2026, 1, 6, 7, 59, 59, 999999), True),
        (utc(2026, 1, 6, 8, 0), False),
        (utc(2026, 1, 6, 12, 0), False),
    ],
)
def test_window_across_midnight_is_half_open(at: datetime, quiet: bool) -> None:
    assert is_quiet(NIGHT_UTC, at) is quiet


def test_end_of_window_across_midnight() -> None:
    assert quiet_end_after(NIGHT_UTC, utc(2026, 1, 5, 23, 0)) == utc(2026, 1, 6, 8, 0)
    assert quiet_end_after(NIGHT_UTC, utc(2026, 1, 6, 3, 0)) == utc(2026, 1, 6, 8, 0)
    assert quiet_window_at(NIGHT_UTC, utc(2026, 1, 6, 3, 0)) == (
        utc(2026, 1, 5, 22, 0),
        utc(2026, 1, 6, 8, 0),
    )


def test_not_quiet_returns_the_instant_in_utc() -> None:
    at = datetime(2026, 1, 5, 13, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert quiet_end_after(NIGHT_UTC, at) == utc(2026, 1, 5, 12, 0)
    assert quiet_end_after(NIGHT_UTC, at).tzinfo is UTC
    assert quiet_window_at(NIGHT_UTC, at) is None


def test_window_within_one_day() -> None:
    lunch = QuietHours(time(12), time(13), "UTC")
    assert not is_quiet(lunch, utc(2026, 1, 5, 11, 59))
    assert is_quiet(lunch, utc(2026, 1, 5, 12, 30))
    assert not is_quiet(lunch, utc(2026, 1, 5, 13, 0))
    assert quiet_end_after(lunch, utc(2026, 1, 5, 12, 30)) == utc(2026, 1, 5, 13, 0)


def test_no_window_when_disabled_empty_or_absent() -> None:
    at = utc(2026, 1, 6, 3, 0)
    assert not is_quiet(QuietHours(time(22), time(8), enabled=False), at)
    assert not is_quiet(QuietHours(time(8), time(8)), at)
    assert not is_quiet(None, at)
    assert quiet_end_after(None, at) == at
    assert next_quiet_start(None, at) is None


def test_local_zone_is_used() -> None:
    # 22:00 in Berlin (winter, UTC+1) is 21:00 UTC.
    assert not is_quiet(NIGHT_BERLIN, utc(2026, 1, 5, 20, 59))
    assert is_quiet(NIGHT_BERLIN, utc(2026, 1, 5, 21, 0))
    assert quiet_end_after(NIGHT_BERLIN, utc(2026, 1, 5, 21, 0)) == utc(2026, 1, 6, 7, 0)


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        is_quiet(NIGHT_UTC, datetime(2026, 1, 5, 23))


# --- DST: America/New_York springs forward on 2026-03-08 (02:00 EST -> 03:00 EDT, 07:00 UTC)
# --- and falls back on 2026-11-01 (02:00 EDT -> 01:00 EST, 06:00 UTC).


def test_new_york_night_across_spring_forward() -> None:
    # starts 22:00 EST on 2026-03-07 (03:00 UTC), ends 08:00 EDT on 2026-03-08 (12:00 UTC):
    # nine hours long instead of ten.
    assert not is_quiet(NIGHT_NY, utc(2026, 3, 8, 2, 59, 59))
    assert is_quiet(NIGHT_NY, utc(2026, 3, 8, 3, 0))
    assert quiet_end_after(NIGHT_NY, utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 8, 12, 0)
    start, end = quiet_window_at(NIGHT_NY, utc(2026, 3, 8, 7, 30)) or (None, None)
    assert (start, end) == (utc(2026, 3, 8, 3, 0), utc(2026, 3, 8, 12, 0))
    assert not is_quiet(NIGHT_NY, utc(2026, 3, 8, 12, 0))
    assert is_quiet(NIGHT_NY, utc(2026, 3, 8, 11, 59, 59))


def test_new_york_night_across_fall_back() -> None:
    # starts 22:00 EDT on 2026-10-31 (02:00 UTC), ends 08:00 EST on 2026-11-01 (13:00 UTC):
    # eleven hours long.
    assert not is_quiet(NIGHT_NY, utc(2026, 11, 1, 1, 59))
    assert is_quiet(NIGHT_NY, utc(2026, 11, 1, 2, 0))
    assert is_quiet(NIGHT_NY, utc(2026, 11, 1, 12, 59))
    assert quiet_end_after(NIGHT_NY, utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 1, 13, 0)
    assert quiet_end_after(NIGHT_NY, utc(2026, 11, 1, 6, 30)) == utc(2026, 11, 1, 13, 0)


def test_short_window_over_the_skipped_hour() -> None:
    # 01:30-03:00 on 2026-03-08: 01:30 EST (06:30 UTC) to 03:00 EDT (07:00 UTC), only 30 min.
    qh = QuietHours(time(1, 30), time(3, 0), "America/New_York")
    assert not is_quiet(qh, utc(2026, 3, 8, 6, 29))
    assert is_quiet(qh, utc(2026, 3, 8, 6, 30))
    assert quiet_end_after(qh, utc(2026, 3, 8, 6, 45)) == utc(2026, 3, 8, 7, 0)
    assert not is_quiet(qh, utc(2026, 3, 8, 7, 0))


def test_short_window_over_the_repeated_hour() -> None:
    # 01:30-03:00 on 2026-11-01: first 01:30 EDT (05:30 UTC) to 03:00 EST (08:00 UTC), 2.5 h.
    qh = QuietHours(time(1, 30), time(3, 0), "America/New_York")
    assert not is_quiet(qh, utc(2026, 11, 1, 5, 29))
    assert is_quiet(qh, utc(2026, 11, 1, 5, 30))
    assert is_quiet(qh, utc(2026, 11, 1, 6, 15))  # 01:15 EST, the repeated hour
    assert quiet_end_after(qh, utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 1, 8, 0)


def test_start_in_the_gap_begins_when_the_clocks_jump() -> None:
    # 02:30 does not exist on 2026-03-08 in New York: the window starts at 03:00 EDT.
    qh = QuietHours(time(2, 30), time(8, 0), "America/New_York")
    assert not is_quiet(qh, utc(2026, 3, 8, 6, 59, 59))
    assert is_quiet(qh, utc(2026, 3, 8, 7, 0))
    assert quiet_window_at(qh, utc(2026, 3, 8, 7, 0)) == (
        utc(2026, 3, 8, 7, 0),
        utc(2026, 3, 8, 12, 0),
    )


def test_end_in_the_fold_is_the_first_occurrence() -> None:
    # 22:00-01:30 ends at the first 01:30 (EDT, 05:30 UTC); the repeated hour is not quiet.
    qh = QuietHours(time(22), time(1, 30), "America/New_York")
    assert quiet_end_after(qh, utc(2026, 11, 1, 3, 0)) == utc(2026, 11, 1, 5, 30)
    assert not is_quiet(qh, utc(2026, 11, 1, 5, 30))
    assert not is_quiet(qh, utc(2026, 11, 1, 6, 0))  # 01:00 EST, second time round


def test_window_entirely_in_the_gap_is_empty() -> None:
    qh = QuietHours(time(2, 10), time(2, 40), "America/New_York")
    assert not is_quiet(qh, utc(2026, 3, 8, 7, 0))
    assert is_quiet(qh, utc(2026, 3, 9, 6, 20))  # the next day it exists (02:20 EDT)


def test_berlin_nights_across_both_changes() -> None:
    # 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00 UTC. 22:00 CET = 21:00 UTC on the 28th,
    # 08:00 CEST = 06:00 UTC on the 29th.
    assert quiet_window_at(NIGHT_BERLIN, utc(2026, 3, 29, 1, 0)) == (
        utc(2026, 3, 28, 21, 0),
        utc(2026, 3, 29, 6, 0),
    )
    # 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00 UTC. 22:00 CEST = 20:00 UTC on the 24th,
    # 08:00 CET = 07:00 UTC on the 25th.
    assert quiet_window_at(NIGHT_BERLIN, utc(2026, 10, 25, 1, 0)) == (
        utc(2026, 10, 24, 20, 0),
        utc(2026, 10, 25, 7, 0),
    )


@pytest.mark.parametrize(
    ("day", "wall", "zone", "expected"),
    [
        (date(2026, 3, 8), time(2, 30), "America/New_York", utc(2026, 3, 8, 7, 0)),  # gap
        (date(2026, 11, 1), time(1, 30), "America/New_York", utc(2026, 11, 1, 5, 30)),  # fold
        (date(2026, 3, 29), time(2, 30), "Europe/Berlin", utc(2026, 3, 29, 1, 0)),  # gap
        (date(2026, 10, 25), time(2, 30), "Europe/Berlin", utc(2026, 10, 25, 0, 30)),  # fold
        (date(2026, 7, 1), time(8, 0), "Europe/Berlin", utc(2026, 7, 1, 6, 0)),
    ],
)
def test_resolve_wall_time(day: date, wall: time, zone: str, expected: datetime) -> None:
    assert resolve_wall_time(day, wall, zone) == expected


def test_next_quiet_start() -> None:
    assert next_quiet_start(NIGHT_UTC, utc(2026, 1, 5, 12, 0)) == utc(2026, 1, 5, 22, 0)
    assert next_quiet_start(NIGHT_UTC, utc(2026, 1, 5, 23, 0)) == utc(2026, 1, 6, 22, 0)
    assert next_quiet_start(NIGHT_NY, utc(2026, 3, 7, 12, 0)) == utc(2026, 3, 8, 3, 0)


def test_every_minute_of_a_dst_day_agrees_with_its_window() -> None:
    # is_quiet and quiet_end_after agree minute by minute over both New York changes.
    for start in (utc(2026, 3, 7, 12, 0), utc(2026, 10, 31, 12, 0)):
        for minute in range(0, 26 * 60, 7):
            at = start + timedelta(minutes=minute)
            end = quiet_end_after(NIGHT_NY, at)
            if is_quiet(NIGHT_NY, at):
                assert end > at
                assert not is_quiet(NIGHT_NY, end)
                assert is_quiet(NIGHT_NY, end - timedelta(seconds=US))
            else:
                assert end == at
