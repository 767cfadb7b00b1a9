"""Database access off the event loop: one writer thread with group commit, a pool of readers.

Why not an async driver: with aiosqlite every statement is a round trip between the event loop
and a driver thread, and SQLite has one writer, so a write transaction held its lock across
several loop turns (2–4 ms each under load). The bridge then sustained ~330 durable events/s
and ~55 escalation steps/s (bench/RESULTS.md, before this module). Here a unit of work is a
plain synchronous function over an SQLAlchemy :class:`~sqlalchemy.engine.Connection`:

* :meth:`Database.write` queues it for **the one writer thread**. The writer takes every unit
  queued so far and runs them in **one transaction**, then commits once (one disk sync for the
  whole batch: group commit). A unit that raises is rolled back alone and its caller gets the
  exception; the others still commit (the group is run again with a SAVEPOINT per unit, so a
  unit may run twice and must touch nothing but its connection). A caller's result is set only
  **after the commit** — "stored" means durable.
* :meth:`Database.read` runs it in a small thread pool, in a read transaction (one consistent
  snapshot: SQLite's WAL lets readers run while the writer writes; PostgreSQL readers use
  ``REPEATABLE READ``).

Each thread keeps its connection open between units (opening one per unit cost more than a
small unit itself); a connection whose unit or commit failed is closed and replaced, so a
database that went away is reconnected to on the next unit.

URLs are plain SQLAlchemy URLs. ``postgresql://`` and ``postgres://`` (the form Heroku-style
hosts hand out) become SQLAlchemy's ``postgresql+psycopg`` dialect (psycopg 3, a dependency of
the package); the async driver names the bridge used before are mapped to their synchronous
drivers (``sqlite+aiosqlite`` → ``sqlite``, ``postgresql+asyncpg`` → ``postgresql+psycopg``;
``postgres+`` forms too). Other drivers are refused by ``bot.settings`` (``DATABASE_URL``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

__all__ = [
    "IDLE_IN_TRANSACTION_SECONDS",
    "Database",
    "NotLeader",
    "driver_cursor",
    "postgres_session_args",
    "sync_url",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class NotLeader(RuntimeError):
    """A leader-only write was refused: this process does not hold the lease's current token.

    Raised by the fence (:attr:`Database.fence`, ``bot.leadership.lease.Lease.fence``) inside
    the write's transaction (the write is rolled back).
    """


#: Most units of work committed together (bounds one transaction's size and latency).
MAX_GROUP = 256

#: A PostgreSQL connection the writer or a reader thread has not used for this long (seconds)
#: goes back to the pool before its next unit, and the pool's pre-ping (``pool_pre_ping``)
#: checks it out again: a server restarted or failed over meanwhile costs a reconnect, not
#: the next click's decision or event (a kept connection is never pinged otherwise).
IDLE_RECHECK_SECONDS = 2.0


#: The schemes :func:`sync_url` rewrites, and what to (``bot.settings`` accepts these, and
#: ``sqlite``, ``sqlite+pysqlite`` and ``postgresql+psycopg`` as they are).
_SYNC_SCHEMES = {
    "sqlite+aiosqlite": "sqlite",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgres+psycopg": "postgresql+psycopg",
    "postgres+asyncpg": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+psycopg",
}


def sync_url(url: str) -> str:
    """The synchronous-driver form of a database URL (see the module docstring)."""
    scheme, separator, rest = url.partition("://")
    if separator and scheme in _SYNC_SCHEMES:
        return f"{_SYNC_SCHEMES[scheme]}://{rest}"
    return url


def driver_cursor(conn: Connection) -> tuple[Any, Callable[[str], str]]:
    """The DB-API cursor under ``conn`` (same transaction) and a placeholder adapter.

    For the few statements run thousands of times a second (event intake, event marks), the
    driver is called directly: SQLAlchemy's per-statement work (cache key, execution context,
    result metadata) cost more than SQLite itself. Write such SQL with ``?`` placeholders and
    pass it through the returned function (psycopg wants ``%s``). Keep it to standard SQL that
    SQLite and PostgreSQL share (``ON CONFLICT … DO NOTHING`` is).
    """
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    if conn.dialect.paramstyle in ("format", "pyformat"):
        return cursor, lambda sql: sql.replace("?", "%s")
    return cursor, lambda sql: sql


@dataclass
class _Unit:
    fn: Callable[[Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    on_settled: Callable[[Any, BaseException | None], None] | None = None
    #: A leader-only write: runs only in a transaction whose fence passed.
    fenced: bool = False


class _UnitFailed(Exception):
    """A unit of a group run without savepoints raised (see :meth:`Database._commit`).

    ``refused``: what the fence raised, when it was the fence that failed.
    """

    def __init__(self, refused: Exception | None = None) -> None:
        super().__init__()
        self.refused = refused


def _settle(unit: _Unit, result: Any, error: BaseException | None) -> None:
    if unit.on_settled is not None:
        unit.on_settled(result, error)
    future = unit.future
    if future.done():  # the caller gave up waiting; the write still happened (or not)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _sqlite_engine(url: str, *, memory: bool, immediate: bool) -> Engine:
    """An SQLite engine whose transactions are real ``BEGIN`` … ``COMMIT`` (savepoints work).

    The stdlib driver opens transactions lazily and breaks SAVEPOINT; SQLAlchemy's documented
    recipe ("Serializable isolation / Savepoints / Transactional DDL") turns that off and emits
    BEGIN itself. The writer uses ``BEGIN IMMEDIATE`` (takes the write lock at once, so another
    process never makes it fail half-way); readers use a deferred ``BEGIN`` (a snapshot).
    """
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        **({"poolclass": StaticPool} if memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        if not memory:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA synchronous=FULL")

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # straight to the driver: a statement through SQLAlchemy costs more than BEGIN itself
        conn.connection.driver_connection.execute(begin)  # type: ignore[union-attr]

    return engine


#: PostgreSQL ends a session of this bridge that stays idle inside a transaction this long
#: (seconds): a frozen process (``SIGSTOP``, a paused VM, a network partition) must not keep
#: its row locks — the lease row's among them — and so block a standby's takeover until TCP
#: gives up hours later (PostgreSQL: ``idle_in_transaction_session_timeout``). The bridge's
#: transactions never wait on anything but the database.
IDLE_IN_TRANSACTION_SECONDS = 10.0


def postgres_session_args(url: str = "") -> dict[str, object]:
    """psycopg connection arguments of every PostgreSQL connection of the bridge: the
    session timeout above, and TCP keepalives (libpq ``keepalives*``: a dead peer noticed in
    about 25 s instead of the system's two hours).

    ``url``'s own ``options`` (``?options=-csearch_path=…``) are kept: ``connect_args``
    replace the URL's parameters of the same name, so the timeout is added to them.
    """
    timeout_ms = int(IDLE_IN_TRANSACTION_SECONDS * 1000)
    given = make_url(url).query.get("options") if url else None
    own = " ".join(given) if isinstance(given, tuple) else (given or "")
    return {
        "options": f"{own} -c idle_in_transaction_session_timeout={timeout_ms}".strip(),
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }


class Database:
    """The bridge's database: :meth:`read` and :meth:`write` take a function of a connection.

    Parameters
    ----------
    url:
        An SQLAlchemy URL (``sqlite:///path.db``, ``postgresql://…``); see :func:`sync_url`.
    read_threads:
        Size of the reader pool.

    Units of work run in other threads: they must only use the connection they are given and
    values they were built with, never the event loop.
    """

    def __init__(self, url: str, *, read_threads: int = 2) -> None:
        self.url = sync_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        memory = self.is_sqlite and parsed.database in (None, "", ":memory:")
        if self.is_sqlite and not memory:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
        if self.is_sqlite:
            self.write_engine = _sqlite_engine(self.url, memory=memory, immediate=True)
            # an in-memory database exists once per connection: read through the writer
            self.read_engine = (
                self.write_engine
                if memory
                else _sqlite_engine(self.url, memory=False, immediate=False)
            )
        else:
            connect_args = postgres_session_args(self.url)
            self.write_engine = create_engine(
                self.url, pool_pre_ping=True, connect_args=connect_args
            )
            # PostgreSQL's default (READ COMMITTED) takes a snapshot per statement: a reader's
            # unit reads one snapshot only under REPEATABLE READ (the writer keeps the default,
            # where a compare-and-set UPDATE re-checks its WHERE after waiting for a row lock)
            self.read_engine = create_engine(
                self.url,
                pool_pre_ping=True,
                isolation_level="REPEATABLE READ",
                connect_args=connect_args,
            )
        self._reads_via_writer = memory
        self._readers = ThreadPoolExecutor(max_workers=read_threads, thread_name_prefix="db-read")
        self._reader_local = threading.local()  # .conn: that reader thread's connection
        self._reader_conns: set[Connection] = set()
        self._reader_conns_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="db-writer", daemon=True)
        self._writer.start()
        self._closed = False
        #: :data:`IDLE_RECHECK_SECONDS` on PostgreSQL (``None``: never, SQLite's file is local)
        self.idle_recheck_seconds: float | None = None if self.is_sqlite else IDLE_RECHECK_SECONDS
        #: Leader-only writes (``write(..., fenced=True)``) call this first, in their own
        #: transaction; it raises when this process is no longer the leader
        #: (:meth:`bot.leadership.lease.Lease.fence`). ``None``: no leadership (every write runs).
        self.fence: Callable[[Connection], None] | None = None

    @property
    def dialect_name(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.write_engine.dialect.name

    # ------------------------------------------------------------------ API
    async def write(
        self,
        fn: Callable[[Connection], T],
        *,
        on_settled: Callable[[Any, BaseException | None], None] | None = None,
        fenced: bool = False,
    ) -> T:
        """Run ``fn(conn)`` in a write transaction; return its result once committed.

        ``fn`` may be called twice: when another unit of its group raises, the group's
        transaction is rolled back and run again, each unit in its own savepoint. So ``fn``
        must change nothing but the database through ``conn`` (build its result locally).

        ``on_settled(result, error)`` is called on the event loop as soon as the unit committed
        (``error`` ``None``) or failed, even when the caller stopped waiting (cancelled), in
        commit order: for state that must follow what the database holds (the store's task
        cache).

        ``fenced``: a leader-only write (a ladder step claimed, a decision's compare-and-set,
        a message posted, a batch). :attr:`fence` runs first in the same transaction, so a
        leader that lost its lease (paused, then resumed) writes nothing (README "Production").
        It runs once per transaction, before the group's first unit, for every fenced unit of
        the group: on PostgreSQL its ``FOR SHARE`` row lock holds until the commit, and on
        SQLite the writer holds the database's write lock, so the lease row cannot change
        before the commit and checking it again per unit would find the same row.

        Raises what ``fn`` raised (its writes are rolled back, nobody else's are), or the
        commit's error: then nothing of the batch was stored, unless the connection was lost
        while the commit was on its way (the server may have stored it, and cannot say so: a
        caller whose claim must not be left behind gives it back, as
        ``LadderStore.claim_deliveries`` and the decision's in-flight mark do); for a fenced unit, what the
        fence raised (:class:`bot.leadership.lease.NotLeader`). Raises ``RuntimeError`` after
        :meth:`close`.
        """
        if self._closed:
            raise RuntimeError("the database is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Unit(fn, loop, future, on_settled, fenced))
        return await future

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` in a read transaction (one snapshot) on a reader thread."""
        if self._reads_via_writer:
            return await self.write(fn)
        if self._closed:
            raise RuntimeError("the database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._read, fn)

    async def close(self) -> None:
        """Finish queued writes, stop the threads and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.to_thread(self._writer.join)
        self._readers.shutdown(wait=True)
        for conn in list(self._reader_conns):
            conn.close()
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()

    # ------------------------------------------------------------------ threads
    def _idle(self, used_at: float) -> bool:
        """True when a kept connection last used at ``used_at`` (monotonic s) should be
        checked out again through the pool's pre-ping (:data:`IDLE_RECHECK_SECONDS`)."""
        limit = self.idle_recheck_seconds
        return limit is not None and time.monotonic() - used_at >= limit

    def _read(self, fn: Callable[[Connection], T]) -> T:
        local = self._reader_local
        conn: Connection | None = getattr(local, "conn", None)
        if conn is not None and self._idle(local.used_at):
            with self._reader_conns_lock:
                self._reader_conns.discard(conn)
            conn.close()  # back to the pool: checked (pre-ping) when checked out again
            conn = local.conn = None
        local.used_at = time.monotonic()
        if conn is None:
            conn = self.read_engine.connect()
            self._reader_local.conn = conn
            with self._reader_conns_lock:
                self._reader_conns.add(conn)
        try:
            with conn.begin():
                return fn(conn)
        except BaseException:
            self._reader_local.conn = None
            with self._reader_conns_lock:
                self._reader_conns.discard(conn)
            conn.close()
            raise

    def _write_loop(self) -> None:
        conn: Connection | None = None
        used_at = time.monotonic()
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                group = [first]
                stop = False
                while len(group) < MAX_GROUP:
                    try:
                        unit = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if unit is None:
                        stop = True
                        break
                    group.append(unit)
                if conn is not None and self._idle(used_at):
                    conn.close()  # back to the pool: checked (pre-ping) when checked out again
                    conn = None
                conn = self._commit(conn, group)
                used_at = time.monotonic()
                if stop:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _run_together(
        self, conn: Connection, group: list[_Unit]
    ) -> list[tuple[Any, BaseException | None]]:
        """Run every unit of ``group`` in ``conn``'s transaction, without savepoints.

        A group of one lets its unit's (or the fence's) exception through: its failure is the
        whole rollback. In a larger group it raises :class:`_UnitFailed` instead, so that
        :meth:`_commit` runs the group again with :meth:`_run_isolated`.
        """
        if len(group) == 1:
            self._fence_group(conn, group)
            return [(group[0].fn(conn), None)]
        fence = self.fence
        if fence is not None and any(unit.fenced for unit in group):
            try:
                fence(conn)
            except Exception as exc:
                raise _UnitFailed(refused=exc) from exc
        try:
            return [(unit.fn(conn), None) for unit in group]
        except Exception as exc:
            raise _UnitFailed from exc

    def _run_isolated(
        self, conn: Connection, group: list[_Unit], refused: Exception | None
    ) -> list[tuple[Any, BaseException | None]]:
        """Run every unit of ``group`` in its own savepoint of ``conn``'s transaction: one that
        raises is rolled back alone and gets its exception; a fence refusal fails only the
        fenced units. ``refused``: what the fence raised in the first attempt (it is not asked
        again, see :meth:`write`); ``None``: ask it now."""
        if refused is None:
            refused = self._fence_group(conn, group)
        outcomes: list[tuple[Any, BaseException | None]] = []
        for unit in group:
            if unit.fenced and refused is not None:
                outcomes.append((None, refused))
                continue
            try:
                with conn.begin_nested():
                    outcomes.append((unit.fn(conn), None))
            except Exception as exc:
                outcomes.append((None, exc))
        return outcomes

    def _fence_group(self, conn: Connection, group: list[_Unit]) -> Exception | None:
        """Run the fence current now (not when the units were queued) once for the group's
        fenced units, first in its transaction; return what it raised (those units then fail
        with it, the others go on). A group of one lets it raise: its failure is the rollback.

        Once per transaction is enough (see :meth:`write`); per unit it cost a query each (a
        seventh of the writer's CPU in bench ``click``).
        """
        fence = self.fence
        if fence is None or not any(unit.fenced for unit in group):
            return None
        if len(group) == 1:
            fence(conn)
            return None
        try:
            with conn.begin_nested():  # a refusal must not abort the others' transaction
                fence(conn)
        except Exception as exc:
            return exc
        return None

    def _commit(self, conn: Connection | None, group: list[_Unit]) -> Connection | None:
        """Run ``group`` in one transaction and settle its futures.

        A group of several units runs first without savepoints: units rarely fail, and on
        PostgreSQL a SAVEPOINT and its RELEASE are two more round trips per unit (a fifth of
        the writer's time in bench ``ladders``). When a unit (or the fence) raises there, the
        transaction is rolled back and the group runs again, each unit in its own savepoint,
        so that the one that failed loses only its own writes (:meth:`write`).

        Returns the connection for the next group: ``conn`` (opened when ``None``), or ``None``
        after a failed transaction, so that a broken connection is not used again.
        """
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            if conn is None:
                conn = self.write_engine.connect()
            try:
                with conn.begin():
                    outcomes = self._run_together(conn, group)
            except _UnitFailed as failed:  # rolled back: nothing of this attempt was stored
                with conn.begin():
                    outcomes = self._run_isolated(conn, group, failed.refused)
        except Exception as exc:  # fn failed alone, or the commit failed: nothing stored
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # already broken; the pool discards it
                    log.debug("closing a failed writer connection raised", exc_info=True)
                conn = None
            if len(outcomes) < len(group):
                outcomes = [(None, exc)] * len(group)
            else:  # the commit failed: a unit that had failed on its own keeps its error
                outcomes = [(None, e or exc) for _, e in outcomes]
        for unit, (result, error) in zip(group, outcomes, strict=True):
            try:
                unit.loop.call_soon_threadsafe(_settle, unit, result, error)
            except RuntimeError:  # that loop is closed: nobody waits any more
                log.debug("database write finished after its event loop closed")
        return conn
