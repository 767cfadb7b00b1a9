"""Optional features that attach themselves to a :class:`~bot.app.BridgeApp`.

Each feature is an object with any of ``setup_client(client)`` (called in discord.py's
``setup_hook``: add commands and DynamicItems), ``start()`` and ``stop()``, appended to
``app.features``. Keeping them here keeps :mod:`bot.app` small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.app import BridgeApp

__all__ = ["attach_features"]


def attach_features(app: BridgeApp) -> None:
    """Attach every feature the settings enable to ``app`` (order matters: see comments)."""
    # --- slash commands (/factory …) ------------------------------------------------------
    from bot.discord.commands import SlashCommands

    app.features.append(SlashCommands(app.settings))
    # --- smart batching ---------------------------------------------------------------------
    if app.settings.batch_enabled:
        from bot.batching_runtime import BatchingRuntime

        batching = BatchingRuntime(app.bridge, app.notifier)
        app.bridge.batcher = batching
        app.features.append(batching)
    # --- escalation ladder ------------------------------------------------------------------
    if app.settings.escalation_enabled:
        from bot.ladder_runtime import attach_ladder

        attach_ladder(app)  # bridge.escalation, notifier.next_step, app.scheduler (shared)
    # --- WebSocket intake and reconciliation ------------------------------------------------
    # Last on purpose: the reconciler's start() rebuilds the task → message map (before any
    # posting: the processor starts after every feature) once the other features are up.
    from bot.reconcile import Reconciler

    reconciler = Reconciler(
        app.bridge,
        app.client,
        interval_seconds=app.settings.reconcile_interval_seconds,
        history_limit=app.settings.reconcile_history_limit,
    )
    app.features.append(reconciler)
    if app.settings.factory_ws_url:
        from bot.factory.ws_intake import WebSocketIntake

        app.features.append(
            WebSocketIntake(
                url=app.settings.factory_ws_url,
                api_key=app.settings.factory_api_key.get_secret_value(),
                store=app.store,
                on_stored=app.processor.submit,
                on_subscribed=reconciler.trigger,
                reconnect_base_seconds=app.settings.factory_ws_reconnect_base_seconds,
            )
        )
    return None
