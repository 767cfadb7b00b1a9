"""Optional features that attach themselves to a :class:`~bot.app.BridgeApp`.

Each feature is an object with any of ``setup_client(client)`` (called in discord.py's
``setup_hook``: add commands and DynamicItems), ``start()`` and ``stop()``. Keeping them here
keeps :mod:`bot.app` small and lets tests build an app with only what they need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.app import BridgeApp

__all__ = ["attach_features"]


def attach_features(app: BridgeApp) -> None:
    """Attach every feature the settings enable to ``app``."""
    return None
