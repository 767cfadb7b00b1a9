"""``factory-bridge check-config --live``: check the real settings against the real services.

Each check is one :class:`Check` line, ✓ or ✗, with what to do when it fails:

- Discord (through discord.py's own HTTP client, so ``DISCORD_API_BASE_URL`` is honoured): the
  token logs in (``GET /users/@me``); the guild is there; each configured channel exists and the
  bot has View Channel, Send Messages, Embed Links and Read Message History there, plus Mention
  Everyone in the tasks and alerts channels (the permissions computed the way Discord's
  documentation, "Permissions → Permission Overwrites", describes: @everyone, the bot's roles,
  then the channel's @everyone, role and member overwrites); the approver roles exist; the
  guild's application commands can be read (Discord answers 403 "Missing Access" there when the
  bot was invited without the ``applications.commands`` scope, which also makes the sync at
  start fail).
- The factory: ``GET /v1/tasks?limit=1`` with the API key (contract §1.1, §1.3).
- Twilio (when configured): the account can be fetched with the SID and auth token, and the
  sender number is one of the account's incoming phone numbers (Twilio REST API 2010-04-01,
  ``Accounts/{sid}.json`` and ``IncomingPhoneNumbers.json?PhoneNumber=``).

Nothing is posted, nobody is pinged and no SMS is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import discord
import discord.http

from bot.discord.endpoints import point_discord_at
from bot.settings import Settings

__all__ = ["Check", "channel_permissions", "format_check", "run_live_checks"]

_P = discord.Permissions
ADMINISTRATOR = _P(administrator=True).value
#: What the bot needs in every configured channel (Discord permission names).
CHANNEL_NEEDS: dict[str, int] = {
    "View Channel": _P(view_channel=True).value,
    "Send Messages": _P(send_messages=True).value,
    "Embed Links": _P(embed_links=True).value,
    "Read Message History": _P(read_message_history=True).value,
}
#: Needed in addition in the tasks and alerts channels (the ladder's @here / @everyone steps).
MENTION_EVERYONE = ("Mention Everyone", _P(mention_everyone=True).value)
ALL_PERMISSIONS = _P.all().value


@dataclass(frozen=True)
class Check:
    """One line of the live check.

    Attributes
    ----------
    name:
        What was checked, e.g. ``"Discord token"``.
    ok:
        Whether it passed.
    detail:
        What was found (never a secret).
    fix:
        What to do when it failed (empty when it passed).
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""


def format_check(check: Check) -> str:
    """The line printed for ``check``: ``✓ name: detail`` or ``✗ name: detail — fix``."""
    mark = "✓" if check.ok else "✗"
    line = f"{mark} {check.name}: {check.detail}"
    return f"{line} — {check.fix}" if check.fix else line


def channel_permissions(
    *,
    guild_id: int,
    member_id: int,
    member_role_ids: Iterable[int],
    roles: Mapping[int, int],
    overwrites: Iterable[Mapping[str, Any]],
    owner_id: int | None = None,
) -> int:
    """A member's permission bits in one channel (Discord: "Permission Overwrites").

    Parameters
    ----------
    guild_id:
        The guild (its id is also the @everyone role's id).
    member_id, member_role_ids:
        The member and its roles (without @everyone).
    roles:
        Role id → permission bits, for every role of the guild.
    overwrites:
        The channel's ``permission_overwrites`` objects (``id``, ``type`` 0 role / 1 member,
        ``allow``, ``deny`` as decimal strings).
    owner_id:
        The guild owner, who has every permission.

    Returns
    -------
    int
        The permission bit set.
    """
    if member_id == owner_id:
        return ALL_PERMISSIONS
    role_ids = set(member_role_ids)
    perms = roles.get(guild_id, 0)
    for role_id in role_ids:
        perms |= roles.get(role_id, 0)
    if perms & ADMINISTRATOR:
        return ALL_PERMISSIONS
    by_id = {int(o["id"]): o for o in overwrites}
    everyone = by_id.get(guild_id)
    if everyone is not None:
        perms = (perms & ~int(everyone.get("deny", 0))) | int(everyone.get("allow", 0))
    allow = deny = 0
    for o in overwrites:
        if int(o.get("type", 0)) == 0 and int(o["id"]) in role_ids:
            allow |= int(o.get("allow", 0))
            deny |= int(o.get("deny", 0))
    perms = (perms & ~deny) | allow
    own = by_id.get(member_id)
    if own is not None and int(own.get("type", 1)) == 1:
        perms = (perms & ~int(own.get("deny", 0))) | int(own.get("allow", 0))
    return perms


def _configured_channels(settings: Settings) -> list[tuple[str, int, bool]]:
    """``(setting name, channel id, needs Mention Everyone)`` for every configured channel."""
    channels = [("DISCORD_TASKS_CHANNEL_ID", settings.discord_tasks_channel_id, True)]
    for name, value, mention in (
        ("DISCORD_ALERTS_CHANNEL_ID", settings.discord_alerts_channel_id, True),
        ("DISCORD_DEPLOYS_CHANNEL_ID", settings.discord_deploys_channel_id, False),
        ("DISCORD_FEED_CHANNEL_ID", settings.discord_feed_channel_id, False),
    ):
        if value is not None:
            channels.append((name, value, mention))
    return channels


async def _discord_checks(settings: Settings) -> list[Check]:
    point_discord_at(settings.discord_api_base_url, settings.discord_gateway_url)
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    out: list[Check] = []
    try:
        try:
            me: Any = await http.static_login(settings.discord_bot_token.get_secret_value())
        except discord.LoginFailure:
            return [
                Check(
                    "Discord token",
                    False,
                    "Discord rejected the token (401)",
                    "copy the bot token again from the Developer Portal into DISCORD_BOT_TOKEN",
                )
            ]
        bot_id = int(me["id"])
        out.append(Check("Discord token", True, f"logged in as {me.get('username')} ({bot_id})"))
        gid = settings.discord_guild_id
        try:
            guild: Any = await http.get_guild(gid, with_counts=False)
            member: Any = await http.get_member(gid, bot_id)
        except discord.HTTPException as exc:
            out.append(
                Check(
                    "Discord guild",
                    False,
                    f"guild {gid} not reachable ({exc.status})",
                    "check DISCORD_GUILD_ID and invite the bot to that server",
                )
            )
            return out
        out.append(Check("Discord guild", True, f"{guild.get('name')} ({gid})"))
        roles = {int(r["id"]): int(r.get("permissions", 0)) for r in guild.get("roles", [])}
        channels: Any = await http.get_all_guild_channels(gid)
        by_id = {int(c["id"]): c for c in channels}
        for setting, channel_id, mention in _configured_channels(settings):
            out.append(_channel_check(setting, channel_id, mention, by_id, roles, member, guild))
        for setting, ids in (
            ("DISCORD_APPROVER_ROLE_IDS", settings.discord_approver_role_ids),
            ("DISCORD_DEPLOY_APPROVER_ROLE_IDS", settings.discord_deploy_approver_role_ids),
        ):
            missing = sorted(i for i in ids if i not in roles)
            if missing:
                out.append(
                    Check(
                        setting,
                        False,
                        f"no such role in the guild: {', '.join(map(str, missing))}",
                        "copy the role ids from Server Settings → Roles",
                    )
                )
            else:
                out.append(Check(setting, True, f"{len(ids)} role(s) found"))
        try:
            app: Any = await http.application_info()
            commands: Any = await http.get_guild_commands(int(app["id"]), gid)
        except discord.HTTPException as exc:
            out.append(
                Check(
                    "Slash commands",
                    False,
                    f"cannot manage the guild's commands ({exc.status})",
                    "re-invite the bot with the applications.commands scope",
                )
            )
        else:
            out.append(Check("Slash commands", True, f"{len(commands)} registered in the guild"))
    except (discord.HTTPException, OSError) as exc:
        out.append(Check("Discord", False, f"request failed: {type(exc).__name__}", _NET_FIX))
    finally:
        await http.close()
    return out


_NET_FIX = "check DISCORD_API_BASE_URL and the network"


def _channel_check(
    setting: str,
    channel_id: int,
    mention: bool,
    channels: Mapping[int, Any],
    roles: Mapping[int, int],
    member: Any,
    guild: Any,
) -> Check:
    name = f"{setting} {channel_id}"
    channel = channels.get(channel_id)
    if channel is None:
        return Check(
            name, False, "no such channel in the guild", f"copy the channel id into {setting}"
        )
    perms = channel_permissions(
        guild_id=int(guild["id"]),
        member_id=int(member["user"]["id"]) if "user" in member else 0,
        member_role_ids=[int(r) for r in member.get("roles", [])],
        roles=roles,
        overwrites=channel.get("permission_overwrites") or [],
        owner_id=int(guild["owner_id"]) if guild.get("owner_id") else None,
    )
    needs = dict(CHANNEL_NEEDS)
    if mention:
        needs[MENTION_EVERYONE[0]] = MENTION_EVERYONE[1]
    lacking = [label for label, bit in needs.items() if not perms & bit]
    label = f"#{channel.get('name')}"
    if lacking:
        return Check(
            name,
            False,
            f"{label}: the bot lacks {', '.join(lacking)}",
            "grant these to the bot's role in the channel's permissions",
        )
    return Check(name, True, f"{label}: the bot may {', '.join(needs).lower()}")


async def _factory_check(settings: Settings) -> Check:
    from bot.factory.client import FactoryClient, RetryPolicy
    from bot.factory.errors import FactoryError, FactoryUnavailable

    factory = FactoryClient(
        settings.factory_api_url,
        settings.factory_api_key.get_secret_value(),
        timeout_seconds=settings.factory_timeout_seconds,
        retry=RetryPolicy(max_retries=0),
    )
    try:
        await factory.list_tasks(limit=1)
    except FactoryError as exc:
        fix = "check FACTORY_API_KEY" if exc.status in (401, 403) else "check FACTORY_API_URL"
        return Check("Factory API", False, f"GET /tasks answered {exc.status}", fix)
    except (FactoryUnavailable, OSError) as exc:
        return Check(
            "Factory API", False, f"not reachable ({type(exc).__name__})", "check FACTORY_API_URL"
        )
    finally:
        await factory.aclose()
    return Check("Factory API", True, f"the API key is accepted at {settings.factory_api_url}")


async def _twilio_checks(settings: Settings) -> list[Check]:
    if not settings.twilio_configured:
        return [Check("Twilio", True, "not configured: SMS and call steps are skipped")]
    from twilio.base.exceptions import TwilioException, TwilioRestException
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    from bot.pager.twilio_base import configure_client

    assert settings.twilio_auth_token is not None and settings.twilio_account_sid is not None
    http = AsyncTwilioHttpClient(timeout=settings.factory_timeout_seconds)
    client = Client(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        http_client=http,
    )
    configure_client(client, settings.twilio_api_base_url)
    out: list[Check] = []
    try:
        try:
            await client.api.v2010.accounts(settings.twilio_account_sid).fetch_async()
        except TwilioRestException as exc:
            return [
                Check(
                    "Twilio credentials",
                    False,
                    f"Twilio answered {exc.status} (code {exc.code})",
                    "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
                )
            ]
        out.append(Check("Twilio credentials", True, "the account SID and auth token work"))
        numbers = await client.incoming_phone_numbers.list_async(
            phone_number=settings.twilio_from_number, limit=1
        )
        if numbers:
            out.append(Check("TWILIO_FROM_NUMBER", True, "the number belongs to the account"))
        else:
            out.append(
                Check(
                    "TWILIO_FROM_NUMBER",
                    False,
                    "not a phone number of this account",
                    "use a number listed in the Twilio console under Phone Numbers",
                )
            )
    except (TwilioException, OSError) as exc:
        out.append(
            Check("Twilio", False, f"not reachable ({type(exc).__name__})", "check the network")
        )
    finally:
        await http.close()
    return out


async def run_live_checks(settings: Settings) -> list[Check]:
    """Run every live check against the configured services, Discord first.

    Parameters
    ----------
    settings:
        The bridge's settings (already validated).

    Returns
    -------
    list[Check]
        One entry per line; the configuration is usable only when every ``ok`` is true.
    """
    checks = await _discord_checks(settings)
    checks.append(await _factory_check(settings))
    checks.extend(await _twilio_checks(settings))
    return checks
