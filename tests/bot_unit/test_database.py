"""The database layer: one writer thread with group commit, readers on their own threads."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.store.database import Database

metadata = MetaData()
items = Table("items", metadata, Column("id", Integer, primary_key=True), Column("name", String))


@pytest.fixture
async def db(database_url: str):  # type: ignore[no-untyped-def]
    database = Database(database_url)
    await database.write(lambda conn: metadata.create_all(conn))
    yield database
    await database.close()


def _insert(id_: int, name: str):  # type: ignore[no-untyped-def]
    def work(conn: Connection) -> int:
        conn.execute(insert(items).values(id=id_, name=name))
        return id_

    return work


def _names(conn: Connection) -> list[str]:
    return [r.name for r in conn.execute(select(items).order_by(items.c.id))]


async def _hold_writer(db: Database) -> tuple[threading.Event, asyncio.Future[None]]:
    """Occupy the writer thread until the returned event is set (so later units queue up)."""
    started = threading.Event()
    release = threading.Event()

    def blocker(conn: Connection) -> None:
        started.set()
        release.wait(10)

    future = asyncio.ensure_future(db.write(blocker))
    await asyncio.to_thread(started.wait, 10)
    return release, future


async def test_a_failing_unit_in_a_group_loses_only_its_own_writes(db: Database) -> None:
    release, blocked = await _hold_writer(db)
    first = asyncio.ensure_future(db.write(_insert(1, "one")))
    duplicate = asyncio.ensure_future(db.write(_insert(1, "again")))  # same key: refused
    third = asyncio.ensure_future(db.write(_insert(3, "three")))
    await asyncio.sleep(0)  # let the three writes reach the queue
    release.set()
    await blocked
    assert await first == 1
    assert await third == 3
    with pytest.raises(IntegrityError):
        await duplicate
    assert await db.read(_names) == ["one", "three"]


async def test_a_unit_that_raises_half_way_leaves_nothing(db: Database) -> None:
    def half(conn: Connection) -> None:
        conn.execute(insert(items).values(id=7, name="half"))
        raise ValueError("changed my mind")

    with pytest.raises(ValueError, match="changed my mind"):
        await db.write(half)
    release, blocked = await _hold_writer(db)
    in_group = asyncio.ensure_future(db.write(half))
    kept = asyncio.ensure_future(db.write(_insert(8, "kept")))
    await asyncio.sleep(0)
    release.set()
    await blocked
    with pytest.raises(ValueError):
        await in_group
    await kept
    assert await db.read(_names) == ["kept"]


async def test_a_group_that_succeeds_runs_without_savepoints(db: Database) -> None:
    """Savepoints are paid for only when a unit fails (two round trips per unit on
    PostgreSQL): a group whose units all succeed runs none; one with a failure runs again
    with one per unit, and its other units are still stored once."""
    statements: list[str] = []

    @event.listens_for(db.write_engine, "before_cursor_execute")
    def _seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement.split()[0].upper())

    release, blocked = await _hold_writer(db)
    group = [asyncio.ensure_future(db.write(_insert(i, f"n{i}"))) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    release.set()
    await blocked
    assert [await f for f in group] == [1, 2, 3]
    assert "SAVEPOINT" not in statements
    assert statements.count("INSERT") == 3

    statements.clear()
    release, blocked = await _hold_writer(db)
    kept = asyncio.ensure_future(db.write(_insert(4, "kept")))
    duplicate = asyncio.ensure_future(db.write(_insert(1, "again")))
    await asyncio.sleep(0)
    release.set()
    await blocked
    assert await kept == 4
    with pytest.raises(IntegrityError):
        await duplicate
    assert statements.count("SAVEPOINT") == 2  # the second attempt: one per unit
    assert await db.read(_names) == ["n1", "n2", "n3", "kept"]


async def test_close_commits_what_was_queued_and_refuses_more(tmp_path: Path) -> None:
    path = tmp_path / "close.sqlite"
    database = Database(f"sqlite:///{path}")
    await database.write(lambda conn: metadata.create_all(conn))
    pending = [asyncio.ensure_future(database.write(_insert(i, f"n{i}"))) for i in range(20)]
    await asyncio.sleep(0)
    await database.close()
    assert [await p for p in pending] == list(range(20))
    with pytest.raises(RuntimeError, match="closed"):
        await database.write(_insert(99, "late"))
    reopened = Database(f"sqlite:///{path}")
    try:
        assert len(await reopened.read(_names)) == 20
    finally:
        await reopened.close()


async def test_an_in_memory_database_is_one_database(tmp_path: Path) -> None:
    database = Database("sqlite://")
    try:
        await database.write(lambda conn: metadata.create_all(conn))
        await database.write(_insert(1, "x"))
        assert await database.read(_names) == ["x"]
    finally:
        await database.close()


async def test_a_failed_transaction_or_read_does_not_break_the_next_one(db: Database) -> None:
    """Connections are kept between units; one whose unit failed is replaced, not reused."""
    await db.write(_insert(1, "first"))
    with pytest.raises(IntegrityError):
        await db.write(_insert(1, "same id"))  # alone in its group: the whole transaction fails

    def broken_read(conn: Connection) -> None:
        conn.exec_driver_sql("SELECT * FROM no_such_table")

    for _ in range(3):  # more failures than reader threads
        with pytest.raises(Exception, match="no_such_table"):
            await db.read(broken_read)
    await db.write(_insert(2, "second"))
    assert await db.read(_names) == ["first", "second"]


class _Refused(Exception):
    pass


async def test_the_fence_runs_once_per_group_and_refuses_only_fenced_units(db: Database) -> None:
    """Leader-only units of one group share one fence check at the start of the transaction;
    when it refuses, they fail with its error and nothing of theirs is stored, while the
    group's other units commit."""
    checks: list[str] = []
    verdict = {"leader": True}

    def fence(conn: Connection) -> None:
        checks.append("checked")
        conn.execute(select(items.c.id)).all()  # a statement inside the transaction
        if not verdict["leader"]:
            raise _Refused("not the leader")

    db.fence = fence
    release, blocked = await _hold_writer(db)
    fenced = [asyncio.ensure_future(db.write(_insert(i, f"f{i}"), fenced=True)) for i in (1, 2, 3)]
    free = asyncio.ensure_future(db.write(_insert(4, "free")))
    await asyncio.sleep(0)
    release.set()
    await blocked
    assert [await f for f in fenced] == [1, 2, 3]
    assert await free == 4
    assert checks == ["checked"]  # one check for the three fenced units of the group

    verdict["leader"] = False
    release, blocked = await _hold_writer(db)
    refused = [asyncio.ensure_future(db.write(_insert(i, f"r{i}"), fenced=True)) for i in (5, 6)]
    kept = asyncio.ensure_future(db.write(_insert(7, "kept")))
    await asyncio.sleep(0)
    release.set()
    await blocked
    for future in refused:
        with pytest.raises(_Refused):
            await future
    assert await kept == 7
    with pytest.raises(_Refused):  # alone in its group: the whole transaction is refused
        await db.write(_insert(8, "alone"), fenced=True)
    assert await db.read(_names) == ["f1", "f2", "f3", "free", "kept"]
    assert len(checks) == 3


async def test_unfenced_groups_skip_the_fence(db: Database) -> None:
    calls: list[int] = []
    db.fence = lambda conn: calls.append(1)
    await db.write(_insert(1, "a"))
    assert calls == []
    await db.write(_insert(2, "b"), fenced=True)
    assert calls == [1]


def test_the_session_timeout_keeps_the_urls_own_options() -> None:
    """``connect_args`` replace the URL's parameters of the same name: a DATABASE_URL with
    ``options=-csearch_path=…`` (a schema per tenant, or per test) keeps its schema."""
    from bot.store.database import postgres_session_args

    own = postgres_session_args("postgresql://u@h/db?options=-csearch_path%3Dtenant_7")
    assert own["options"] == "-csearch_path=tenant_7 -c idle_in_transaction_session_timeout=10000"
    plain = postgres_session_args("postgresql://u@h/db")
    assert plain["options"] == "-c idle_in_transaction_session_timeout=10000"
