"""Smart batching end to end (master plan §7), with ``factory-bridge run`` as a separate process.

Routine tasks of one kind arriving together → one batch message with a risk per item;
"Approve All Low-Risk" → one bulk call; a picked item's Reject → a reason modal for that item
only; a burst of 200 → ONE message in pages of 20 (◀ / ▶, re-read from the store, working
after a restart; "Approve All Low-Risk (200)" covers every page) and no 429; a critical task
never waits.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from bot.factory.signing import signed_headers
from bot.store import Store
from sandbox.discord_emulator import RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, WEBHOOK_SECRET, World
from tests.support.harness import BridgeProcess, wait_until

BULK = r"/v1/tasks/bulk"
COMPLETE = r"/v1/tasks/[^/]+/complete"
PICK_PREFIX = "fb:b:pick:"


def _walk(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for comp in components:
        found.append(comp)
        found.extend(_walk(comp.get("components") or []))
    return found


def pick_select(message: RecordedMessage) -> dict[str, Any] | None:
    """The "Pick an item…" select of a batch message, if it has one."""
    for comp in _walk(message.components):
        if comp.get("type") == 3 and str(comp.get("custom_id", "")).startswith(PICK_PREFIX):
            return comp
    return None


def batch_messages(world: World) -> list[RecordedMessage]:
    """Non-ephemeral batch messages (their embed title starts with 📋) in #factory-tasks."""
    return [
        m
        for m in world.discord.messages(TASKS_CHANNEL_ID)
        if not m.deleted and not m.ephemeral and m.embeds and m.embeds[0]["title"].startswith("📋")
    ]


def single_messages(world: World) -> list[RecordedMessage]:
    """Non-ephemeral single-task messages in #factory-tasks."""
    return [
        m
        for m in world.discord.messages(TASKS_CHANNEL_ID)
        if not m.deleted and not m.ephemeral and m.embeds and m.embeds[0]["title"].startswith("🔔")
    ]


def item_ids(message: RecordedMessage) -> list[str]:
    """Task ids a batch message lists (the pick select's option values)."""
    select = pick_select(message)
    return [str(o["value"]) for o in (select or {}).get("options", [])]


def line_of(message: RecordedMessage, title: str) -> str:
    """The description line of the item called ``title``."""
    lines = [ln for ln in message.embeds[0]["description"].splitlines() if f"**{title}**" in ln]
    assert len(lines) == 1, message.embeds[0]["description"]
    return lines[0]


def results(total: int, failed: int = 0, skipped: int = 0, coverage: float = 90) -> dict:
    return {
        "total": total,
        "passed": total - failed - skipped,
        "failed": failed,
        "skipped": skipped,
        "coveragePercent": coverage,
    }


async def routine(world: World, title: str, **overrides: Any) -> dict:
    """A routine (medium) code review task of the batch key ``review:review``."""
    fields: dict[str, Any] = {
        "title": title,
        "type": "review",
        "stageName": "review",
        "priority": "medium",
        "pipelineId": f"{title}-mcp-server",
        "context": {"summary": f"Review {title}.", "testResults": results(47)},
    }
    fields.update(overrides)
    return await world.factory.create_task(**fields)


async def deliver_burst(world: World, tasks: list[dict], concurrency: int = 20) -> None:
    """POST a signed ``task.created`` webhook per task to the bridge, ``concurrency`` at once."""
    gate = asyncio.Semaphore(concurrency)

    async def deliver(client: httpx.AsyncClient, task: dict) -> None:
        body = json.dumps(
            {
                "type": "task.created",
                "timestamp": task["createdAt"],
                "channel": "tasks:pending",
                "data": {"task": task},
            }
        ).encode()
        headers = signed_headers(
            WEBHOOK_SECRET, body, event_id=f"evt-{task['id']}", timestamp=int(time.time())
        )
        headers["Content-Type"] = "application/json"
        async with gate:
            response = await client.post("/events", content=body, headers=headers)
        assert response.status_code == 202, response.text

    async with httpx.AsyncClient(base_url=world.bridge_url, timeout=30) as client:
        await asyncio.gather(*(deliver(client, t) for t in tasks))


async def test_five_servers_one_message_bulk_approve_and_item_reject(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(BATCH_ENABLED="true", BATCH_GROUP_WAIT_SECONDS="2")
    await bridge.start()
    alice = world.people.alice
    started = time.monotonic()
    low = [await routine(world, name) for name in ("freshdesk", "helpscout", "close")]
    stripe = await routine(
        world, "stripe", context={"summary": "Stripe.", "testResults": results(47, skipped=1)}
    )
    ghl = await routine(
        world,
        "ghl",
        context={"summary": "GHL.", "testResults": results(47, failed=42)},
    )
    assert time.monotonic() - started < 10
    await world.discord.wait_for(lambda: len(batch_messages(world)) == 1, 15)
    (message,) = batch_messages(world)
    assert single_messages(world) == []
    assert message.embeds[0]["title"] == "📋 5 tasks ready for review"
    assert set(item_ids(message)) == {t["id"] for t in [*low, stripe, ghl]}
    for name in ("freshdesk", "helpscout", "close"):
        assert line_of(message, name) == f"✅ **{name}** (low risk, tests pass)"
    assert line_of(message, "stripe") == "⚠️ **stripe** (med risk, 1 warning)"
    assert line_of(message, "ghl") == "❌ **ghl** (high risk, 42 failures)"
    assert "Approve All Low-Risk (3)" in message.button_labels
    assert "Review All" in message.button_labels

    # Review All: every item with its context, only for the person who asked
    review = await world.discord.press_button(TASKS_CHANNEL_ID, "Review All", user=alice)
    shown = await review.response()
    assert shown.ephemeral
    titles = [e["title"] for e in shown.data["embeds"]]
    assert len(titles) == 5 and any("stripe" in t for t in titles)
    assert any("1 warning" in str(e["fields"]) for e in shown.data["embeds"])

    # Approve All Low-Risk: ONE bulk call with exactly the three low-risk items
    click = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Approve All Low-Risk (3)", user=alice
    )
    assert (await click.response()).ephemeral
    await world.discord.wait_for(lambda: "Approved 3" in (click.reply_content or ""), 10)
    bulk = world.factory.calls("POST", BULK)
    assert len(bulk) == 1
    assert set(bulk[0].json["taskIds"]) == {t["id"] for t in low}
    assert bulk[0].json["action"] == "approve"
    assert world.factory.calls("POST", COMPLETE) == []
    for t in low:
        assert world.factory.tasks[t["id"]]["decision"] == "approved"
    assert world.factory.tasks[stripe["id"]]["status"] == "pending"
    assert world.factory.tasks[ghl["id"]]["status"] == "pending"
    await world.discord.wait_for(
        lambda: all(
            f"approved by <@{alice.id}>" in line_of(message, n)
            for n in ("freshdesk", "helpscout", "close")
        ),
        10,
    )
    assert "approved" not in line_of(message, "stripe")
    assert "approved" not in line_of(message, "ghl")
    assert "Approve All Low-Risk (0)" in message.button_labels

    # the audit trail: one entry per item, sharing the batch id
    store = Store(world.database_url)
    try:
        entries = [
            e
            for e in await store.audit_entries()
            if e.action == "task.approved" and e.outcome == "ok"
        ]
    finally:
        await store.close()
    assert sorted(e.task_id or "" for e in entries) == sorted(t["id"] for t in low)
    assert len({e.batch_id for e in entries}) == 1 and entries[0].batch_id is not None
    select = pick_select(message)
    assert select is not None and select["custom_id"] == f"{PICK_PREFIX}{entries[0].batch_id}"

    # one item's Reject, from the pick menu: a reason modal, and only that item is decided
    pick = await world.discord.choose(
        TASKS_CHANNEL_ID, select["custom_id"], [ghl["id"]], user=alice, message_id=message.id
    )
    answer = await pick.response()
    assert answer.ephemeral
    details = pick.original_message
    assert details is not None and "ghl" in details.embeds[0]["title"]
    assert {"Approve", "Reject"} <= set(details.button_labels)
    reject = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Reject", user=alice, message_id=details.id
    )
    await reject.response()
    assert reject.modal is not None
    submit = await world.discord.submit_modal(reject, {"reason": "42 failing tests."})
    await submit.response()
    await wait_until(lambda: world.factory.tasks[ghl["id"]]["status"] == "completed")
    assert world.factory.tasks[ghl["id"]]["decision"] == "rejected"
    assert world.factory.tasks[ghl["id"]]["decisionNotes"] == "42 failing tests."
    assert world.factory.tasks[stripe["id"]]["status"] == "pending"
    await world.discord.wait_for(lambda: "rejected by" in line_of(message, "ghl"), 10)
    assert "42 failing tests." in line_of(message, "ghl")
    assert "rejected" not in line_of(message, "stripe")
    assert len(batch_messages(world)) == 1 and single_messages(world) == []


def footer(message: RecordedMessage) -> str:
    """The footer of the message's embed ("Page 2/10 · … · batch b1-…")."""
    return str((message.embeds[0].get("footer") or {}).get("text", ""))


async def turn_page(world: World, message: RecordedMessage, label: str, page: int) -> list[str]:
    """Press ◀ / ▶ on the batch message; the items of the page it then shows (1-based)."""
    click = await world.discord.press_button(
        TASKS_CHANNEL_ID, label, user=world.people.bob, message_id=message.id
    )
    await click.response()
    await world.discord.wait_for(lambda: footer(message).startswith(f"Page {page}/"), 5)
    return item_ids(message)


async def test_burst_of_200_gives_one_message_in_pages_and_no_429(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(BATCH_ENABLED="true", BATCH_GROUP_WAIT_SECONDS="2")
    await bridge.start()
    # 200 routine tasks of one kind; every 40th has failing tests (high risk: 5 of them)
    failing = {"summary": "Review it.", "testResults": results(47, failed=3)}
    tasks = [
        await routine(
            world, f"server-{i:03d}", emit=False, **({"context": failing} if i % 40 == 0 else {})
        )
        for i in range(200)
    ]
    ids = [t["id"] for t in tasks]
    low = [t["id"] for i, t in enumerate(tasks) if i % 40]
    started = time.monotonic()
    await deliver_burst(world, tasks)  # 200 signed task.created webhooks, 20 at a time
    assert time.monotonic() - started < 10

    def titled(n: int) -> bool:
        shown = batch_messages(world)
        return len(shown) == 1 and shown[0].embeds[0]["title"].startswith(f"📋 {n} tasks")

    await world.discord.wait_for(lambda: titled(200), 30)
    (message,) = batch_messages(world)  # ONE message for the whole burst
    assert single_messages(world) == []
    assert [e for e in world.discord.errors if e.status == 429] == []
    assert footer(message).startswith("Page 1/10")
    assert "Approve All Low-Risk (195)" in message.button_labels  # every page, not 20
    # ◀ ▶ walk through every item, each on exactly one page
    pages = [item_ids(message)]
    for page in range(2, 11):
        pages.append(await turn_page(world, message, "Next ▶", page))
    listed = [task_id for page_ids in pages for task_id in page_ids]
    assert [len(p) for p in pages] == [20] * 10
    assert sorted(listed) == sorted(ids)
    assert next(b for b in message.buttons() if b.get("label") == "Next ▶").get("disabled")
    assert await turn_page(world, message, "◀ Previous", 9) == pages[8]
    await bridge.kill()
    await bridge.start()
    # "Approve All Low-Risk (195)" approves the low-risk items of EVERY page in ONE bulk call
    click = await world.discord.press_button(
        TASKS_CHANNEL_ID,
        "Approve All Low-Risk (195)",
        user=world.people.alice,
        message_id=message.id,
    )
    await click.response()
    await wait_until(
        lambda: all(world.factory.tasks[i]["status"] == "completed" for i in low), timeout=30
    )
    (bulk,) = world.factory.calls("POST", BULK)
    assert sorted(bulk.json["taskIds"]) == sorted(low)
    assert world.factory.calls("POST", COMPLETE) == []
    await world.discord.wait_for(lambda: "195 approved · 5 pending" in footer(message), 30)
    # the re-render after the restart kept the page the message showed
    assert footer(message).startswith("Page 9/10")
    # the pages are re-read from the store: they work after the restart
    assert await turn_page(world, message, "◀ Previous", 8) == pages[7]
    assert await turn_page(world, message, "Next ▶", 9) == pages[8]
    assert len(batch_messages(world)) == 1


async def test_critical_task_in_a_batch_window_is_posted_alone_at_once(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(BATCH_ENABLED="true", BATCH_GROUP_WAIT_SECONDS="4")
    await bridge.start()
    first = await routine(world, "freshdesk")
    second = await routine(world, "helpscout")
    created = time.monotonic()
    critical = await routine(world, "ghl-prod", priority="critical", type="approval")
    await world.discord.wait_for(lambda: len(single_messages(world)) == 1, 3)
    assert time.monotonic() - created < 3
    assert batch_messages(world) == []  # the routine ones are still waiting for company
    (alone,) = single_messages(world)
    assert critical["id"] in str(alone.components)
    await world.discord.wait_for(lambda: len(batch_messages(world)) == 1, 10)
    (batch,) = batch_messages(world)
    assert set(item_ids(batch)) == {first["id"], second["id"]}
    assert alone.id < batch.id


async def test_lone_routine_task_gets_the_single_message(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(BATCH_ENABLED="true", BATCH_GROUP_WAIT_SECONDS="1")
    await bridge.start()
    task = await routine(world, "freshdesk")
    await world.discord.wait_for(lambda: len(single_messages(world)) == 1, 10)
    assert task["id"] in str(single_messages(world)[0].components)
    assert batch_messages(world) == []


async def test_tasks_waiting_for_company_survive_a_kill(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(BATCH_ENABLED="true", BATCH_GROUP_WAIT_SECONDS="3")
    await bridge.start()
    ids = {(await routine(world, name))["id"] for name in ("freshdesk", "helpscout", "close")}
    store = Store(world.database_url)

    async def held() -> bool:
        state = await store.load_state("batcher")
        return state is not None and {i for g in state["groups"] for i in g["task_ids"]} == ids

    try:
        await wait_until(held, timeout=5, what="the batcher's saved state to hold the three")
    finally:
        await store.close()
    await bridge.kill()  # SIGKILL inside the group wait: nothing was posted yet
    assert batch_messages(world) == [] and single_messages(world) == []
    await bridge.start()
    await world.discord.wait_for(lambda: len(batch_messages(world)) == 1, 10)
    assert set(item_ids(batch_messages(world)[0])) == ids
    assert single_messages(world) == []
