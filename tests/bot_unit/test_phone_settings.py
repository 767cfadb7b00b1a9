"""The phone's settings (issue 14): defaults, parsing, the policy they build, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import Settings, describe_validation_error
from escalation.models import Priority

REQUIRED = {
    "DISCORD_BOT_TOKEN": "token",
    "DISCORD_GUILD_ID": "1",
    "DISCORD_TASKS_CHANNEL_ID": "2",
    "FACTORY_API_KEY": "key",
    "FACTORY_WEBHOOK_SECRET": "secret",
}


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("DISCORD_", "FACTORY_", "BRIDGE_", "TWILIO_", "ESCALATION_", "QUIET_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_defaults() -> None:
    settings = Settings()  # type: ignore[call-arg]
    assert settings.bridge_public_url is None  # one-way phone
    assert settings.escalation_call_next_after_seconds == 60
    policy = settings.escalation_policy()
    assert (policy.repeat_seconds, policy.repeat_limit) == (1800, 3)
    assert policy.quiet_bypass_priorities == {Priority.CRITICAL, Priority.HIGH}


def test_parsing(env: pytest.MonkeyPatch) -> None:
    env.setenv("BRIDGE_PUBLIC_URL", "https://bridge.example.com/")
    env.setenv("QUIET_HOURS_BYPASS_PRIORITIES", " Critical , medium ")
    env.setenv("ESCALATION_REPEAT_LIMIT", "0")
    settings = Settings()  # type: ignore[call-arg]
    assert settings.bridge_public_url == "https://bridge.example.com"
    policy = settings.escalation_policy()
    assert policy.quiet_bypass_priorities == {Priority.CRITICAL, Priority.MEDIUM}
    assert policy.repeat_limit == 0
    env.setenv("QUIET_HOURS_BYPASS_PRIORITIES", "")
    assert Settings().escalation_policy().quiet_bypass_priorities == frozenset()  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("QUIET_HOURS_BYPASS_PRIORITIES", "high,urgent", "QUIET_HOURS_BYPASS_PRIORITIES: expected"),
        ("ESCALATION_REPEAT_LIMIT", "11", "ESCALATION_REPEAT_LIMIT: Input should be less"),
        ("ESCALATION_REPEAT_SECONDS", "0", "ESCALATION_REPEAT_SECONDS: Input should be greater"),
        ("ESCALATION_CALL_NEXT_AFTER_SECONDS", "-1", "ESCALATION_CALL_NEXT_AFTER_SECONDS:"),
        ("BRIDGE_PUBLIC_URL", "bridge.example.com", "BRIDGE_PUBLIC_URL: expected an http"),
    ],
)
def test_bad_values_are_named(env: pytest.MonkeyPatch, name: str, value: str, says: str) -> None:
    env.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()  # type: ignore[call-arg]
    assert any(line.startswith(says) for line in describe_validation_error(caught.value))
