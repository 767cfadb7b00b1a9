"""The features :func:`bot.app.build_app` attaches, by the settings that enable them: part of
the composition root (:mod:`bot.app` builds the core objects, this module the optional ones).

A Discord feature is a cog appended to ``app.client.initial_cogs`` (loaded in discord.py's
``setup_hook``; its ``cog_load``/``cog_unload`` start and stop what it runs); any other
feature is an object with ``start()`` and ``stop()`` appended to ``app.features``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.discord.cogs import BatchingCog, EscalationCog
from bot.discord.ladder_output import DiscordMessenger
from bot.ladder import LadderRuntime
from escalation.ports import Pager

if TYPE_CHECKING:
    from bot.bridge_app import BridgeApp

__all__ = ["attach_features"]

log = logging.getLogger(__name__)


def attach_features(app: BridgeApp) -> None:
    """Attach every feature the settings enable to ``app`` (order matters: see comments)."""
    # --- slash commands (/factory …) ------------------------------------------------------
    from bot.discord.factory_cog import FactoryCog

    app.client.initial_cogs.append(FactoryCog(app.client))
    # --- smart batching ---------------------------------------------------------------------
    if app.settings.batch_enabled:
        from bot.discord.batching_runtime import BatchingRuntime

        batching = BatchingRuntime(app.bridge, app.notifier)
        app.bridge.batcher = batching
        app.client.initial_cogs.append(BatchingCog(app.client, batching))
    # --- Twilio (the ladder's SMS and calls) and the bridge watching itself ------------------
    from bot.self_watch import SelfWatch

    watch = SelfWatch(
        disconnected_since=lambda: app.client.disconnected_since,
        pager=None,
        roster=app.roster,
        store=app.store,
        after_seconds=app.settings.self_alert_after_seconds,
        post_alert=lambda text: app.notifier.send(app.settings.alerts_channel_id, text),
        clock=app.clock,
    )
    app.pager = watch.pager = _make_pager(app, watch.observe_twilio)
    app.features.append(watch)
    # --- escalation ladder ------------------------------------------------------------------
    if app.settings.escalation_enabled:
        _attach_ladder(app)  # bridge.escalation, notifier.next_step, app.scheduler (shared)
    # --- the phone that acts: Twilio webhooks (BRIDGE_PUBLIC_URL + TWILIO_*, README "Phone") ------
    if app.settings.bridge_public_url and app.pager is not None:
        _attach_phone(app)
    # --- webhook registration (BRIDGE_PUBLIC_URL, contract §1.5) ---------------------------
    if app.settings.bridge_public_url:
        from bot.factory.webhooks import WebhookRegistrar, WebhookRegistration

        app.features.append(
            WebhookRegistration(
                WebhookRegistrar(
                    app.factory,
                    public_url=app.settings.bridge_public_url,
                    secret=app.settings.factory_webhook_secret.get_secret_value(),
                )
            )
        )
    # --- planner statistics on a PostgreSQL server without autovacuum (bot.store.statistics) --
    from bot.store.statistics import PlannerStatistics

    app.features.append(
        PlannerStatistics(app.store.db, interval_seconds=app.settings.database_analyze_seconds)
    )
    # --- channels the bridge cannot use: periodic retry (DISCORD_CHANNEL_RETRY_SECONDS) -----
    app.features.append(app.access)
    # --- dead man's switch (HEARTBEAT_URL) ----------------------------------------------------
    if app.settings.heartbeat_url:
        from bot.heartbeat import Heartbeat

        app.features.append(
            Heartbeat(
                app.settings.heartbeat_url,
                interval_seconds=app.settings.heartbeat_interval_seconds,
                checks=app.health,
                on_success=app.metrics.heartbeat_last_success.set,
                on_start=app.metrics.heartbeat_last_success.set,
            )
        )
    # --- WebSocket intake and reconciliation ------------------------------------------------
    # Last on purpose: the reconciler's start() rebuilds the task → message map (before any
    # posting: the processor starts after every feature) once the other features are up.
    from bot.reconcile import Reconciler

    reconciler = Reconciler(
        app.bridge,
        app.client,
        interval_seconds=app.settings.reconcile_interval_seconds,
        history_limit=app.settings.reconcile_history_limit,
        scheduler=app.scheduler,
        # the timers of overdue steps before the background listing of every pending task
        first_pass_after=app.escalation.armed if app.escalation is not None else None,
    )
    app.features.append(reconciler)
    if app.settings.factory_ws_url:
        from bot.factory.ws_intake import WebSocketIntake

        app.features.append(
            WebSocketIntake(
                url=app.settings.factory_ws_url,
                api_key=app.settings.factory_api_key.get_secret_value(),
                token=(
                    app.settings.factory_ws_token.get_secret_value()
                    if app.settings.factory_ws_token is not None
                    else None
                ),
                store=app.store,
                on_stored=app.on_stored,
                on_subscribed=reconciler.trigger,
                reconnect_base_seconds=app.settings.factory_ws_reconnect_base_seconds,
                on_outcome=app.metrics.observe_event,
                alert=watch.announce,  # a refused WebSocket: once in the alerts channel
            )
        )
    # --- the factory's event bus: Redis Streams (FACTORY_REDIS_URL, contract §7.7) ----------
    if app.settings.factory_redis_url is not None:
        from bot.factory.redis_intake import RedisStreamIntake

        # on every replica, as the HTTP intake: standbys store what they read, the leader
        # handles it (one consumer group, each process its own consumer)
        app.intakes.append(
            RedisStreamIntake(
                url=app.settings.factory_redis_url.get_secret_value(),
                store=app.store,
                on_stored=app.on_stored,
                streams=app.settings.factory_redis_streams,
                consumer=app.settings.factory_redis_consumer,
                batch_size=app.settings.factory_redis_batch_size,
                claim_idle_seconds=app.settings.factory_redis_claim_idle_seconds,
                reconnect_base_seconds=app.settings.factory_redis_reconnect_base_seconds,
                on_outcome=app.metrics.observe_event,
            )
        )
    return None


def _make_pager(app: BridgeApp, observe: Callable[[str, str], None]) -> Pager | None:
    """Twilio SMS and calls from the ``TWILIO_*`` settings, or ``None`` without them; each
    request's end goes to the metrics and to ``observe``."""
    settings = app.settings
    if not settings.twilio_configured:
        return None
    from bot.pager.twilio_pager import TwilioPager

    assert settings.twilio_auth_token is not None

    def both(kind: str, status: str) -> None:
        app.metrics.observe_twilio(kind, status)
        observe(kind, status)

    return TwilioPager(
        settings.twilio_account_sid or "",
        settings.twilio_auth_token.get_secret_value(),
        settings.twilio_from_number or "",
        base_url=settings.twilio_api_base_url,
        observe=both,
        public_url=settings.bridge_public_url,
    )


def _attach_phone(app: BridgeApp) -> None:
    """SMS replies, keypresses and call statuses on the intake's HTTP port (the "phone" slot
    of :func:`attach_features`; README "Phone"): :func:`bot.pager.wiring.attach_phone`."""
    from bot.pager.wiring import attach_phone

    if not app.store.db.is_sqlite:  # replicas may share the database: standbys relay
        from bot.leadership.relay import LeaderRelay

        app.relay = LeaderRelay(lease=app.lease, store=app.store, own_url=app.settings.internal_url)
    desk = attach_phone(
        settings=app.settings,
        bridge=app.bridge,
        roster=app.roster,
        http=app.client.http,
        ladder=app.escalation,
        clock=app.clock,
        routes=app.intake.app,
        relay=app.relay,
    )
    app.features.append(desk)


def _attach_ladder(app: BridgeApp) -> LadderRuntime:
    """Build the ladder for ``app`` and wire it in (the "escalation ladder" slot of :func:`attach_features`).

    Sets ``app.bridge.escalation`` and ``app.notifier.next_step``, loads the runtime with an
    :class:`~bot.discord.cogs.EscalationCog` (its ``start``/``stop`` run with the bot's cogs)
    and shares ``app.scheduler`` (one APScheduler per process) when another feature made one.
    """
    pager = app.pager
    if pager is None:
        log.warning("Twilio is not configured: SMS and call steps will be recorded as skipped")
    runtime = LadderRuntime(
        bridge=app.bridge,
        messenger=DiscordMessenger(app.notifier),
        pager=pager,
        scheduler=app.scheduler,
        step_taken=app.metrics.step_taken,
    )
    if app.scheduler is None:
        app.scheduler = runtime.scheduler
    app.bridge.escalation = runtime
    app.notifier.next_step = runtime.next_step_for
    app.escalation = runtime
    app.client.initial_cogs.append(EscalationCog(app.client, runtime))
    return runtime
