"""Planner statistics on a PostgreSQL server without autovacuum (bot.store.statistics).

What a user would notice: after a storm fills the ladder's tables, a claim of a bundle's
deliveries is planned through the primary key (a few ms), not by reading every pending row.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Connection

from bot.store import Store
from bot.store import tables as t
from bot.store.statistics import PlannerStatistics, stale_tables
from tests.support.databases import SKIP_REASON, PostgresServer


async def _fill_deliveries(store: Store, count: int) -> None:
    now = time.time()
    rows = [
        {
            "task_id": f"t{i}",
            "step": "reminder_dm",
            "channel": "dm",
            "recipient": "alice",
            "due_at": now,
            "held": 0,
            "status": "pending",
            "created_at": now,
        }
        for i in range(count)
    ]
    await store.db.write(lambda conn: conn.execute(insert(t.escalation_deliveries), rows))
    if store.db.dialect_name == "postgresql":
        # a backend reports its row counts within a second or so; the test has them now
        await store.db.write(lambda conn: conn.exec_driver_sql("SELECT pg_stat_force_next_flush()"))


async def test_on_sqlite_the_bridge_leaves_statistics_alone(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'bridge.db'}")
    try:
        await store.create_schema()
        stats = PlannerStatistics(store.db, interval_seconds=30)
        assert not await stats.autovacuum_off()
        await stats.start()
        assert not stats.running
        await stats.stop()
    finally:
        await store.close()


@pytest.fixture
async def pg_store(postgres_server: PostgresServer | None) -> AsyncIterator[Store]:
    """A fresh store on a PostgreSQL schema of its own (``TEST_DATABASE_URL``)."""
    if postgres_server is None:
        pytest.skip(SKIP_REASON)
    schema, url = postgres_server.fresh_schema()
    store = Store(url)
    try:
        await store.create_schema()
        yield store
    finally:
        await store.close()
        postgres_server.drop_schema(schema)


async def test_a_table_filled_since_start_is_analyzed_and_claims_use_the_primary_key(
    pg_store: Store,
) -> None:
    store = pg_store
    await _fill_deliveries(store, 20_000)
    stats = PlannerStatistics(store.db, interval_seconds=30)
    analyzed = await stats.refresh()

    def analyzed_at(conn: Connection) -> object:
        return conn.exec_driver_sql(
            "SELECT COALESCE(last_analyze, last_autoanalyze) FROM pg_stat_user_tables "
            "WHERE schemaname = current_schema() AND relname = 'escalation_deliveries'"
        ).scalar()

    assert await store.db.read(analyzed_at) is not None  # by this round (or autovacuum's)
    assert set(analyzed) <= set(t.metadata.tables)
    assert await store.db.read(stale_tables) == []  # nothing left due
    assert await stats.refresh() == []  # nothing changed since: no second ANALYZE

    ids = ", ".join(str(i) for i in range(1_000, 1_500))
    plan = await store.db.read(
        lambda conn: "\n".join(
            row[0]
            for row in conn.exec_driver_sql(
                "EXPLAIN UPDATE escalation_deliveries SET status = 'claimed' "
                f"WHERE id IN ({ids}) AND status = 'pending'"
            )
        )
    )
    assert "escalation_deliveries_pkey" in plan


async def test_switched_off_it_never_runs(store: Store) -> None:
    stats = PlannerStatistics(store.db, interval_seconds=0)
    await stats.start()
    assert not stats.running
    await stats.stop()
