"""Where discord.py sends its REST requests and opens its Gateway websocket.

discord.py keeps both addresses in class attributes: every REST URL is built as
``discord.http.Route.BASE + path`` when a request is made, and a client that has no
resume URL yet connects to ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` (a
:class:`yarl.URL`, to which discord.py appends ``?v=10&encoding=json&compress=...``).

The settings ``DISCORD_API_BASE_URL`` and ``DISCORD_GATEWAY_URL`` let an operator point the
bot at a REST proxy (for example one that shares rate limits between processes); the test
suite and the sandbox point them at :class:`sandbox.discord_emulator.DiscordEmulator`.
"""

from __future__ import annotations

import discord.gateway
import discord.http
import yarl

__all__ = ["DEFAULT_API_BASE_URL", "DEFAULT_GATEWAY_URL", "point_discord_at"]

#: Discord's production REST base (API version 10), as discord.py 2.7 ships it.
DEFAULT_API_BASE_URL = "https://discord.com/api/v10"
#: Discord's production Gateway address.
DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg"


def point_discord_at(api_base_url: str, gateway_url: str) -> None:
    """Make every discord.py client in this process use the given REST base and Gateway.

    Parameters
    ----------
    api_base_url:
        REST base including the version, without a trailing slash, e.g.
        ``https://discord.com/api/v10`` or ``http://127.0.0.1:PORT/api/v10``.
    gateway_url:
        Websocket address of the Gateway, e.g. ``wss://gateway.discord.gg``. discord.py adds
        the ``v``/``encoding``/``compress`` query itself.

    Notes
    -----
    This changes process-wide class attributes (``Route.BASE`` and
    ``DiscordWebSocket.DEFAULT_GATEWAY``); call it before the client logs in. A session that
    has already received READY resumes at the ``resume_gateway_url`` Discord sent, not here.
    """
    discord.http.Route.BASE = api_base_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
