"""PostgreSQL connections lost under the bridge: a restart, a failover, a commit whose answer
never came back. Nothing the person was told differs from what the database holds, and the
first click after the server came back works."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import psycopg
import pytest
import sqlalchemy.exc

from bot.store import Store
from bot.store.ladder import LadderStore, NewDelivery
from tests.bot_unit.test_decision_answers import ALICE, OURS, bridge_with, ok
from tests.support.databases import fresh_postgres_database
from tests.support.pg_cut import CommitCutter


@pytest.fixture
def database_url() -> Iterator[str]:
    with fresh_postgres_database("test_conn_loss") as url:
        yield url


def through(cutter: CommitCutter, url: str) -> str:
    """``url`` with its server replaced by the proxy."""
    parts = urlsplit(url)
    netloc = (
        f"{parts.username}@127.0.0.1:{cutter.port}"
        if parts.username
        else f"127.0.0.1:{cutter.port}"
    )
    return parts._replace(netloc=netloc).geturl() + "?sslmode=disable"


def restart_server(url: str) -> int:
    """What a PostgreSQL restart or failover does to the bridge's connections."""
    parts = urlsplit(url)
    admin = f"postgresql://{parts.username or 'postgres'}@{parts.hostname}:{parts.port or 5432}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (parts.path.lstrip("/"),),
        ).fetchone()
    return int(row[0]) if row else 0


async def test_a_decision_whose_commit_answer_was_lost_leaves_no_mark(database_url: str) -> None:
    cutter = CommitCutter()
    store = Store(through(cutter, database_url))
    await store.create_schema()
    bridge, calls = await bridge_with(store, [ok(OURS)])
    try:
        cutter.marker = b"inflight_key"  # the in-flight mark's COMMIT loses its answer
        first = await bridge.decide("t1", "approved", ALICE, idempotency_seed="click-1")
        assert cutter.cuts == 1
        assert first.kind == "failed" and "nothing was sent" in first.message
        row = await store.get_task("t1")
        assert row is not None and row.inflight_decision is None  # as the person was told
        assert calls == []
        again = await bridge.decide("t1", "approved", ALICE, idempotency_seed="click-2")
        assert again.kind == "done"  # not "another decision is being recorded"
        assert calls.count("POST /v1/tasks/t1/complete") == 1
    finally:
        await store.close()
        cutter.close()


async def test_a_page_whose_claim_answer_was_lost_is_sent_when_the_step_is_retried(
    database_url: str,
) -> None:
    cutter = CommitCutter()
    store = Store(through(cutter, database_url))
    await store.create_schema()
    ladder = LadderStore(store.db)
    now = datetime.now(UTC)
    try:
        await ladder.claim_step(
            "t", "sla_breach", due_at=now, now=now, deliveries=[NewDelivery("sms", "alice")]
        )
        (row,) = await ladder.deliveries(task_id="t")
        cutter.marker = b"UPDATE escalation_deliveries"  # the claim's COMMIT loses its answer
        with pytest.raises(sqlalchemy.exc.OperationalError):
            await ladder.claim_deliveries([row.id], now)
        assert cutter.cuts == 1
        (after,) = await ladder.deliveries(task_id="t")
        assert after.status == "pending"  # given back: never left claimed and unsent
        assert await ladder.claim_deliveries([row.id], now)  # the step's retry 5 s later
    finally:
        await store.close()
        cutter.close()


async def test_the_first_click_after_a_database_restart_works(database_url: str) -> None:
    store = Store(database_url)
    await store.create_schema()
    bridge, _ = await bridge_with(store, [ok(OURS)])
    try:
        await store.save_state("warm", {"x": 1})  # the writer holds a connection
        assert await store.get_task("t1") is not None
        assert await store.ping() is True
        store.db.idle_recheck_seconds = 0.0  # "idle long enough": no sleep in the test
        assert restart_server(database_url) >= 1
        first = await bridge.decide("t1", "approved", ALICE, idempotency_seed="click-1")
        assert first.kind == "done", first.message
        assert await store.ping() is True
    finally:
        await store.close()
