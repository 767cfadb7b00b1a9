"""Store.search_open_tasks: the ``task`` autocomplete's one bounded query, on both engines.

Discord shows at most 25 autocomplete choices and drops an answer after 3 s (Discord docs,
"Receiving and Responding"), so the database matches, orders and limits: open tasks only,
what was typed found in the id or the title (case ignored, ``%`` and ``_`` plain
characters), overdue first, then by deadline, then by id, as the autocomplete always ordered.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.store import Store, TrackedTask
from escalation.models import Task

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
OPEN = 3000


def task(task_id: str, title: str, **fields: Any) -> Task:
    created = NOW - timedelta(hours=1)
    return Task.model_validate({"id": task_id, "title": title, "createdAt": created, **fields})


async def seed(store: Store) -> None:
    """3,000 open releases (deadlines a minute apart, the last ones first), a few decided
    tasks that match the same words, odd titles, and two overdue tasks."""
    releases = [
        (task(f"rel-{i:04d}", f"Release {i} of the shop", priority="low"), OPEN - i)
        for i in range(OPEN)
    ]
    decided = [
        (task(f"rel-dec-{i}", f"Release decided {i} of the shop", decision="approved"), -9)
        for i in range(3)
    ]
    odd = [
        (task("pct-1", "Rollout 100% done"), 5000),
        (task("und-1", "ship_it for the shop"), 5001),
        (task("und-2", "shipXit decoy"), 5002),
        (task("uml-1", "Über-Release Zürich"), 5003),
        (task("late-1", "Overdue by its deadline"), -60),
        (task("late-2", "Breached by the factory", slaBreached=True), 6000),
    ]
    items = releases + decided + odd
    for start in range(0, len(items), 500):
        await asyncio.gather(
            *(
                store.upsert_task(t, NOW + timedelta(minutes=minutes))
                for t, minutes in items[start : start + 500]
            )
        )


async def search(store: Store, text: str) -> list[TrackedTask]:
    return await store.search_open_tasks(text, now=NOW.timestamp())


async def ids(store: Store, text: str) -> list[str]:
    return [t.task_id for t in await search(store, text)]


async def test_at_most_25_open_matches_by_id_or_title_wildcards_plain(store: Store) -> None:
    await seed(store)
    # nothing typed: overdue first (past the deadline, or breached says the factory), then
    # by deadline; decided tasks are never offered
    everything = await search(store, "   ")
    assert len(everything) == 25
    assert all(t.decision is None for t in everything)
    assert [t.task_id for t in everything[:2]] == ["late-1", "late-2"]
    assert [t.task_id for t in everything[2:]] == [f"rel-{i:04d}" for i in range(2999, 2976, -1)]
    assert everything[2].task.title == "Release 2999 of the shop"
    # an id prefix, a word of the title, in any case
    assert await ids(store, "REL-00") == [f"rel-{i:04d}" for i in range(99, 74, -1)]
    by_word = await search(store, "SHOP")
    assert len(by_word) == 25
    assert all("shop" in t.task.title.lower() and t.decision is None for t in by_word)
    assert await ids(store, "zürich") == ["uml-1"]  # not only ASCII letters
    assert await ids(store, "über-RELEASE") == ["uml-1"]
    assert await ids(store, "no such task") == []
    assert await ids(store, "decided") == []
    assert await ids(store, "rel-dec") == []
    # % and _ are what they are, not SQL wildcards
    assert await ids(store, "%") == ["pct-1"]
    assert await ids(store, "100%") == ["pct-1"]
    assert await ids(store, "0% d") == ["pct-1"]
    assert await ids(store, "_") == ["und-1"]
    assert await ids(store, "ship_it") == ["und-1"]
    assert await ids(store, "\\") == []


def as_before(tasks: list[TrackedTask], typed: str) -> list[str]:
    """What the autocomplete offered when it read every open task and filtered in Python."""
    needle = typed.strip().lower()
    matches = [
        t
        for t in tasks
        if not needle or needle in t.task.title.lower() or needle in t.task_id.lower()
    ]
    matches.sort(
        key=lambda t: (
            0 if t.task.sla_breached or t.deadline <= NOW else 1,
            t.deadline.timestamp(),
            t.task_id,
        )
    )
    return [t.task_id for t in matches[:25]]


async def test_offers_what_reading_every_open_task_offered(store: Store) -> None:
    titles = ["Ship it", "SHIP the Shop", "Ärger mit Öl", "a  b\tc", "x"]
    await asyncio.gather(
        *(
            store.upsert_task(
                task(
                    f"T-{n}",
                    title,
                    slaBreached=n % 7 == 0,
                    decisionData={"slaBreached": True} if n % 3 == 0 else {},
                    decision="approved" if n % 4 == 3 else None,
                ),
                NOW + timedelta(minutes=(n * 37) % 90 - 30),
            )
            for n, title in enumerate(titles * 8)
        )
    )
    everything = await store.open_tasks()
    for typed in [
        "",
        " ",
        "ship",
        "SHIP ",
        "t-1",
        "T-2",
        "ärger",
        "öL",
        "  b",
        "\\t",
        "zzz",
    ]:
        assert await ids(store, typed) == as_before(everything, typed), typed
