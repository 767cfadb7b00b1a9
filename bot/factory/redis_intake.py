"""Redis Streams intake: the factory's event bus, read as consumer group ``discord-bridge``.

With ``FACTORY_REDIS_URL`` set the bridge reads the factory's streams (contract §7.7:
``FACTORY_REDIS_STREAMS``, by default ``factory.tasks``, ``factory.pipelines``,
``factory.deploys``, ``factory.agents`` and ``factory.notifications``) with redis-py's asyncio
client:

- the group ``discord-bridge`` is created on each stream when missing (``XGROUP CREATE … 0
  MKSTREAM``; ``BUSYGROUP`` — it exists — is fine); each process reads as its own consumer
  (``FACTORY_REDIS_CONSUMER``, by default ``<hostname>-<pid>``), so replicas share the work;
- entries are read in batches (``XREADGROUP COUNT FACTORY_REDIS_BATCH_SIZE BLOCK 2000``), each
  read as an event (:mod:`bot.factory.stream_entries`: the same checks and de-duplication as a
  webhook), the batch **stored in one transaction** (:meth:`bot.store.Store.record_events`), the
  new events handed to the processor, and only then acknowledged (``XACK``). A crash before
  the ``XACK`` leaves the entries pending: they are read again (by this consumer after a
  reconnect, or claimed by another) and are then duplicates by id;
- a malformed entry is stored as failed with its reason (audited ``event.failed``),
  acknowledged, and never holds up the entries behind it;
- entries pending for longer than ``FACTORY_REDIS_CLAIM_IDLE_SECONDS`` (30 s) with another
  consumer — one that died — are claimed with ``XAUTOCLAIM`` and handled here; the claim runs
  at start and then every ``FACTORY_REDIS_CLAIM_IDLE_SECONDS / 2`` (at least every read);
  consumers idle for an hour with nothing pending (processes that ended) are then deleted
  from the group;
- when Redis cannot be reached, or the connection drops, it reconnects for ever with
  exponential backoff (``FACTORY_REDIS_RECONNECT_BASE_SECONDS`` doubling up to 30 s, with
  jitter, :func:`bot.factory.ws_intake.reconnect_delay`); each failure is logged and counted
  (``factory_bridge_events_total{source="redis",outcome="unavailable"}``) and ``/healthz``
  shows ``"redis": "down: <reason>"`` — without failing: webhooks keep working. The reason (and
  every log line about a failure) is the exception's type and its message with the URL's
  secrets masked (:func:`bot.logs.url_secrets`): never the URL, nor a piece of its password a
  parser quoted (``/healthz`` needs no login).

A failure of the store (the database down) is not Redis's fault: the batch is not
acknowledged, the failure is logged, and the entries are read again after the same backoff.
The backoff starts again from the base only once a batch was acknowledged, or a connection
stayed up for :data:`~bot.factory.ws_intake.STABLE_CONNECTION_SECONDS`: a database that stays
down (or a stream that fails every read) is retried with growing delays, not every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from bot.factory.events import FactoryEvent
from bot.factory.stream_entries import EntryKind, StreamEntry, read_entry
from bot.factory.ws_intake import STABLE_CONNECTION_SECONDS, reconnect_delay
from bot.logs import redact, url_secrets
from bot.store import NewEvent, Recorded, Store

__all__ = [
    "BLOCK_SECONDS",
    "DEFAULT_STREAMS",
    "FORGET_CONSUMERS_AFTER_SECONDS",
    "GROUP",
    "RedisStreamIntake",
    "default_consumer_name",
]

log = logging.getLogger(__name__)

#: The bridge's consumer group (contract §7.7 ``CONSUMER_GROUPS.discordBridge``).
GROUP = "discord-bridge"
#: The contract's streams the bridge reads by default (§7.7 ``REDIS_STREAMS``, without
#: ``factory.feedback``, which carries nothing the bridge shows).
DEFAULT_STREAMS: tuple[str, ...] = (
    "factory.tasks",
    "factory.pipelines",
    "factory.deploys",
    "factory.agents",
    "factory.notifications",
)
#: Longest wait of one ``XREADGROUP`` for new entries (seconds).
BLOCK_SECONDS = 2.0
#: Seconds to open a connection before the attempt counts as failed.
CONNECT_TIMEOUT_SECONDS = 5.0
#: Idle seconds after which another consumer with nothing pending is deleted from the group.
FORGET_CONSUMERS_AFTER_SECONDS = 3600.0
#: ``XAUTOCLAIM`` rounds per stream per claim (each up to one batch), so a big backlog of a
#: dead consumer does not hold up new entries for long.
MAX_CLAIM_ROUNDS = 20
#: Batches read and not yet acknowledged, at most: one is being handed over and acknowledged
#: while the next waits for (or is in) the database's writer and a third is read.
BATCHES_IN_FLIGHT = 2


def default_consumer_name() -> str:
    """``<hostname>-<pid>``: one consumer per process (``FACTORY_REDIS_CONSUMER`` unset)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def _reason(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """``Type: message`` of ``exc`` with ``secrets`` masked (just ``Type`` without a message)."""
    message = redact(str(exc), secrets)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class _StoreFailed(Exception):
    """Storing a batch failed; its entries stay pending (not acknowledged)."""


class RedisStreamIntake:
    """Reads the factory's streams as one consumer of group ``discord-bridge`` (contract §7.7).

    Parameters
    ----------
    url:
        ``FACTORY_REDIS_URL``: ``redis://`` or ``rediss://`` (TLS), with password and database
        number as redis-py reads them.
    store:
        Each batch is stored there (:meth:`bot.store.Store.record_events`) before ``XACK``.
    on_stored:
        Called with ``(event_id, parsed event)`` for each event stored as new, after the
        commit and in stream order (the app's ``on_stored``: the processor's ``submit``).
    streams:
        Stream names (``FACTORY_REDIS_STREAMS``).
    group:
        Consumer group; the contract's ``discord-bridge``.
    consumer:
        This process's consumer name; ``None``: :func:`default_consumer_name`.
    batch_size:
        Entries per ``XREADGROUP`` per stream (``COUNT``) and per ``XAUTOCLAIM``.
    claim_idle_seconds:
        ``XAUTOCLAIM`` min-idle-time, seconds (``FACTORY_REDIS_CLAIM_IDLE_SECONDS``); 0 claims
        every pending entry of other consumers at once (tests).
    block_seconds:
        Longest wait of one ``XREADGROUP`` for new entries.
    forget_consumers_after_seconds:
        Another consumer of the group idle this long with nothing pending is deleted from the
        group (a process that ended), seconds.
    reconnect_base_seconds:
        First delay after a failure (doubling, at most 30 s, with jitter).
    on_outcome:
        Called with ``("redis", outcome)`` per entry (``accepted``, ``duplicate``,
        ``rejected`` for malformed, ``ignored``) and per failed connection (``unavailable``):
        ``factory_bridge_events_total``; optional.
    sleep:
        ``asyncio.sleep``, awaited between attempts (tests inject one that waits for them).
    clock:
        Monotonic seconds, for the claim cadence.
    """

    def __init__(
        self,
        *,
        url: str,
        store: Store,
        on_stored: Callable[[str, FactoryEvent], None],
        streams: Sequence[str] = DEFAULT_STREAMS,
        group: str = GROUP,
        consumer: str | None = None,
        batch_size: int = 500,
        claim_idle_seconds: float = 30.0,
        block_seconds: float = BLOCK_SECONDS,
        forget_consumers_after_seconds: float = FORGET_CONSUMERS_AFTER_SECONDS,
        reconnect_base_seconds: float = 1.0,
        on_outcome: Callable[[str, str], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.store = store
        self.on_stored = on_stored
        self.streams = tuple(streams)
        self.group = group
        self.consumer = consumer or default_consumer_name()
        self.batch_size = batch_size
        self.claim_idle_seconds = claim_idle_seconds
        self.block_seconds = block_seconds
        self.forget_consumers_after_seconds = forget_consumers_after_seconds
        self.reconnect_base_seconds = reconnect_base_seconds
        self._on_outcome = on_outcome
        self._sleep = sleep
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._attempt = 0
        #: Why Redis is not being read (``None`` while it is).
        self.problem: str | None = "not connected yet"
        #: Successful connections so far (group checked on every stream).
        self.connections = 0
        #: Entries acknowledged so far (stored, duplicates, malformed, ignored, gone).
        self.acked = 0
        #: Events stored as new so far.
        self.events_stored = 0
        #: Malformed entries stored as failed so far.
        self.malformed = 0
        #: Entries taken over from other consumers with ``XAUTOCLAIM`` so far.
        self.claimed = 0

    # ------------------------------------------------------------------ lifecycle
    def advisory_health(self) -> dict[str, bool | str]:
        """``{"redis": True}`` while the streams are read, else ``{"redis": "<reason>"}``.

        For ``/healthz`` as a part that does not fail it (webhooks keep working without Redis).
        """
        return {"redis": True if self.problem is None else self.problem}

    async def start(self) -> None:
        """Start reading in the background (returns at once; failures are retried)."""
        self._task = asyncio.create_task(self._run(), name="factory-redis-streams")

    async def stop(self) -> None:
        """Stop reading; entries read but not stored stay pending in Redis."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            started, connections = self._clock(), self.connections
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except _StoreFailed as exc:
                log.error(
                    "Redis streams: could not store a batch, it stays pending: %s",
                    redact(str(exc), self._secrets()),
                )
            except (RedisError, OSError) as exc:
                self.problem = _reason(exc, self._secrets())
                self._outcome("unavailable")
                log.warning("Redis streams unavailable: %s", self.problem)
            except Exception as exc:
                # the traceback quotes the exception's message (which may quote the URL):
                # logged masked, as text, never as the raw exception
                secrets = self._secrets()
                self.problem = _reason(exc, secrets)
                stack = redact("".join(traceback.format_exception(exc)), secrets)
                log.error("Redis streams: reading failed unexpectedly: %s\n%s", self.problem, stack)
            held = self._clock() - started >= STABLE_CONNECTION_SECONDS
            if self.connections > connections and held:
                self._attempt = 0  # a connection that held: a new outage starts from the base
            delay = reconnect_delay(self._attempt, base_seconds=self.reconnect_base_seconds)
            self._attempt += 1
            log.info("Redis streams: reconnecting in %.2fs (attempt %d)", delay, self._attempt)
            await self._sleep(delay)

    def _secrets(self) -> list[str]:
        """What a failure's reason must not show: the URL and the secrets in it."""
        return [self.url, *url_secrets(self.url)]

    def _outcome(self, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome("redis", outcome)

    # ------------------------------------------------------------------ one connection
    async def _session(self) -> None:
        """One connection: create the groups, then read until something fails."""
        client = aioredis.from_url(
            self.url,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=self.block_seconds + 10.0,
            decode_responses=False,  # a field that is not UTF-8 is one malformed entry
        )
        try:
            for stream in self.streams:
                try:
                    await client.xgroup_create(stream, self.group, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
            self.problem = None
            self.connections += 1
            log.info(
                "Redis streams: reading %s as %s/%s",
                ", ".join(self.streams),
                self.group,
                self.consumer,
            )
            # entries delivered to this consumer and never acknowledged come first
            while batch := await self._read(client, "0", block=None):
                await self._handle(client, batch)
            await self._follow(client)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _follow(self, client: aioredis.Redis) -> None:
        """Read new entries for ever; claim idle ones of other consumers now and then.

        Up to :data:`BATCHES_IN_FLIGHT` batches overlap: while earlier ones are being stored
        (the database's writer thread, which stores them one after the other) and
        acknowledged, the next is read, checked and queued for the writer; batches are stored,
        handed over and acknowledged strictly in order.
        """
        handling: deque[asyncio.Task[None]] = deque()
        next_claim = self._clock()
        try:
            while True:
                if self._clock() >= next_claim:
                    while handling:
                        await handling.popleft()
                    await self._claim(client)
                    next_claim = self._clock() + self.claim_idle_seconds / 2
                batch = await self._read(client, ">", block=self.block_seconds)
                while handling and (handling[0].done() or len(handling) >= BATCHES_IN_FLIGHT):
                    await handling.popleft()
                if batch:
                    previous = handling[-1] if handling else None
                    handling.append(asyncio.create_task(self._handle(client, batch, previous)))
        finally:
            for task in handling:
                if not task.done():
                    task.cancel()
            for task in handling:
                with contextlib.suppress(BaseException):
                    await task

    async def _read(
        self, client: aioredis.Redis, start: str, *, block: float | None
    ) -> list[StreamEntry]:
        """One ``XREADGROUP`` (``start`` ``>``: new entries, ``0``: own pending), read."""
        reply = await client.xreadgroup(
            self.group,
            self.consumer,
            dict.fromkeys(self.streams, start),
            count=self.batch_size,
            block=None if block is None else int(block * 1000),
        )
        batch: list[StreamEntry] = []
        answer: Any = reply  # RESP2: [[stream, [(id, fields), …]], …]; [] when nothing came
        items = answer.items() if isinstance(answer, dict) else (answer or [])
        for name, entries in items:
            stream = _text(name)
            for entry_id, fields in entries:
                batch.append(read_entry(stream, _text(entry_id), fields))
        return batch

    async def _claim(self, client: aioredis.Redis) -> None:
        """Take over entries idle with other consumers (``XAUTOCLAIM``) and handle them."""
        idle_ms = int(self.claim_idle_seconds * 1000)
        for stream in self.streams:
            start: bytes | str = "0-0"
            for _ in range(MAX_CLAIM_ROUNDS):
                reply: Any = await client.xautoclaim(
                    stream, self.group, self.consumer, idle_ms, start, count=self.batch_size
                )
                start, entries = reply[0], reply[1]
                batch = [read_entry(stream, _text(i), fields) for i, fields in entries]
                if batch:
                    self.claimed += len(batch)
                    log.info(
                        "Redis streams: claimed %d entries of %s idle over %gs",
                        len(batch),
                        stream,
                        self.claim_idle_seconds,
                    )
                    await self._handle(client, batch)
                if _text(start) == "0-0":
                    break
            await self._forget_idle_consumers(client, stream)

    async def _forget_idle_consumers(self, client: aioredis.Redis, stream: str) -> None:
        """Delete other consumers with nothing pending, idle ``forget_consumers_after_seconds``.

        Each process is a new consumer (``<hostname>-<pid>``), so without this the group would
        list every process that ever ran. Only a consumer with no pending entry is deleted
        (``XGROUP DELCONSUMER`` would drop its pending entries), and a live one idles at most
        :data:`BLOCK_SECONDS` between reads (its next read would re-create it anyway).
        """
        idle_ms = self.forget_consumers_after_seconds * 1000
        consumers: Any = await client.xinfo_consumers(stream, self.group)
        for consumer in consumers:
            name = _text(consumer["name"])
            if name != self.consumer and consumer["pending"] == 0 and consumer["idle"] >= idle_ms:
                await client.xgroup_delconsumer(stream, self.group, name)
                log.info("Redis streams: forgot idle consumer %s of %s", name, stream)

    # ------------------------------------------------------------------ one batch
    async def _handle(
        self,
        client: aioredis.Redis,
        batch: list[StreamEntry],
        previous: asyncio.Task[None] | None = None,
    ) -> None:
        """Store the batch in one transaction, hand over the new events, then ``XACK`` it.

        ``previous``: the batch read before, still in hand; this one is handed over and
        acknowledged only once that one was (its failure is this one's: nothing is
        acknowledged, the entries stay pending).
        """
        if not batch:
            if previous is not None:
                await previous
            return
        stored: list[StreamEntry] = []
        rows: list[NewEvent] = []
        for entry in batch:
            row = entry.to_store()
            if row is not None:
                stored.append(entry)
                rows.append(row)
        try:
            outcomes = await self.store.record_events(rows)
        except Exception as exc:
            raise _StoreFailed(_reason(exc)) from exc
        if previous is not None:
            await previous
        for entry, recorded in zip(stored, outcomes, strict=True):
            await self._after_store(entry, recorded)
        for entry in batch:
            if entry.kind is EntryKind.IGNORED:
                log.debug("ignored stream event of unhandled type %r", entry.type)
                self._outcome("ignored")
        by_stream: dict[str, list[str]] = {}
        for entry in batch:
            by_stream.setdefault(entry.stream, []).append(entry.entry_id)
        async with client.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            await pipe.execute()
        self.acked += len(batch)
        self._attempt = 0  # progress: the next failure backs off from the base again

    async def _after_store(self, entry: StreamEntry, recorded: Recorded) -> None:
        if recorded is Recorded.FAILED:
            self.malformed += 1
            self._outcome("rejected")
            log.warning(
                "Redis stream %s entry %s refused (stored as failed): %s",
                entry.stream,
                entry.entry_id,
                entry.error,
            )
            await self._audit_malformed(entry)
            return
        if recorded is Recorded.DUPLICATE:
            self._outcome("duplicate")
            return
        self._outcome("accepted")
        self.events_stored += 1
        if recorded is Recorded.NEW and entry.event is not None:
            self.on_stored(entry.event_id, entry.event)

    async def _audit_malformed(self, entry: StreamEntry) -> None:
        try:
            await self.store.audit(
                actor_name="bridge",
                via="event",
                action="event.failed",
                outcome="failed",
                request={
                    "eventId": entry.event_id,
                    "type": entry.type,
                    "stream": entry.stream,
                    "entryId": entry.entry_id,
                },
                detail=entry.error,
            )
        except Exception:  # the entry is stored as failed; a lost audit line must not block
            log.exception("could not audit the malformed stream entry %s", entry.event_id)
