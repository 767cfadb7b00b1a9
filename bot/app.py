"""Composition root: :func:`build_app` builds a :class:`~bot.bridge_app.BridgeApp` (the core
objects) and attaches every feature the settings enable (:mod:`bot.wiring`);
``factory-bridge run`` calls :func:`run_service`. The sandbox and the tests build apps here.
"""

from __future__ import annotations

from typing import Any

from bot.bridge_app import EXIT_DEPOSED, BridgeApp
from bot.settings import Settings
from bot.wiring import attach_features

__all__ = ["EXIT_DEPOSED", "BridgeApp", "build_app", "run_service"]


def build_app(settings: Settings, **kwargs: Any) -> BridgeApp:
    """Build the app with every feature attached (commands, batching, escalation, WebSocket)."""
    app = BridgeApp(settings, **kwargs)
    attach_features(app)
    return app


async def run_service(settings: Settings) -> int:
    """``factory-bridge run``: the real service until SIGTERM/SIGINT; returns the exit status
    (0, or :data:`EXIT_DEPOSED` after losing the leader lease)."""
    app = build_app(settings)
    await app.run_until_stopped()
    return app.exit_code
