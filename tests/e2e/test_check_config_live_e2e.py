"""``factory-bridge check-config --live`` against the emulators: ✓/✗ lines and the exit code."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import discord

from sandbox.world import (
    ALERTS_CHANNEL_ID,
    BOT_TOKEN,
    FACTORY_API_KEY,
    FEED_CHANNEL_ID,
    TWILIO_TOKEN,
    WEBHOOK_SECRET,
    World,
)

_CHECKOUT = Path(__file__).resolve().parents[2]
EMBED_LINKS = discord.Permissions(embed_links=True).value
MENTION_EVERYONE = discord.Permissions(mention_everyone=True).value


@dataclass
class Result:
    code: int
    out: str
    err: str


async def check_live(world: World, **overrides: object) -> Result:
    """Run ``python -m bot check-config --live`` in a child process with the world's settings."""
    env = {**os.environ, **world.env(**overrides)}
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(_CHECKOUT), env.get("PYTHONPATH", "")) if part
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "check-config",
        "--live",
        cwd=str(world.workdir),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


def failed_lines(result: Result) -> list[str]:
    return [line for line in result.out.splitlines() if line.startswith("✗")]


def assert_no_secret(result: Result) -> None:
    for secret in (BOT_TOKEN, FACTORY_API_KEY, WEBHOOK_SECRET, TWILIO_TOKEN):
        assert secret not in result.out + result.err


async def test_every_check_passes_in_the_sandbox(world: World) -> None:
    result = await check_live(world)
    assert result.code == 0, result.out + result.err
    assert failed_lines(result) == []
    passed = [line for line in result.out.splitlines() if line.startswith("✓")]
    text = "\n".join(passed)
    for name in (
        "Discord token",
        "Discord guild",
        "DISCORD_TASKS_CHANNEL_ID",
        "DISCORD_ALERTS_CHANNEL_ID",
        "DISCORD_DEPLOYS_CHANNEL_ID",
        "DISCORD_FEED_CHANNEL_ID",
        "DISCORD_APPROVER_ROLE_IDS",
        "Slash commands",
        "Factory API",
        "Twilio credentials",
        "TWILIO_FROM_NUMBER",
    ):
        assert name in text, result.out
    assert "mention everyone" in next(line for line in passed if "TASKS_CHANNEL" in line)
    assert_no_secret(result)
    assert world.twilio.messages == [] and world.twilio.calls == []  # nothing was sent


async def test_a_missing_channel_permission_is_named_with_the_fix(world: World) -> None:
    bot_id = str(world.discord.bot_user_id)
    channels = {c.id: c for c in world.guild.channels}
    channels[FEED_CHANNEL_ID].permission_overwrites.append(
        {"id": bot_id, "type": 1, "allow": "0", "deny": str(EMBED_LINKS)}
    )
    channels[ALERTS_CHANNEL_ID].permission_overwrites.append(
        {"id": bot_id, "type": 1, "allow": "0", "deny": str(MENTION_EVERYONE)}
    )
    result = await check_live(world)
    assert result.code == 1
    failed = failed_lines(result)
    assert len(failed) == 2, result.out
    feed = next(line for line in failed if str(FEED_CHANNEL_ID) in line)
    assert "Embed Links" in feed and "Mention Everyone" not in feed
    assert "grant" in feed
    alerts = next(line for line in failed if str(ALERTS_CHANNEL_ID) in line)
    assert "Mention Everyone" in alerts and "Embed Links" not in alerts


async def test_wrong_keys_roles_and_sender_number_fail(world: World) -> None:
    result = await check_live(
        world,
        FACTORY_API_KEY="not-the-key",
        DISCORD_APPROVER_ROLE_IDS="123456789012345678",
        TWILIO_FROM_NUMBER="+15550199999",
    )
    assert result.code == 1
    failed = "\n".join(failed_lines(result))
    assert "Factory API" in failed and "FACTORY_API_KEY" in failed
    assert "DISCORD_APPROVER_ROLE_IDS" in failed and "123456789012345678" in failed
    assert "TWILIO_FROM_NUMBER" in failed
    assert "not-the-key" not in result.out + result.err


async def test_a_rejected_token_and_twilio_credentials_fail(world: World) -> None:
    result = await check_live(
        world, DISCORD_BOT_TOKEN="wrong-token", TWILIO_AUTH_TOKEN="wrong-twilio-token"
    )
    assert result.code == 1
    failed = "\n".join(failed_lines(result))
    assert "Discord token" in failed and "DISCORD_BOT_TOKEN" in failed
    assert "Twilio credentials" in failed and "TWILIO_AUTH_TOKEN" in failed
    assert "wrong-token" not in result.out + result.err
    assert "wrong-twilio-token" not in result.out + result.err
