"""Wiring of the two-way phone (README "Phone"): the "phone" slot of ``bot.wiring.attach_features``
calls :func:`attach_phone` and adds the desk to the app's features.

The desk learns a roster member's roles from Discord (``GET /guilds/{id}/members/{user}``
through discord.py's HTTP client) and edits the incident report after each next-person call
(``PATCH /channels/{alerts}/messages/{id}``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord

from bot.pager.inbound import Relay, TwilioWebhooks
from bot.pager.phone_desk import PhoneDesk

if TYPE_CHECKING:
    from aiohttp import web

    from bot.bridge import Bridge
    from bot.ladder import LadderRuntime
    from bot.roster import Roster
    from bot.settings import Settings

__all__ = ["attach_phone"]

log = logging.getLogger(__name__)


def attach_phone(
    *,
    settings: Settings,
    bridge: Bridge,
    roster: Roster,
    http: discord.http.HTTPClient,
    ladder: LadderRuntime | None,
    clock: Callable[[], datetime],
    routes: web.Application,
    relay: Relay | None = None,
) -> PhoneDesk:
    """Build the :class:`PhoneDesk` and add the Twilio routes to ``routes`` (the intake's
    aiohttp app, before it starts); the desk, for the caller to start and stop with the
    app's features (its ``start`` resumes next-person calls).

    Parameters
    ----------
    settings:
        ``BRIDGE_PUBLIC_URL`` and ``TWILIO_AUTH_TOKEN`` must be set (the caller checks).
    bridge, roster:
        The bridge (actions, store) and the operators.
    http:
        The bot's discord.py HTTP client (member roles, the incident report's edit).
    ladder:
        The escalation runtime, ``None`` when ``ESCALATION_ENABLED=false``.
    clock:
        Current aware UTC time.
    routes:
        Where the three routes go.
    relay:
        Hands the routes' requests to the leader while this process stands by (replicas on
        one PostgreSQL database, README "Production"); ``None``: one process.
    """
    assert settings.bridge_public_url is not None and settings.twilio_auth_token is not None

    async def member_roles(discord_user_id: int) -> frozenset[int] | None:
        try:
            member: Any = await http.get_member(settings.discord_guild_id, discord_user_id)
        except Exception as exc:  # not a member (404), Discord down: no role
            log.warning("roles of Discord user %s unknown: %r", discord_user_id, exc)
            return None
        return frozenset(int(r) for r in member.get("roles", []))

    async def report_changed(task_id: str) -> None:
        """Edit the task's incident report (its ``incident`` delivery's message) anew."""
        if ladder is None:
            return
        rows = await ladder.ladder_store.deliveries(
            task_id=task_id, channels=["incident"], statuses=["sent"]
        )
        tracked = await bridge.store.get_task(task_id)
        message_id = rows[-1].detail.get("message_id") if rows else None
        if tracked is None or not message_id:
            return
        content = (await ladder.incident_text(tracked))[:2000]
        await http.edit_message(
            settings.alerts_channel_id,
            int(message_id),
            params=discord.http.handle_message_parameters(content=content),
        )

    desk = PhoneDesk(
        bridge=bridge,
        roster=roster,
        member_roles=member_roles,
        ladder=ladder,
        clock=clock,
        call_next_after_seconds=settings.escalation_call_next_after_seconds,
        report_changed=report_changed,
    )
    TwilioWebhooks(
        public_url=settings.bridge_public_url,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        desk=desk,
        relay=relay,
    ).attach(routes)
    return desk
