"""``QUIET_HOURS_START`` / ``QUIET_HOURS_END`` are wall times of ``QUIET_HOURS_TIMEZONE``.

A time with an offset (``22:00+01:00``, ``22:00Z``) is refused when the settings are read, so
``factory-bridge check-config`` names the setting; before, the check said OK and ``run`` then
failed with a traceback building the escalation policy (README "Settings"; contract §5.3
``notifications.quiet_hours_start``).
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.settings import Settings, describe_validation_error

REQUIRED = {
    "discord_bot_token": "token",
    "discord_guild_id": 1,
    "discord_tasks_channel_id": 2,
    "factory_api_key": "key",
    "factory_webhook_secret": "secret",
}


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("quiet_hours_start", "22:00+01:00"),
        ("quiet_hours_start", "22:00Z"),
        ("quiet_hours_end", "08:00-05:00"),
    ],
)
def test_a_quiet_hours_time_with_an_offset_is_refused(setting: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **REQUIRED, **{setting: value})  # type: ignore[call-arg, arg-type]
    [line] = describe_validation_error(caught.value)
    assert line.startswith(f"{setting.upper()}: must be a wall time without an offset")
    assert "QUIET_HOURS_TIMEZONE" in line


def test_a_wall_time_is_taken_in_the_quiet_hours_zone() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        **REQUIRED,  # type: ignore[arg-type]
        quiet_hours_start="22:30",  # type: ignore[arg-type]
        quiet_hours_end="07:15",  # type: ignore[arg-type]
        quiet_hours_timezone="Europe/London",
    )
    quiet = settings.escalation_policy().quiet_hours
    assert quiet is not None
    assert (quiet.start.isoformat(), quiet.end.isoformat(), quiet.timezone) == (
        "22:30:00",
        "07:15:00",
        "Europe/London",
    )
