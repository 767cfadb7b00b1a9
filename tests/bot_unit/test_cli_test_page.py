"""``factory-bridge test-page NAME`` with one side down: the other side's line is still printed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cli import main
from sandbox.twilio_emulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioEmulator

# twilio's AsyncTwilioHttpClient still uses aiohttp's deprecated BasicAuth / auth=.
pytestmark = pytest.mark.filterwarnings(
    "ignore:BasicAuth is deprecated:DeprecationWarning",
    "ignore:The 'auth' parameter is deprecated:DeprecationWarning",
)

ROSTER = """
[[operators]]
name = "Jake"
discord_user_id = 111111111111
phone = "+15550100001"
on_call = true
"""


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioEmulator]:
    emulator = TwilioEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, twilio: TwilioEmulator) -> None:
    for name in list(os.environ):
        if name.startswith(("DISCORD_", "FACTORY_", "BRIDGE_", "TWILIO_", "DATABASE_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env
    roster = tmp_path / "roster.toml"
    roster.write_text(ROSTER, encoding="utf-8")
    for name, value in {
        "DISCORD_BOT_TOKEN": "bot-token",
        "DISCORD_GUILD_ID": "1",
        "DISCORD_TASKS_CHANNEL_ID": "2",
        "FACTORY_API_KEY": "factory-key",
        "FACTORY_WEBHOOK_SECRET": "hook-secret",
        "BRIDGE_ROSTER_FILE": str(roster),
        "DISCORD_API_BASE_URL": "http://127.0.0.1:1/api/v10",  # nothing listens on port 1
        "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": "+15550009999",
        "TWILIO_API_BASE_URL": twilio.base_url,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("env")
async def test_the_sms_line_is_printed_when_discord_cannot_be_reached(
    twilio: TwilioEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await asyncio.to_thread(main, ["test-page", "jake"])  # the emulator runs on this loop
    out, err = capsys.readouterr()
    [sms] = twilio.messages
    assert f"✓ SMS to +15550100001: Twilio accepted it ({sms['sid']})" in out
    assert "✗ DM to 111111111111: cannot reach Discord at http://127.0.0.1:1/api/v10" in out
    assert code == 1
    assert "Traceback" not in out + err
