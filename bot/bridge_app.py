"""The bridge process: :class:`BridgeApp` builds the adapters, wires them into the bridge and
runs them as the leader or a standby (README "Production"); :func:`bot.app.build_app` makes one
with every feature the settings enable (:mod:`bot.wiring`), for ``factory-bridge run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError

from bot.bridge import Bridge
from bot.channel_access import ChannelAccess
from bot.discord.client import BridgeBot
from bot.discord.cogs import TaskCog
from bot.discord.embeds import discord_timestamp
from bot.discord.endpoints import point_discord_at
from bot.discord.ladder_output import DiscordMessenger
from bot.discord.notifier import DiscordNotifier
from bot.discord.pacing import ChannelPacer
from bot.factory.client import FactoryClient, RetryPolicy
from bot.factory.events import FactoryEvent
from bot.factory.intake import EventIntake
from bot.factory.processor import EventProcessor
from bot.ladder import LadderRuntime
from bot.leadership import Leadership, Lease, SQLiteFileLock, holder_id
from bot.leadership.relay import LeaderRelay
from bot.metrics import BridgeMetrics
from bot.pipelines import PipelineNames
from bot.roster import load_roster
from bot.settings import Settings
from bot.sla_events import FactorySlaAlerts
from bot.store import Store
from escalation.ports import Pager

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

__all__ = ["EXIT_DEPOSED", "BridgeApp"]

log = logging.getLogger(__name__)

#: Exit status of a leader that lost its lease (EX_TEMPFAIL): its supervisor restarts it, and
#: it comes back as a standby with nothing left over in memory (README "Production").
EXIT_DEPOSED = 75
#: Young-generation threshold of the garbage collector after start-up (Python's default: 700
#: allocations net of deallocations). See :func:`_freeze_startup_objects`.
GC_YOUNG_THRESHOLD = 5_000


class BridgeApp:
    """The whole bridge: Discord client, HTTP intake, event processor, store.

    Parameters
    ----------
    settings:
        Validated settings.
    clock:
        Current aware UTC time (tests inject one).
    lease_clock:
        Monotonic seconds for the leader lease (:class:`bot.leadership.Lease`).

    Roles (README "Production"): every process serves ``POST /events`` (stored) and ``GET /healthz``; the
    one holding the leader lease also holds the Discord session, the ladder, batching,
    reconciliation and event processing (:meth:`_lead`). A standby takes over when the lease
    lapses; a leader that loses it stops and exits with :data:`EXIT_DEPOSED`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lease_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock
        point_discord_at(settings.discord_api_base_url, settings.discord_gateway_url)
        self.store = Store(settings.database_url)
        self.roster = load_roster(settings.bridge_roster_file)
        self.factory = FactoryClient(
            settings.factory_api_url,
            settings.factory_api_key.get_secret_value(),
            timeout_seconds=settings.factory_timeout_seconds,
            retry=RetryPolicy(base_delay_seconds=settings.factory_retry_base_seconds),
            max_concurrent_requests=settings.factory_max_concurrent_requests,
        )
        self.bridge = Bridge(
            settings=settings,
            store=self.store,
            factory=self.factory,
            roster=self.roster,
            clock=clock,
            time_text=discord_timestamp,
        )
        self.client = BridgeBot(
            self.bridge,
            guild_id=settings.discord_guild_id,
            guild_ready_timeout=settings.discord_guild_ready_timeout_seconds,
        )
        self.client.initial_cogs.append(TaskCog(self.client))
        self.notifier = DiscordNotifier(
            self.client,
            settings,
            clock=clock,
            pacer=ChannelPacer(
                max_messages=settings.discord_channel_rate_limit,
                per_seconds=settings.discord_channel_rate_window_seconds,
            ),
            edit_pacer=ChannelPacer(
                max_messages=settings.discord_edit_rate_limit,
                per_seconds=settings.discord_channel_rate_window_seconds,
            ),
            old_edit_backoff_seconds=settings.discord_old_edit_backoff_seconds,
        )
        self.bridge.attach_notifier(self.notifier)
        self.notifier.on_edit_fault = self.bridge.edit_failed
        self.notifier.event_posts.leader_check = self.store.check_leader
        #: channels the bridge cannot use: alert, /healthz, periodic retry (bot.channel_access)
        self.access = ChannelAccess(
            store=self.store,
            roster=self.roster,
            send=self.notifier.send,
            send_dm=self.notifier.send_dm,
            alerts_channel_id=settings.alerts_channel_id,
            retry=self.bridge.show_again,
            interval_seconds=settings.discord_channel_retry_seconds,
        )
        self.bridge.access = self.access
        self.notifier.sla_alerts = FactorySlaAlerts(
            store=self.store,
            roster=self.roster,
            settings=settings,
            messenger=DiscordMessenger(self.notifier),
            clock=clock,
        ).handle
        self.metrics = BridgeMetrics(
            open_tasks=self.store.open_task_counts,
            queue_depth=self.store.count_unprocessed_events,
            task_timing=self._task_timing,
            clock=clock,
        )
        self.store.add_audit_observer(self.metrics.observe_audit)
        self.factory.add_response_hook(self.metrics.observe_factory_response)
        self.metrics.instrument_discord(self.client.http)
        self.pipeline_names = PipelineNames(self._pipeline_name)
        self.notifier.pipeline_names = self.pipeline_names
        self.processor = EventProcessor(self.store, self.bridge.handle_event)
        self.intake = EventIntake(
            store=self.store,
            secret=settings.factory_webhook_secret.get_secret_value(),
            previous_secret=(
                settings.factory_webhook_secret_previous.get_secret_value()
                if settings.factory_webhook_secret_previous is not None
                else None
            ),
            on_stored=self.on_stored,
            health=self.health,
            body_timeout_seconds=settings.bridge_http_body_timeout_seconds,
            counters=self.processor.counters,
            on_outcome=self.metrics.observe_event,
            metrics=self.metrics.render,
            advisory=self.advisory_health,
            describe=self.describe,
        )
        db = self.store.db
        sqlite_file = make_url(db.url).database if db.is_sqlite else None
        #: one process per SQLite file (a second one refuses to start)
        self._file_lock = (
            SQLiteFileLock(sqlite_file) if sqlite_file not in (None, "", ":memory:") else None
        )
        self.lease = Lease(
            db,
            holder=holder_id(),
            lease_seconds=settings.bridge_leader_lease_seconds,
            clock=lease_clock,
            exclusive=db.is_sqlite,  # the file lock already makes this process the only one
        )
        db.fence = self.lease.fence
        self.leadership = Leadership(
            self.lease,
            on_elected=self._lead,
            on_deposed=self._deposed,
            on_failed=self._lead_failed,
            on_tick=self.processor.rescan,
            on_role=self.metrics.set_leader,
        )
        #: the process's exit status (:data:`EXIT_DEPOSED` after losing the lease)
        self.exit_code = 0
        self._led = False  # _lead began: the leader's parts must be stopped
        self._lead_error: BaseException | None = None
        self.features: list[Any] = []
        #: intakes every replica runs, leader or standby (the Redis Streams consumer: the
        #: replicas share the entries as one consumer group, README "Production"); started
        #: with the HTTP intake
        self.intakes: list[Any] = []
        #: Twilio (set by the features: ``_make_pager``); ``None`` without TWILIO_* settings
        self.pager: Pager | None = None
        #: the process's APScheduler, once a feature made one (the ladder's; shared)
        self.scheduler: AsyncIOScheduler | None = None
        #: the escalation ladder (``ESCALATION_ENABLED``), attached by :mod:`bot.wiring`
        self.escalation: LadderRuntime | None = None
        #: hands requests only the leader can answer (Twilio webhooks) to it while this
        #: process stands by; ``None`` on SQLite (one process) or without such routes
        self.relay: LeaderRelay | None = None
        self._client_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._started = False

    def on_stored(self, event_id: str, event: FactoryEvent) -> None:
        """An event was stored (webhook or WebSocket): learn the pipeline names it carries,
        then hand it to the processor — on the leader only; a standby's events wait in the
        store for the leader (:meth:`EventProcessor.rescan`, or its start at a takeover)."""
        self.pipeline_names.learn_from_event(event)
        if self.lease.token is not None:
            self.processor.submit(event_id, event)

    def describe(self) -> dict[str, Any]:
        """``/healthz`` ``data``: this process's ``role`` and ``holder``, the lease's ``token``."""
        seen = self.lease.seen
        return {
            "role": self.leadership.role,
            "holder": self.lease.holder,
            "lease_token": self.lease.token or (seen.token if seen is not None else None),
        }

    async def _task_timing(self, task_id: str) -> tuple[str, datetime] | None:
        """``(priority, created_at)`` of a stored task (metrics' time to decision)."""
        tracked = await self.store.get_task(task_id)
        if tracked is None:
            return None
        return tracked.task.priority.value, tracked.task.created_at

    async def _pipeline_name(self, pipeline_id: str) -> str:
        return (await self.factory.get_pipeline(pipeline_id)).name

    async def health(self) -> dict[str, bool | str]:
        """Parts of ``/healthz``: the Discord session, the database, and start-up done.

        ``discord_channels`` is ``"down: <reason>"`` while a channel cannot be used
        (:meth:`bot.channel_access.ChannelAccess.health`).
        ``startup`` is up once every feature started (the start-up reconciliation took its
        snapshot of the factory's pending tasks) and the event processor runs.
        ``database_write`` commits a heartbeat row (:meth:`bot.store.Store.check_write`): a
        database that answers reads but takes no write (disk full, read-only) is down, with
        the reason as the part's value.
        """
        write_problem = await self.store.check_write()
        if write_problem is not None:
            log.error("health: the database takes no write: %s", write_problem)
        if not self._led:  # a standby is healthy without Discord (README "Production")
            return {
                "database": await self.store.ping(),
                "database_write": write_problem or True,
                "startup": self._started,
                "intake": self.intake.port is not None,
            }
        return {
            "discord": self.client.session_ready,
            "discord_channels": self.access.health(),
            "database": await self.store.ping(),
            "database_write": write_problem or True,
            "startup": self._started,
            "intake": self.intake.port is not None,
        }

    def advisory_health(self) -> dict[str, bool | str]:
        """Parts of ``/healthz`` that do not fail it: each feature's ``advisory_health()``
        (the Redis Streams intake: ``{"redis": True | "<why not>"}``)."""
        parts: dict[str, bool | str] = {}
        for feature in [*self.intakes, *self.features]:
            check = getattr(feature, "advisory_health", None)
            if check is not None:
                parts.update(check())
        return parts

    async def start(self) -> None:
        """Lock an SQLite file, create the schema, start intake, then lead or stand by.

        A process that gets the leader lease at once (always, on SQLite) leads before this
        returns (:meth:`_lead`); otherwise it returns as a standby and the lease loop makes it
        lead when the lease lapses.

        Raises
        ------
        bot.leadership.DatabaseInUse
            When another process uses the same SQLite file.
        discord.LoginFailure
            When ``DISCORD_BOT_TOKEN`` is refused.
        OSError
            When the HTTP port cannot be bound.
        """
        if self._file_lock is not None:
            self._file_lock.acquire()
        await self._create_schema()
        if self._stopping.is_set():  # stopped while waiting for the database
            return
        await self.intake.start(self.settings.bridge_http_host, self.settings.bridge_http_port)
        for intake in self.intakes:
            await intake.start()
        await self.leadership.start()
        if self.leadership.elected is not None:
            # a stop (SIGTERM) while Discord does not answer the login stops the waiting too
            stopping = asyncio.ensure_future(self._stopping.wait())
            try:
                waiting = {self.leadership.elected, stopping}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            if self._lead_error is not None:
                raise self._lead_error
        if not self._led:
            self._started = True
            log.info("standby: serving POST /events; the leader handles them")

    async def _create_schema(self) -> None:
        """Migrate the database (:meth:`bot.store.Store.create_schema`); a PostgreSQL server
        that cannot be reached yet (restarting, failing over: the leader that it deposed is
        being restarted at the same time) is waited for, 1 s doubling to 30 s, logged, instead
        of exiting and being restarted until the supervisor gives up (systemd's start limit).

        Returns without a schema when a stop is asked for while waiting (:meth:`start` then
        starts nothing). Raises ``sqlalchemy.exc.SQLAlchemyError``: an SQLite error, a refused
        migration.
        """
        delay = 1.0
        while True:
            try:
                await self.store.create_schema()
                return
            except (OperationalError, InterfaceError) as exc:
                if self.store.db.is_sqlite:
                    raise
                if self._stopping.is_set():
                    return
                inner = getattr(exc, "orig", None) or exc
                reason = (str(inner).strip().splitlines() or [type(inner).__name__])[0]
                log.warning("database unreachable (%s); trying again in %.0f s", reason, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, 30.0)

    async def _lead(self) -> None:
        """Become the leader: log in to Discord, start the features, process events.

        Logging in runs the bot's ``setup_hook``: the cogs load (batching and the ladder start
        there: the ladder rebuilds its timers from the store) and the slash commands are
        synced; the other features (reconciliation among them) start once the gateway session
        is ready; then the processor reads every event left unprocessed (also those a standby
        stored). Cached task rows are forgotten, and an earlier leader's posting claims
        released, first."""
        self._led = True
        self._started = False
        self.store.forget_cached_tasks()
        await self.store.release_posting()  # a deposed leader's claims are posted by us now
        await self.client.login(self.settings.discord_bot_token.get_secret_value())
        self._client_task = asyncio.create_task(self._connect(), name="discord-gateway")
        await self._wait_ready()
        for feature in self.features:
            hook = getattr(feature, "start", None)
            if hook is not None:
                await hook()
        self.processor.start()
        if self.escalation is not None:  # armed while the gateway connected
            await self.escalation.armed()
        if self.relay is not None:  # the standbys hand Twilio's webhooks here from now on
            await self.relay.announce()
        self._started = True
        # a standby froze its start-up long before it took over; what leading built (the
        # ladder's timers and history for every open task) lives as long, so freeze it too
        _freeze_startup_objects()
        log.info("leader: Discord session ready, timers armed, processing events")

    def _deposed(self, reason: str) -> None:
        """The lease was lost: stop everything and exit with :data:`EXIT_DEPOSED` (a closed
        discord.py client cannot log in again, and what a deposed leader holds in memory is
        suspect: a fresh process starts clean as a standby). Fenced writes already fail."""
        self.exit_code = EXIT_DEPOSED
        self.request_stop()

    def _lead_failed(self, exc: BaseException) -> None:
        """Taking over failed (e.g. Discord refused the login): stop so another bridge leads."""
        self._lead_error = exc
        if self.exit_code == 0:
            self.exit_code = 1
        self.request_stop()

    async def _connect(self) -> None:
        try:
            await self.client.connect(reconnect=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Discord gateway connection ended with an error")
            self._stopping.set()

    async def _wait_ready(self, timeout: float = 60.0) -> None:
        ready = asyncio.create_task(self.client.ready_event.wait())
        assert self._client_task is not None
        done, _ = await asyncio.wait(
            {ready, self._client_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if self._client_task in done:
                self._client_task.result()  # re-raise the connection error
            raise TimeoutError(f"Discord session not ready after {timeout:.0f}s")

    async def stop(self) -> None:
        """Graceful shutdown: stop intake first (no new events), then the rest (a takeover
        still under way, e.g. waiting for Discord to answer the login, is cancelled)."""
        elected = self.leadership.elected
        if elected is not None and not elected.done():
            elected.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await elected
        await self.intake.stop()
        for intake in reversed(self.intakes):
            with contextlib.suppress(Exception):
                await intake.stop()
        await self.processor.stop()
        if self._led:
            for feature in reversed(self.features):
                hook = getattr(feature, "stop", None)
                if hook is not None:
                    with contextlib.suppress(Exception):
                        await hook()
            await self.client.unload_cogs()  # their cog_unload stops batching and the ladder
        if self.pager is not None:
            with contextlib.suppress(Exception):
                await self.pager.aclose()
        if self.relay is not None:
            await self.relay.aclose()
        await self.bridge.stop()  # background re-sends: what they carry stays in flight
        await self.notifier.feed.close()  # waiting feed lines: posted within a short timeout
        await self.notifier.edits.close()  # waiting edits: the next start renders anew
        await self.client.close()
        if self._client_task is not None:
            self._client_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._client_task
        # the lease last: a standby takes over once this process has stopped acting
        await self.leadership.stop(release=True)
        await self.factory.aclose()
        self.metrics.close()
        await self.store.close()
        if self._file_lock is not None:
            self._file_lock.release()

    def request_stop(self) -> None:
        """Ask :meth:`run_until_stopped` to shut down (signal handlers call this)."""
        self._stopping.set()

    async def run_until_stopped(self) -> None:
        """Start, wait for SIGTERM/SIGINT (or a fatal gateway error), then stop gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            _freeze_startup_objects()
            log.info("factory bridge running")
            await self._stopping.wait()
            log.info("shutting down")
        finally:
            await self.stop()


def _freeze_startup_objects() -> None:
    """Keep what start-up built out of later garbage collections (:func:`gc.freeze`).

    Why: a full collection walks every tracked object, most of them made at import and
    start-up (discord.py, SQLAlchemy, pydantic) and alive for good. Measured with the click
    benchmark: 50–80 ms pauses, longer than the whole click budget (p99 ≤ 50 ms). Garbage is
    collected first so that nothing dead is frozen.

    Then the young generation's threshold is raised from 700 to :data:`GC_YOUNG_THRESHOLD`
    (the older generations keep theirs). Why: a batch in flight (1,000 Redis Streams entries
    are ≈ 25,000 tracked objects) outlived hundreds of young collections at 700 and was
    promoted, which triggered full collections (``ingest-stream``: 19 full collections, ≈ 17 %
    of the bridge's CPU). Why not higher: a young collection costs ≈ 1 µs per object walked,
    with the loop stopped: at 20,000 ``click-storm`` clicks waited out 10–34 ms collections
    (p99 54 ms); at 5,000 its p99 is 38 ms and ``ingest-stream`` is no slower; at 2,000 more
    middle-generation collections made it worse (54–105 ms). See bench/RESULTS.md.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
