"""The event log: every factory event stored before it is acknowledged, then marked handled."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from . import tables as t
from .base import StoreBase
from .database import driver_cursor
from .fingerprint import encode_event, event_fingerprint

__all__ = ["EventRecord", "EventsMixin", "NewEvent", "Recorded", "storable_text"]

log = logging.getLogger(__name__)

# Hot-path SQL run through the driver (see bot.store.database.driver_cursor); the names are
# those of bot.store.tables (the intake and processor tests run these against that schema).
_INSERT_EVENT = (
    "INSERT INTO events (event_id, type, source, received_at, body) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (event_id) DO NOTHING"
)
_UNPROCESSED_EVENTS = (
    "SELECT event_id, type, source, received_at, body FROM events "
    "WHERE processed_at IS NULL ORDER BY received_at, event_id LIMIT ?"
)
_MARK_EVENT_WITH_ERROR = "UPDATE events SET processed_at = ?, error = ? WHERE event_id = ?"
#: Rows per multi-row ``INSERT`` of a batch (7 parameters each: well within SQLite's 32,766
#: and PostgreSQL's 65,535 bound parameters per statement).
_ROWS_PER_STATEMENT = 500


def _insert_events_sql(rows: int) -> str:
    """One ``INSERT`` of ``rows`` events answering the ids it stored (``RETURNING``: SQLite
    3.35+, PostgreSQL); an event with an error is stored already processed, with it."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)
    return (
        "INSERT INTO events (event_id, type, source, received_at, body, processed_at, error) "
        f"VALUES {values} ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    )


def _mark_processed_sql(rows: int) -> str:
    """One ``UPDATE`` marking ``rows`` events (by id) processed at one time, without error."""
    ids = ", ".join(["?"] * rows)
    return f"UPDATE events SET processed_at = ?, error = NULL WHERE event_id IN ({ids})"


def _insert_fingerprints_sql(rows: int) -> str:
    """One ``INSERT`` of ``rows`` content fingerprints answering those it stored."""
    values = ", ".join(["(?, ?, ?)"] * rows)
    return (
        "INSERT INTO event_fingerprints (fingerprint, type, handled_at) "
        f"VALUES {values} ON CONFLICT (fingerprint) DO NOTHING RETURNING fingerprint"
    )


def _other_content(cursor: Any, sql: Any, repeated: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(event_id, source)`` of the repeated rows whose stored event has other content: other
    type, timestamp or data (the fingerprint's keys), so the same event by webhook (with its
    ``channel``) and by a stream entry (without) is the same content."""
    found: list[tuple[str, str]] = []
    for chunk in _chunks(repeated, _ROWS_PER_STATEMENT):
        ids = [v["event_id"] for v in chunk]
        marks = ", ".join(["?"] * len(ids))
        cursor.execute(sql(f"SELECT event_id, body FROM events WHERE event_id IN ({marks})"), ids)
        bodies = dict(cursor.fetchall())
        found += [
            (v["event_id"], v["source"])
            for v in chunk
            if v["event_id"] in bodies
            and bodies[v["event_id"]] != v["body"]
            and _stored_fingerprint(bodies[v["event_id"]]) != v["fingerprint"]
        ]
    return found


def _stored_fingerprint(body: str) -> str | None:
    """The content fingerprint of a stored event's text (``None``: not a JSON object)."""
    try:
        raw = json.loads(body)
    except ValueError:
        return None
    return event_fingerprint(raw) if isinstance(raw, dict) else None


def _chunks(rows: list[Any], size: int) -> list[list[Any]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


#: ``events.error`` of an event stored but not acted on: its content was accepted before.
_SAME_CONTENT = "same content as an event accepted before (acted on once)"


class Recorded(enum.Enum):
    """What :meth:`Store.record_event` did with an event."""

    #: Stored, to be acted on.
    NEW = "new"
    #: Stored already marked processed: the same content was accepted before under another id
    #: (a webhook and WebSocket double delivery), so it is acted on once.
    SAME_CONTENT = "same content"
    #: Its id was stored before; nothing was stored.
    DUPLICATE = "duplicate"
    #: Stored already marked failed with its reason (a malformed Redis Streams entry, see
    #: :meth:`EventsMixin.record_events`); never acted on.
    FAILED = "failed"


def storable_text(text: str) -> str:
    """``text`` as every engine stores it in a text column: a NUL (which PostgreSQL refuses)
    written ``\\x00`` and a lone surrogate (which cannot be encoded as UTF-8) escaped ``\\udXXX``.

    Parameters
    ----------
    text:
        Any Python text, e.g. a refused stream entry's claimed ``type`` or the reason quoting it.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


@dataclass(frozen=True)
class NewEvent:
    """An event to store with :meth:`EventsMixin.record_events`.

    Attributes
    ----------
    event_id:
        Its id (1–200 characters), unique across intakes.
    type:
        Its ``WsEvent`` type (at most 64 characters).
    body:
        The ``WsEvent`` JSON object to store (re-parsed by the processor after a restart).
    source:
        The intake: ``webhook``, ``websocket`` or ``redis`` (at most 16 characters).
    error:
        ``None`` for an event to act on; otherwise why it cannot be (stored as failed).
    """

    event_id: str
    type: str
    body: dict[str, Any]
    source: str
    error: str | None = None


@dataclass(frozen=True)
class EventRecord:
    """A stored event: its id, type, where it came from and its raw ``WsEvent`` JSON."""

    event_id: str
    type: str
    source: str
    received_at: float
    body: dict[str, Any]


class EventsMixin(StoreBase):
    """The store's event methods (see :class:`bot.store.Store`)."""

    def __init__(self, url: str, *, clock: Any = time.time) -> None:
        super().__init__(url, clock=clock)
        # the event table's hot writes, drained together by one writer coroutine
        # (rows of one caller, its future): one future per call, not per row (a batch)
        self._pending_events: list[tuple[list[dict[str, Any]], asyncio.Future[list[Recorded]]]] = []
        self._pending_marks: list[tuple[list[tuple[float, str]], asyncio.Future[None]]] = []
        self._event_writer: asyncio.Task[None] | None = None

    async def record_event(
        self, event_id: str, type_: str, body: dict[str, Any], source: str
    ) -> Recorded:
        """Store an event durably and say what was done (see :class:`Recorded`).

        A duplicate id stores nothing. The event's content fingerprint
        (:func:`bot.store.fingerprint.event_fingerprint`) is remembered with it: an event
        whose content was accepted before under another id (the same ``WsEvent`` delivered by
        webhook *and* WebSocket) is stored already marked processed ("same content as an
        accepted event"), so it is acted on once.

        Returns only after the transaction holding the event committed. Concurrent calls share
        one transaction (group commit), so a burst of webhooks costs one disk sync per batch
        instead of one per event.
        """
        text, fingerprint = encode_event(body)
        values = {
            "event_id": event_id,
            "type": type_,
            "source": source,
            "received_at": self._clock(),
            "body": text,
            "fingerprint": fingerprint,
        }
        future: asyncio.Future[list[Recorded]] = asyncio.get_running_loop().create_future()
        self._pending_events.append(([values], future))
        self._start_event_writer()
        return (await future)[0]

    async def record_events(self, events: Sequence[NewEvent]) -> list[Recorded]:
        """Store a batch of events durably, in one transaction; what was done with each.

        Each event is treated as by :meth:`record_event` (duplicate ids store nothing, known
        content is stored already processed), except that one with ``error`` set is stored
        already marked failed with that reason (``events.error``) and is never acted on
        (:attr:`Recorded.FAILED`; its content is not remembered). The Redis Streams intake
        (contract §7.7) stores each ``XREADGROUP`` batch this way before acknowledging it
        (``XACK``).

        Parameters
        ----------
        events:
            The batch, in stream order; may be empty.

        Returns
        -------
        list[Recorded]
            One outcome per event, in order, once the transaction committed.

        Raises
        ------
        Exception
            Whatever the database raised: then nothing of the batch is stored.
        """
        if not events:
            return []
        now = self._clock()
        rows: list[dict[str, Any]] = []
        # one microsecond apart, in stream order: the store is read back ORDER BY received_at,
        # event_id, and the ids (redis:<stream>:<ms>-<seq>) do not sort as the stream does
        # (…-10 before …-2 as text); a batch of 1,000 spans a millisecond
        for index, event in enumerate(events):
            if event.error is None:
                text, fingerprint = encode_event(event.body)
            else:  # kept as it came (ASCII-escaped); its content is not remembered
                text, fingerprint = json.dumps(event.body), ""
            values = {
                "event_id": event.event_id,
                # a refused entry's claimed type and its reason quote what it held: a NUL or
                # a lone surrogate there failed the whole batch on PostgreSQL, for ever
                "type": event.type if event.error is None else storable_text(event.type)[:64],
                "source": event.source,
                "received_at": now + index * 1e-6,
                "body": text,
                "fingerprint": fingerprint,
                "error": None if event.error is None else storable_text(event.error),
            }
            rows.append(values)
        future: asyncio.Future[list[Recorded]] = asyncio.get_running_loop().create_future()
        self._pending_events.append((rows, future))
        self._start_event_writer()
        return await future

    def _start_event_writer(self) -> None:
        if self._event_writer is None or self._event_writer.done():
            self._event_writer = asyncio.create_task(self._write_events())

    async def _write_events(self) -> None:
        """Drain the pending events and marks, one write unit per batch (group commit).

        New events and the processor's marks share a unit: under a burst the intake and the
        processor cost one transaction together, not one each.
        """
        while self._pending_events or self._pending_marks:
            batch, self._pending_events = self._pending_events, []
            marks, self._pending_marks = self._pending_marks, []
            try:
                outcome = await self._write_event_batch(
                    [values for rows, _ in batch for values in rows],
                    [m for run, _ in marks for m in run],
                )
            except Exception as exc:  # every caller gets the error; nothing half-stored
                for future in [f for _, f in batch] + [f for _, f in marks]:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for rows, event_future in batch:
                if not event_future.done():
                    event_future.set_result(outcome[start : start + len(rows)])
                start += len(rows)
            for _, mark_future in marks:
                if not mark_future.done():
                    mark_future.set_result(None)

    async def _write_event_batch(
        self, rows: list[dict[str, Any]], marks: list[tuple[float, str]]
    ) -> list[Recorded]:
        """Insert the rows whose ids are not stored yet; per row, what was done.

        A row repeating an id stored earlier, or earlier in ``rows``, is left out
        (:attr:`Recorded.DUPLICATE`). A new row whose content fingerprint is known — stored
        before, or by an earlier row of ``rows`` — is stored as processed
        (:attr:`Recorded.SAME_CONTENT`, see :meth:`record_event`). A row with an ``error`` is
        stored already processed with it (:attr:`Recorded.FAILED`). ``marks``
        (``(processed_at, event_id)``) are applied first, one ``UPDATE … WHERE event_id IN``
        per time and :data:`_ROWS_PER_STATEMENT` ids.

        One unit of work: one multi-row ``INSERT … RETURNING`` for the events and one for the
        fingerprints of the new ones per :data:`_ROWS_PER_STATEMENT` rows, plus an ``UPDATE``
        per event of known content; the driver is called directly (hot path, see
        :func:`~bot.store.database.driver_cursor`).
        """

        def work(conn: Connection) -> list[Recorded]:
            cursor, sql = driver_cursor(conn)
            by_time: dict[float, list[str]] = {}
            for marked_at, event_id in marks:
                by_time.setdefault(marked_at, []).append(event_id)
            for marked_at, event_ids in by_time.items():
                for ids in _chunks(event_ids, _ROWS_PER_STATEMENT):
                    cursor.execute(sql(_mark_processed_sql(len(ids))), [marked_at, *ids])
            stored: set[str] = set()
            for chunk in _chunks(rows, _ROWS_PER_STATEMENT):
                params: list[Any] = []
                for v in chunk:
                    error = v.get("error")
                    done_at = None if error is None else v["received_at"]
                    params += (
                        v["event_id"],
                        v["type"],
                        v["source"],
                        v["received_at"],
                        v["body"],
                        done_at,
                        error,
                    )
                cursor.execute(sql(_insert_events_sql(len(chunk))), params)
                stored.update(row[0] for row in cursor.fetchall())
            outcome: list[Recorded | None] = []
            fresh: list[tuple[int, dict[str, Any]]] = []  # new by id, to be acted on
            repeated: list[dict[str, Any]] = []
            for v in rows:
                if v["event_id"] not in stored:  # stored before, or by an earlier row
                    outcome.append(Recorded.DUPLICATE)
                    repeated.append(v)
                    continue
                stored.discard(v["event_id"])
                if v.get("error") is not None:
                    outcome.append(Recorded.FAILED)
                    continue
                fresh.append((len(outcome), v))
                outcome.append(None)
            remembered: set[str] = set()
            for chunk in _chunks(fresh, _ROWS_PER_STATEMENT):
                params = []
                for _, v in chunk:
                    params += (v["fingerprint"], v["type"], v["received_at"])
                cursor.execute(sql(_insert_fingerprints_sql(len(chunk))), params)
                remembered.update(row[0] for row in cursor.fetchall())
            known: list[tuple[float, str, str]] = []
            for index, v in fresh:
                if v["fingerprint"] in remembered:  # the first row with this content
                    remembered.discard(v["fingerprint"])
                    outcome[index] = Recorded.NEW
                else:
                    known.append((v["received_at"], _SAME_CONTENT, v["event_id"]))
                    outcome[index] = Recorded.SAME_CONTENT
            if known:
                cursor.executemany(sql(_MARK_EVENT_WITH_ERROR), known)
            if repeated:
                conflicts.extend(_other_content(cursor, sql, repeated))
            return [o for o in outcome if o is not None]

        conflicts: list[tuple[str, str]] = []
        result = await self.db.write(work)
        for event_id, source in dict.fromkeys(conflicts):
            # a delivery retried carries the same content: another one under a stored id is
            # the factory reusing an id (or someone replaying a signed body under it) — not
            # stored, but never without a trace
            log.warning(
                "event %s (%s) repeats a stored event id with other content: not stored",
                event_id[:200],
                source,
            )
        return result

    async def unprocessed_events(self, limit: int = 100) -> list[EventRecord]:
        """Events stored but not yet handled, oldest first."""

        def work(conn: Connection) -> list[EventRecord]:
            cursor, sql = driver_cursor(conn)
            cursor.execute(sql(_UNPROCESSED_EVENTS), (limit,))
            return [
                EventRecord(
                    event_id=event_id,
                    type=type_,
                    source=source,
                    received_at=received_at,
                    body=json.loads(body),
                )
                for event_id, type_, source, received_at, body in cursor.fetchall()
            ]

        return await self.db.read(work)

    async def mark_event_processed(self, event_id: str, error: str | None = None) -> None:
        """Mark an event handled; ``error`` keeps why handling failed (it is not retried)."""
        now = self._clock()

        def work(conn: Connection) -> None:
            conn.execute(
                update(t.events)
                .where(t.events.c.event_id == event_id)
                .values(processed_at=now, error=error)
            )

        await self.db.write(work)

    async def mark_events_processed(self, event_ids: Sequence[str]) -> None:
        """Mark many events handled without error, in one write.

        Lets the event processor mark a run of handled events with one unit of work instead
        of one per event; the unit is shared with the events stored meanwhile. Returns once
        committed. ``event_ids`` may be empty (nothing is written); unknown ids are ignored.
        """
        now = self._clock()
        marks = [(now, event_id) for event_id in event_ids]
        if not marks:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_marks.append((marks, future))
        self._start_event_writer()
        await future

    async def count_events(self) -> int:
        """How many events are stored (tests and benchmarks)."""

        def work(conn: Connection) -> int:
            return int(conn.execute(select(func.count()).select_from(t.events)).scalar_one())

        return await self.db.read(work)

    async def count_unprocessed_events(self) -> int:
        """How many events are stored and not handled yet (``factory_bridge_event_queue_depth``):
        those in the processor's memory, those a standby stored, those waiting for a retry or
        left by a restart. Counted on the ``(processed_at, …)`` index."""

        def work(conn: Connection) -> int:
            query = (
                select(func.count()).select_from(t.events).where(t.events.c.processed_at.is_(None))
            )
            return int(conn.execute(query).scalar_one())

        return await self.db.read(work)
