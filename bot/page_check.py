"""``factory-bridge test-page NAME`` (README "Phone"): one test SMS and one test DM to a roster operator.

For checking numbers and permissions before a real incident: the SMS goes through the same
:class:`bot.pager.twilio_pager.TwilioPager` as the ladder's, the DM through Discord's REST API
(``POST /users/@me/channels`` then ``POST /channels/{id}/messages``, discord.py's HTTP client,
no gateway). Each line printed says what Twilio and Discord answered; nothing is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import discord

from bot.discord.endpoints import point_discord_at
from bot.roster import Operator, Roster
from bot.settings import Settings
from escalation.ports import DeliveryError

__all__ = ["TEST_TEXT", "find_operator", "send_test_page"]

#: What the test SMS and DM say (plain ASCII: an SMS segment).
TEST_TEXT = "Factory Bridge test page: this number/account will get SLA pages. No action needed."


def find_operator(roster: Roster, name: str) -> Operator | None:
    """The roster operator named ``name`` (case-insensitive), or ``None``."""
    wanted = name.strip().casefold()
    return next((o for o in roster.operators if o.name.casefold() == wanted), None)


async def _sms(settings: Settings, operator: Operator) -> tuple[bool, str]:
    from bot.pager.twilio_pager import TwilioPager

    if not settings.twilio_configured or settings.twilio_auth_token is None:
        return (
            False,
            "SMS: Twilio is not configured (TWILIO_ACCOUNT_SID, _AUTH_TOKEN, _FROM_NUMBER)",
        )
    if not operator.phone:
        return False, f"SMS: {operator.name} has no phone in the roster"
    pager = TwilioPager(
        settings.twilio_account_sid or "",
        settings.twilio_auth_token.get_secret_value(),
        settings.twilio_from_number or "",
        base_url=settings.twilio_api_base_url,
    )
    try:
        sid = await pager.send_sms(operator.phone, TEST_TEXT)
    except DeliveryError as exc:
        return False, f"SMS to {operator.phone}: Twilio refused: {exc}"
    finally:
        await pager.aclose()
    return True, f"SMS to {operator.phone}: Twilio accepted it ({sid})"


async def _dm(settings: Settings, operator: Operator) -> tuple[bool, str]:
    if operator.discord_user_id is None:
        return False, f"DM: {operator.name} has no discord_user_id in the roster"
    point_discord_at(settings.discord_api_base_url, settings.discord_gateway_url)
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        await http.static_login(settings.discord_bot_token.get_secret_value())
        channel: Any = await http.start_private_message(operator.discord_user_id)
        message: Any = await http.send_message(
            int(channel["id"]), params=discord.http.handle_message_parameters(content=TEST_TEXT)
        )
    except discord.LoginFailure:
        return False, "DM: Discord rejected DISCORD_BOT_TOKEN (401)"
    except discord.HTTPException as exc:
        return False, f"DM to {operator.discord_user_id}: Discord answered {exc.status} {exc.text}"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return (
            False,
            f"DM to {operator.discord_user_id}: cannot reach Discord at "
            f"{settings.discord_api_base_url}: {exc or type(exc).__name__}",
        )
    finally:
        await http.close()
    return True, f"DM to {operator.discord_user_id}: Discord accepted it (message {message['id']})"


async def send_test_page(
    settings: Settings, roster: Roster, name: str, write: Callable[[str], None] = print
) -> int:
    """Send the test SMS, then the DM, to ``name``; print one line for each as soon as it is
    done, whatever the other did (a step that fails, Discord or Twilio unreachable included,
    prints a ✗ line); the exit code: 0 when both were accepted, 1 otherwise, 2 for a name not
    on the roster."""
    operator = find_operator(roster, name)
    if operator is None:
        known = ", ".join(o.name for o in roster.operators) or "nobody"
        write(f"{name!r} is not on the roster (BRIDGE_ROSTER_FILE lists: {known})")
        return 2
    steps: list[tuple[str, Callable[[Settings, Operator], Awaitable[tuple[bool, str]]]]] = [
        ("SMS", _sms),
        ("DM", _dm),
    ]
    passed = True
    for label, step in steps:
        try:
            ok, line = await step(settings, operator)
        except Exception as exc:  # any failure is this step's ✗ line, never a traceback
            ok, line = False, f"{label}: failed: {type(exc).__name__}: {exc}"
        write(f"{'✓' if ok else '✗'} {line}")
        passed = passed and ok
    return 0 if passed else 1
