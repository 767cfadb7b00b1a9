"""Schema migrations: a new database, today's schema, and databases of builds before migrations.

Every test runs on SQLite and on PostgreSQL (``database_url``). The older schemas are frozen in
:mod:`tests.support.legacy_schema`; their databases are filled the way those builds filled them,
then opened by this build, which must lose nothing and carry on (exactly-once step keys kept).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, inspect, text

from bot.store import Store
from bot.store import tables as t
from bot.store.database import sync_url
from bot.store.ladder import LadderStore
from bot.store.migrate import (
    BASELINE,
    SCRIPT_LOCATION,
    MigrationError,
    compare_to_head,
    current_revision,
    head_revision,
)
from escalation.models import Task
from tests.support.legacy_schema import LATER_TABLES, first_build, main_before_migrations

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(hours=4)


def _schema_differences(url: str) -> list[Any]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), t.metadata))
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return current_revision(conn)
    finally:
        engine.dispose()


async def test_a_new_database_is_migrated_to_the_schema_the_code_uses(database_url: str) -> None:
    store = Store(database_url)
    try:
        done = await store.create_schema()
        again = await store.create_schema()
    finally:
        await store.close()
    assert (done.before, done.after, done.adopted) == (None, head_revision(), False)
    assert (again.before, again.after) == (head_revision(), head_revision())
    # the frozen revisions and bot/store/tables.py describe the same tables, columns, indexes
    assert _schema_differences(database_url) == []


async def test_two_stores_migrating_at_once_both_end_at_head(database_url: str) -> None:
    """PostgreSQL's advisory lock: the second waits, then finds the database at head."""
    if database_url.startswith("sqlite"):
        pytest.skip("an SQLite file is used by one bridge process (README 'Production')")
    stores = [Store(database_url), Store(database_url)]
    try:
        results = await asyncio.gather(*(s.create_schema() for s in stores))
    finally:
        for s in stores:
            await s.close()
    assert sorted((r.before or "") for r in results) == ["", head_revision()]
    assert {r.after for r in results} == {head_revision()}


async def _fill_as_main_did(url: str) -> None:
    """Open tasks, a message, steps taken, deliveries, audit rows and an unprocessed event."""
    store = Store(url)  # no create_schema: main's create_all made the tables
    try:
        for n in range(3):
            await store.upsert_task(
                Task(id=f"task-{n}", title=f"Release {n}", created_at=NOW), DEADLINE
            )
        await store.set_message("task-0", 10, 20)
        ladder = LadderStore(store.db)
        assert await ladder.claim_step(
            "task-0", "remind", due_at=NOW, now=NOW, deliveries=[], done_outcome={"ok": True}
        )
        await store.audit(actor_name="alice", via="button", action="approve", outcome="ok")
        await store.audit(actor_name="system", via="system", action="remind", outcome="ok")
        await store.record_event("evt-1", "task.created", {"id": "task-9"}, "webhook")
    finally:
        await store.close()


async def _assert_carries_on(url: str) -> None:
    store = Store(url)
    try:
        done = await store.create_schema()
        assert done.adopted and done.before is None and done.after == head_revision()
        assert sorted(tt.task.id for tt in await store.open_tasks()) == [
            "task-0",
            "task-1",
            "task-2",
        ]
        shown = await store.get_task("task-0")
        assert shown is not None and (shown.channel_id, shown.message_id) == (10, 20)
        ladder = LadderStore(store.db)
        [step] = (await ladder.steps(["task-0"]))["task-0"]
        assert (step.step, step.status) == ("remind", "done")
        # the step taken before the upgrade is not taken again; the next one is
        again = dict(due_at=NOW, now=NOW, deliveries=[], done_outcome={"ok": True})
        assert not await ladder.claim_step("task-0", "remind", **again)  # type: ignore[arg-type]
        assert await ladder.claim_step("task-0", "breach", **again)  # type: ignore[arg-type]
        assert len(await store.audit_entries()) >= 2
        await store.set_message("task-1", 11, 21)
        assert (await store.get_task("task-1")).message_id == 21  # type: ignore[union-attr]
    finally:
        await store.close()
    assert _schema_differences(url) == []


async def test_a_database_of_main_before_migrations_is_adopted_with_nothing_lost(
    database_url: str,
) -> None:
    engine = create_engine(sync_url(database_url))
    main_before_migrations().create_all(engine)
    engine.dispose()
    await _fill_as_main_did(database_url)
    store = Store(database_url)
    try:
        unprocessed = [e.event_id for e in await store.unprocessed_events()]
    finally:
        await store.close()
    await _assert_carries_on(database_url)
    store = Store(database_url)
    try:
        # the event stored before the upgrade is still waiting to be handled
        assert [e.event_id for e in await store.unprocessed_events()] == unprocessed
        assert "evt-1" in unprocessed
    finally:
        await store.close()
    assert _revision(database_url) == head_revision()


async def test_a_database_of_the_first_build_gets_the_columns_and_tables_it_lacked(
    database_url: str,
) -> None:
    """The first build had no ``escalation_steps.status`` (users were told to ALTER TABLE)."""
    old = first_build()
    engine = create_engine(sync_url(database_url))
    old.create_all(engine)
    payload = lambda n: json.dumps(  # noqa: E731
        Task(id=f"task-{n}", title=f"Release {n}", created_at=NOW).to_wire()
    )
    with engine.begin() as conn:
        for n in range(3):
            conn.execute(
                insert(old.tables["tasks"]).values(
                    task_id=f"task-{n}",
                    payload=payload(n),
                    priority="normal",
                    status="pending",
                    created_at=NOW.timestamp(),
                    deadline=DEADLINE.timestamp(),
                    channel_id=10 if n == 0 else None,
                    message_id=20 if n == 0 else None,
                    updated_at=NOW.timestamp(),
                )
            )
        conn.execute(
            insert(old.tables["escalation_steps"]).values(
                task_id="task-0",
                step="remind",
                due_at=NOW.timestamp(),
                taken_at=NOW.timestamp(),
                late_seconds=0.0,
                outcome="{}",
            )
        )
        for action in ("approve", "remind"):
            conn.execute(
                insert(old.tables["audit"]).values(
                    at=NOW.timestamp(),
                    actor_name="alice",
                    via="button",
                    action=action,
                    outcome="ok",
                )
            )
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert not tables & set(LATER_TABLES)
    await _assert_carries_on(database_url)


def test_every_revision_is_written_as_explicit_operations() -> None:
    """A revision made with ``metadata.create_all`` would change whenever tables.py does."""
    versions = sorted((SCRIPT_LOCATION / "versions").glob("*.py"))
    assert versions[0].name.startswith(BASELINE)
    for path in versions:
        source = path.read_text(encoding="utf-8")
        assert ".create_all(" not in source, path.name
        assert "from bot" not in source and "import bot" not in source, path.name


async def test_an_unknown_revision_is_refused_with_a_clear_message(database_url: str) -> None:
    store = Store(database_url)
    try:
        await store.create_schema()
        await store.db.write(
            lambda conn: conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        )
        try:
            await store.create_schema()
        except Exception as exc:
            assert "newer build" in str(exc) and "9999" in str(exc)
        else:
            raise AssertionError("a database of a newer build was accepted")
    finally:
        await store.close()


FOREIGN_TABLES = {
    "audit": "CREATE TABLE audit (id integer primary key, username text, event text, ts text)",
    "tasks": "CREATE TABLE tasks (id integer primary key, title text, done integer)",
    "events": "CREATE TABLE events (id integer primary key, kind text)",
    # generic names with the bridge's key columns, without the bridge's tasks and events
    "runtime_state": "CREATE TABLE runtime_state (key text primary key, value text, owner text)",
    "batches": "CREATE TABLE batches (batch_id text primary key, key text, job text)",
}


@pytest.mark.parametrize("table", sorted(FOREIGN_TABLES))
async def test_another_applications_table_of_a_bridge_name_is_not_adopted(
    database_url: str, table: str
) -> None:
    """An ``audit`` table of another application was "adopted": the bridge's tables were
    created beside it, ``db upgrade`` exited 0 and every audit write failed."""
    engine = create_engine(sync_url(database_url))
    with engine.begin() as conn:
        conn.execute(text(FOREIGN_TABLES[table]))
    engine.dispose()
    store = Store(database_url)
    try:
        with pytest.raises(MigrationError) as caught:
            await store.create_schema()
    finally:
        await store.close()
    assert str(caught.value).startswith(
        f"DATABASE_URL holds tables named {table} that are not the bridge's"
    )
    assert str(caught.value).endswith("use a database or schema of its own")
    engine = create_engine(sync_url(database_url))
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == [table]  # nothing created beside it
    engine.dispose()


def test_a_revision_not_named_like_the_bridges_is_another_applications() -> None:
    assert compare_to_head("3f2a9c1b7d4e") == "foreign"
    assert compare_to_head("0099") == "ahead"
    assert compare_to_head(BASELINE) == "behind"
    assert compare_to_head(head_revision()) == "head"


async def test_a_database_of_another_alembic_application_is_refused(database_url: str) -> None:
    engine = create_engine(sync_url(database_url))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num varchar(32) primary key)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('3f2a9c1b7d4e')"))
    engine.dispose()
    store = Store(database_url)
    try:
        with pytest.raises(MigrationError) as caught:
            await store.create_schema()
    finally:
        await store.close()
    assert "'3f2a9c1b7d4e', which is not the bridge's" in str(caught.value)
    assert "newer build" not in str(caught.value)


async def test_the_open_task_reads_use_the_index_of_open_tasks(tmp_path: Path) -> None:
    """Decided tasks are never pruned: the reads of the open ones (the /metrics counts, the
    ladder's rebuild pages, an SMS reply's open ids) must not scan them all (SQLite's plan)."""
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    store = Store(url)
    try:
        await store.create_schema()
    finally:
        await store.close()
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            for query in (
                "SELECT priority, count(*) FROM tasks WHERE decision IS NULL GROUP BY priority",
                "SELECT task_id FROM tasks WHERE decision IS NULL ORDER BY created_at",
                "SELECT * FROM tasks WHERE decision IS NULL AND task_id > 'a' ORDER BY task_id",
            ):
                plan = " ".join(
                    str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}")
                )
                assert "ix_tasks_open" in plan, (query, plan)
    finally:
        engine.dispose()
