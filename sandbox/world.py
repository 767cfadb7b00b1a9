"""A complete local world for the bridge: the three emulators, a guild with people, a roster.

Used by ``factory-bridge sandbox`` and by the end-to-end tests, so both exercise the same setup.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.discord_emulator import (
    ChannelSpec,
    DiscordEmulator,
    GuildSpec,
    MemberSpec,
    RoleSpec,
)
from sandbox.factory_emulator import FactoryEmulator
from sandbox.twilio_emulator import TwilioEmulator

__all__ = ["People", "World", "free_port"]

GUILD_ID = 900000000000000001
TASKS_CHANNEL_ID = 900000000000000101
ALERTS_CHANNEL_ID = 900000000000000102
DEPLOYS_CHANNEL_ID = 900000000000000103
FEED_CHANNEL_ID = 900000000000000104
APPROVER_ROLE_ID = 900000000000000201
DEPLOYER_ROLE_ID = 900000000000000202
BOT_TOKEN = "sandbox-bot-token"
FACTORY_API_KEY = "sandbox-factory-key"
WEBHOOK_SECRET = "sandbox-webhook-secret"
TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "sandbox-twilio-token"
TWILIO_FROM = "+15550100000"


#: Where Linux takes the local ports of outgoing connections when it has no
#: ``/proc/sys/net/ipv4/ip_local_port_range`` to tell (its default).
_DEFAULT_EPHEMERAL = (32768, 60999)
#: How many ports below the ephemeral range :func:`free_port` chooses from.
_WINDOW = 12_000


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (inclusive)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now, outside the ephemeral range.

    The port is chosen here and bound later by another process (the bridge reads it from
    ``BRIDGE_HTTP_PORT``). A port from the kernel's ephemeral range (what binding port 0
    gives) can be taken in between as the local port of any outgoing connection — a
    database or HTTP client of the same test run — and the bridge then fails with
    "address already in use". Ports below that range are never handed out that way, so
    only another listener could take them; random choice makes that rare too.
    """
    low, high = _ephemeral_range()
    if low > 1024 + _WINDOW:
        candidates = range(low - _WINDOW, low)
    else:  # a machine whose ephemeral range starts low: try above it
        candidates = range(min(high + 1, 65_535), 65_536)
    chooser = random.SystemRandom()  # not reseeded by a test runner's random seed
    for _ in range(64):
        if not candidates:
            break
        port = chooser.choice(candidates)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class People:
    """The sandbox's people (Discord members); see :data:`ROSTER_TOML` for their phones."""

    alice: MemberSpec = field(
        default_factory=lambda: MemberSpec(
            id=910000000000000001, username="alice", roles=[APPROVER_ROLE_ID]
        )
    )
    dave: MemberSpec = field(
        default_factory=lambda: MemberSpec(
            id=910000000000000002, username="dave", roles=[APPROVER_ROLE_ID, DEPLOYER_ROLE_ID]
        )
    )
    bob: MemberSpec = field(
        default_factory=lambda: MemberSpec(id=910000000000000003, username="bob", roles=[])
    )
    carol: MemberSpec = field(
        default_factory=lambda: MemberSpec(
            id=910000000000000004, username="carol", roles=[APPROVER_ROLE_ID], dm_closed=True
        )
    )

    erin: MemberSpec = field(
        default_factory=lambda: MemberSpec(
            id=910000000000000005, username="erin", roles=[APPROVER_ROLE_ID, DEPLOYER_ROLE_ID]
        )
    )

    def all(self) -> list[MemberSpec]:
        """Every member."""
        return [self.alice, self.dave, self.bob, self.carol, self.erin]


def roster_toml(people: People) -> str:
    """The sandbox roster: alice and dave on call with phones, dave the admin."""
    return f"""
[[operators]]
name = "Alice"
factory_user_id = "user-alice"
discord_user_id = "{people.alice.id}"
phone = "+15550100001"
on_call = true

[[operators]]
name = "Dave"
factory_user_id = "user-dave"
discord_user_id = {people.dave.id}
phone = "+15550100002"
on_call = true
admin = true

[[operators]]
name = "Carol"
factory_user_id = "user-carol"
discord_user_id = {people.carol.id}
phone = "+15550100004"
"""


class World:
    """The emulators plus the settings a bridge needs to run against them.

    Parameters
    ----------
    workdir:
        Folder for the database and roster file.
    bridge_port:
        The port the bridge will listen on (the factory emulator delivers webhooks there);
        a free one is picked when ``None``.
    discord_options:
        Extra keyword arguments for :class:`DiscordEmulator` (deadline, rate limit …).
    database_url:
        The bridge's ``DATABASE_URL``; default an SQLite file in ``workdir``
        (:attr:`database_file`). Tests hand a fresh PostgreSQL schema's URL here.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        bridge_port: int | None = None,
        discord_options: dict[str, Any] | None = None,
        database_url: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.people = People()
        self.bridge_port = bridge_port or free_port()
        guild = GuildSpec(
            id=GUILD_ID,
            name="Factory",
            channels=[
                ChannelSpec(id=TASKS_CHANNEL_ID, name="factory-tasks"),
                ChannelSpec(id=ALERTS_CHANNEL_ID, name="factory-alerts"),
                ChannelSpec(id=DEPLOYS_CHANNEL_ID, name="factory-deploys"),
                ChannelSpec(id=FEED_CHANNEL_ID, name="factory-feed"),
            ],
            roles=[
                RoleSpec(id=APPROVER_ROLE_ID, name="approver"),
                RoleSpec(id=DEPLOYER_ROLE_ID, name="deploy-approver"),
            ],
            members=self.people.all(),
        )
        self.guild = guild
        self.discord = DiscordEmulator(guild, token=BOT_TOKEN, **(discord_options or {}))
        self.factory = FactoryEmulator(
            api_key=FACTORY_API_KEY,
            webhook_url=f"http://127.0.0.1:{self.bridge_port}/events",
            webhook_secret=WEBHOOK_SECRET,
        )
        self.twilio = TwilioEmulator(
            account_sid=TWILIO_SID,
            auth_token=TWILIO_TOKEN,
            phone_numbers=(TWILIO_FROM,),
            # the number's "A message comes in" webhook (used when BRIDGE_PUBLIC_URL is set)
            sms_webhook_url=f"http://127.0.0.1:{self.bridge_port}/twilio/sms",
        )
        self.roster_file = self.workdir / "roster.toml"
        self.database_file = self.workdir / "bridge.db"
        #: what the bridge is given as DATABASE_URL (open a Store on it to look inside)
        self.database_url = database_url or f"sqlite:///{self.database_file}"

    async def start(self) -> None:
        """Start the three emulators and write the roster file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.roster_file.write_text(roster_toml(self.people), encoding="utf-8")
        await self.discord.start()
        await self.factory.start()
        await self.twilio.start()

    async def stop(self) -> None:
        """Stop the emulators."""
        await self.factory.stop()
        await self.twilio.stop()
        await self.discord.stop()

    def discord_guild_channels(self) -> list[ChannelSpec]:
        """The guild's text channels."""
        return list(self.guild.channels)

    def settings_overrides(self, **overrides: object) -> dict[str, str]:
        """:meth:`env` with lower-case keys, for ``Settings(**…)`` in-process."""
        return {k.lower(): v for k, v in self.env(**overrides).items()}

    @property
    def bridge_url(self) -> str:
        """Base URL of the bridge's HTTP intake."""
        return f"http://127.0.0.1:{self.bridge_port}"

    def env(self, **overrides: object) -> dict[str, str]:
        """Environment variables that configure a bridge for this world (upper-case names)."""
        values: dict[str, object] = {
            "DISCORD_BOT_TOKEN": BOT_TOKEN,
            "DISCORD_GUILD_ID": GUILD_ID,
            "DISCORD_TASKS_CHANNEL_ID": TASKS_CHANNEL_ID,
            "DISCORD_ALERTS_CHANNEL_ID": ALERTS_CHANNEL_ID,
            "DISCORD_DEPLOYS_CHANNEL_ID": DEPLOYS_CHANNEL_ID,
            "DISCORD_FEED_CHANNEL_ID": FEED_CHANNEL_ID,
            "DISCORD_APPROVER_ROLE_IDS": str(APPROVER_ROLE_ID),
            "DISCORD_DEPLOY_APPROVER_ROLE_IDS": str(DEPLOYER_ROLE_ID),
            "DISCORD_API_BASE_URL": self.discord.api_base_url,
            "DISCORD_GATEWAY_URL": self.discord.gateway_url,
            "FACTORY_API_URL": self.factory.base_url,
            "FACTORY_API_KEY": FACTORY_API_KEY,
            "FACTORY_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "BRIDGE_HTTP_HOST": "127.0.0.1",
            "BRIDGE_HTTP_PORT": self.bridge_port,
            "DATABASE_URL": self.database_url,
            "BRIDGE_ROSTER_FILE": self.roster_file,
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "TWILIO_FROM_NUMBER": TWILIO_FROM,
            "TWILIO_API_BASE_URL": self.twilio.base_url,
            "QUIET_HOURS_ENABLED": "false",
            "DISCORD_GUILD_READY_TIMEOUT_SECONDS": "0.1",
            "BATCH_ENABLED": "false",
            "LOG_LEVEL": "INFO",
        }
        if not self.database_url.startswith("sqlite"):
            # A bridge restarted on a shared database waits one lease before it leads (it
            # cannot tell its dead self from a paused leader): a short one in this world.
            values["BRIDGE_LEADER_LEASE_SECONDS"] = 1.5
        values.update({k.upper(): v for k, v in overrides.items()})
        return {k: str(v) for k, v in values.items() if v is not None}
