"""The leader lease: one row, a fencing token, renewals observed rather than clock-compared.

Several ``factory-bridge run`` processes may share one PostgreSQL database (README "Production", "Replicas:
one leader, hot standbys"). The leader is the holder of the ``leader_lease`` row
(:data:`bot.store.tables.leader_lease`):

* **renew** — the leader bumps ``version`` every lease / 3 with a compare-and-set on its
  ``token`` and ``holder``; a renewal that changes no row means another process took over.
* **lapse** — a standby remembers ``(token, holder, version)`` and *when it saw it change*, on
  its own monotonic clock. When nothing changed for a whole lease it takes the row over with
  ``token + 1`` (compare-and-set on the ``token`` and ``version`` it saw). No wall clocks are
  compared across hosts, so clock skew between machines cannot cut a lease short.
* **fence** — every leader-only write runs after :meth:`Lease.fence`, in its own transaction
  (:meth:`bot.store.database.Database.write` ``fenced=True``; once per group-committed
  transaction, before its first unit): the row's token must still be
  this process's, or the write raises :class:`NotLeader` and nothing of it is stored. On
  PostgreSQL the fence reads the row ``FOR SHARE``, so a takeover (an ``UPDATE`` of that row)
  waits until the fenced transaction has committed: a write either lands before the new
  leader's term or not at all. A paused leader (``SIGSTOP``) that resumes after a takeover
  therefore cannot claim a ladder step, begin a decision or post a message (Kleppmann,
  "How to do distributed locking", fencing tokens).

Why a lease row and not ``pg_advisory_lock``: an advisory lock lives in one database session, so
the leader would have to keep a dedicated connection open (a connection pool, a proxy such as
PgBouncer in transaction mode, or a network blip silently drops it) and it gives no token to fence
writes with; a row works on SQLite too (one code path, tested on both engines) and its token is
checked inside the very transaction of each write.

A holder known dead: a holder id (:func:`holder_id`) names the host, this boot of it and the PID
namespace, and the process. A process on the same host, boot and PID namespace as the holder can
see that the holder's process is gone (``kill -9``, a crash, a restart by systemd): then the
lease is taken at once rather than after a whole lease (bench ``restart``: a restarted bridge
waited 10 s for its own dead predecessor's lease). A holder elsewhere, or whose process id is in
use (even by another program), is waited out as above; the fencing token guards either way.

Timing (``lease`` = ``BRIDGE_LEADER_LEASE_SECONDS``): the leader counts its lease from the moment
it *started* its last successful renewal; a standby counts from the moment it *finished* reading
an unchanged row. So the leader's own deadline always passes before any standby may take over.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Connection

from bot.store import tables as t
from bot.store.database import Database, NotLeader, driver_cursor

__all__ = [
    "LEASE_NAME",
    "Lease",
    "LeaseView",
    "NotLeader",
    "holder_dead_here",
    "holder_id",
    "process_space",
]

T = TypeVar("T")

#: PostgreSQL's largest ``lock_timeout`` in ms (a 32-bit int; documentation, "Client
#: Connection Defaults").
PG_MAX_TIMEOUT_MS = 2_147_483_647.0

#: The one lease row's name (all bridges sharing a database compete for it).
LEASE_NAME = "bridge"

_c = t.leader_lease.c

#: The fence's read, straight to the driver: it runs before every leader-only write, and
#: SQLAlchemy's per-statement work (building the select, its cache key) cost more than the
#: query (see :func:`bot.store.database.driver_cursor`). PostgreSQL adds ``FOR SHARE``.
_FENCE_SQL = "SELECT token, holder FROM leader_lease WHERE name = ?"


@functools.cache
def process_space() -> str:
    """Where this process's pid means something: a digest of this boot of this machine
    (Linux ``/proc/sys/kernel/random/boot_id``, new at every boot, so two cloned machines
    that share a hostname differ) and of its PID namespace (the inode of
    ``/proc/self/ns/pid``; every container has its own). ``-`` where either cannot be read:
    then no holder is ever known dead (:func:`holder_dead_here`)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            boot_id = boot.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return "-"
    return hashlib.sha256(f"{boot_id}:{namespace}".encode()).hexdigest()[:12]


def holder_id() -> str:
    """This process's lease holder id: ``host:space:pid:random`` (``space``:
    :func:`process_space`; the random part tells apart two processes that got the same pid
    one after the other)."""
    return f"{socket.gethostname()}:{process_space()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_dead_here(holder: str | None) -> bool:
    """Whether ``holder`` (a :func:`holder_id`) is a process of this machine's current boot
    and this PID namespace (:func:`process_space`) that no longer exists.

    ``False`` whenever that cannot be known for sure: another host, boot or namespace, an id
    of another form, or a pid in use by any process (``os.kill(pid, 0)`` finds it, or it is not
    ours to signal).
    """
    if holder is None:
        return False
    parts = holder.split(":")
    if len(parts) != 4 or not parts[2].isdigit():
        return False
    host, namespace, pid, _ = parts
    if namespace == "-" or host != socket.gethostname() or namespace != process_space():
        return False
    if int(pid) == os.getpid():
        return False  # this very process: alive
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


@dataclass(frozen=True)
class LeaseView:
    """The lease row as last read: ``token`` (fencing token), ``holder`` (``None`` when
    released), ``version`` (renewal counter) and the holder's ``lease_seconds``."""

    token: int
    holder: str | None
    version: int
    lease_seconds: float


def _view(row: Any) -> LeaseView:
    return LeaseView(int(row.token), row.holder, int(row.version), float(row.lease_seconds))


class Lease:
    """This process's side of the leader lease (see the module docstring).

    Parameters
    ----------
    db:
        The bridge's :class:`~bot.store.database.Database` (its schema has ``leader_lease``).
        Lease statements run on their own connections (not behind the group-commit writer),
        except on an in-memory SQLite database, which exists on the writer's connection only.
    holder:
        This process's id (:func:`holder_id`), unique among the replicas.
    lease_seconds:
        ``BRIDGE_LEADER_LEASE_SECONDS``: how long a standby waits without seeing a renewal.
    clock:
        Monotonic seconds (``time.monotonic``); tests inject one. Called on the event loop.
    wall_clock:
        Unix seconds, only stored in ``renewed_at`` for people.
    exclusive:
        ``True`` when nothing else can share the database (an SQLite file, locked by
        :mod:`bot.leadership.file_lock`): the row is taken at once, even from a holder that
        died without releasing it.
    name:
        The lease row's name.
    """

    def __init__(
        self,
        db: Database,
        *,
        holder: str,
        lease_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        exclusive: bool = False,
        name: str = LEASE_NAME,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, not {lease_seconds!r}")
        self.db = db
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.exclusive = exclusive
        self.name = name
        #: monotonic seconds (injected by tests)
        self.clock = clock
        self._wall_clock = wall_clock
        #: the fencing token while this process leads, else ``None``
        self.token: int | None = None
        #: monotonic time until which this process may act as leader (``None``: standby)
        self.deadline: float | None = None
        #: the row as last seen (``None`` before the first look or when absent)
        self.seen: LeaseView | None = None
        self._seen_at: float | None = None  # monotonic time it was seen changed

    # ------------------------------------------------------------------ state
    @property
    def is_leader(self) -> bool:
        """Whether this process holds the lease and its deadline has not passed.

        An ``exclusive`` lease (SQLite, file-locked) has no deadline: no other process can take
        it, so a database that takes no write for a while (a full disk) does not depose the
        only bridge there is.
        """
        if self.exclusive:
            return self.token is not None
        return self.deadline is not None and self.clock() < self.deadline

    @property
    def lapses_at(self) -> float | None:
        """Monotonic time at which the lease as last seen lapses for this standby (``None``
        when it was not seen held); the leadership loop looks again right then."""
        seen, seen_at = self.seen, self._seen_at
        if self.token is not None or seen is None or seen.holder is None or seen_at is None:
            return None
        return seen_at + max(self.lease_seconds, seen.lease_seconds)

    # ------------------------------------------------------------------ operations
    async def acquire(self) -> bool:
        """A standby's look at the lease: take it when free, released, or lapsed.

        Returns ``True`` when this process is now the leader (:attr:`token` set). Lapsed means:
        the row's ``(token, holder, version)`` is the one this process saw unchanged for at
        least ``max(lease_seconds, the holder's lease_seconds)`` of its own clock, or its
        holder is a process of this host that is gone (:func:`holder_dead_here`).

        Raises
        ------
        sqlalchemy.exc.SQLAlchemyError
            When the database cannot be reached (the caller tries again later).
        """
        if self.token is not None:
            return await self.renew()
        seen, seen_at = self.seen, self._seen_at
        started = self.clock()
        holder, lease_seconds, wall = self.holder, self.lease_seconds, self._wall_clock()
        exclusive, name = self.exclusive, self.name

        def work(conn: Connection) -> tuple[bool, LeaseView]:
            row = conn.execute(
                select(t.leader_lease).where(_c.name == name).with_for_update()
            ).first()
            if row is None:
                conn.execute(
                    insert(t.leader_lease).values(
                        name=name,
                        token=1,
                        holder=holder,
                        version=0,
                        renewed_at=wall,
                        lease_seconds=lease_seconds,
                    )
                )
                return True, LeaseView(1, holder, 0, lease_seconds)
            current = _view(row)
            lapsed = (
                seen == current
                and seen_at is not None
                and started - seen_at >= max(lease_seconds, current.lease_seconds)
            ) or holder_dead_here(current.holder)
            if not (exclusive or current.holder is None or lapsed):
                return False, current
            taken = conn.execute(
                update(t.leader_lease)
                .where(
                    and_(
                        _c.name == name,
                        _c.token == current.token,
                        _c.version == current.version,
                    )
                )
                .values(
                    token=current.token + 1,
                    holder=holder,
                    version=0,
                    renewed_at=wall,
                    lease_seconds=lease_seconds,
                )
            )
            if taken.rowcount != 1:
                return False, current
            return True, LeaseView(current.token + 1, holder, 0, lease_seconds)

        won, after = await self._run(work)
        if won:
            self.token = after.token
            self.deadline = started + lease_seconds
            self.seen, self._seen_at = after, self.clock()
            return True
        if after != seen:
            self.seen, self._seen_at = after, self.clock()
        return False

    async def renew(self) -> bool:
        """The leader's renewal: ``version + 1`` if the row still carries this token.

        Returns ``False`` — and this process is no longer leader — when another process took
        the lease over. Raises the database's error when it cannot be reached (the lease stays
        held until :attr:`deadline`; the caller decides).
        """
        token = self.token
        if token is None:
            return False
        started = self.clock()
        holder, name, wall, lease_seconds = (
            self.holder,
            self.name,
            self._wall_clock(),
            self.lease_seconds,
        )

        def work(conn: Connection) -> bool:
            result = conn.execute(
                update(t.leader_lease)
                .where(and_(_c.name == name, _c.token == token, _c.holder == holder))
                .values(version=_c.version + 1, renewed_at=wall, lease_seconds=lease_seconds)
            )
            return result.rowcount == 1

        if await self._run(work):
            if self.token == token:
                self.deadline = started + lease_seconds
            return self.token == token
        self.step_down()
        return False

    async def release(self) -> None:
        """Give the lease up (graceful stop): a standby takes it at its next look."""
        token = self.token
        self.step_down()
        if token is None:
            return
        holder, name = self.holder, self.name

        def work(conn: Connection) -> None:
            conn.execute(
                update(t.leader_lease)
                .where(and_(_c.name == name, _c.token == token, _c.holder == holder))
                .values(holder=None, version=_c.version + 1)
            )

        await self._run(work)

    def step_down(self) -> None:
        """Stop being leader in this process at once: every fenced write now fails."""
        self.token = None
        self.deadline = None

    async def read(self) -> LeaseView | None:
        """The lease row as stored now (``None`` when no process ever led)."""
        name = self.name

        def work(conn: Connection) -> LeaseView | None:
            row = conn.execute(select(t.leader_lease).where(_c.name == name)).first()
            return None if row is None else _view(row)

        return await self._run(work)

    # ------------------------------------------------------------------ fencing
    def fence(self, conn: Connection) -> None:
        """Check, inside a write's transaction, that this process still holds the lease.

        Runs on the database's writer thread (:attr:`Database.fence`). On PostgreSQL the row is
        read ``FOR SHARE``: a takeover waits for this transaction to end.

        Raises
        ------
        NotLeader
            When this process is not the leader or the row carries another token.
        """
        token = self.token
        cursor, sql = driver_cursor(conn)
        statement = _FENCE_SQL if conn.dialect.name == "sqlite" else _FENCE_SQL + " FOR SHARE"
        cursor.execute(sql(statement), (self.name,))
        row = cursor.fetchone()
        if token is None or row is None or row[0] != token or row[1] != self.holder:
            current = "none" if row is None else f"{row[0]} held by {row[1]}"
            raise NotLeader(
                f"leader-only write refused: this process ({self.holder}) holds token "
                f"{token}, the lease is at {current}"
            )

    # ------------------------------------------------------------------ plumbing
    async def _run(self, work: Callable[[Connection], T]) -> T:
        if self.db.is_sqlite and self.db.read_engine is self.db.write_engine:
            return await self.db.write(work)  # in-memory: only the writer's connection has it
        return await asyncio.to_thread(self._run_sync, work)

    def _run_sync(self, work: Callable[[Connection], T]) -> T:
        with self.db.write_engine.begin() as conn:
            if not self.db.is_sqlite:
                # a lock held by a frozen process must not hold up the lease loop for good:
                # give up after a third of a lease and look again at the next round
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(self.lock_timeout_ms)}")
            return work(conn)

    @property
    def lock_timeout_ms(self) -> float:
        """Longest wait for a row lock in a lease statement on PostgreSQL (ms): a third of
        the lease, at least 100 ms, at most PostgreSQL's largest ``lock_timeout``
        (2147483647 ms, ≈ 24.8 days: a longer lease would make every lease statement fail)."""
        return min(max(100.0, self.lease_seconds * 1000 / 3), PG_MAX_TIMEOUT_MS)
