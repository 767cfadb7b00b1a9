"""Reconciliation end to end: nothing falls through while the bridge is down or forgetful.

- the bridge is stopped, two tasks are decided at the factory and three are created: after a
  restart the three appear once each, the two messages show their decisions, nothing else;
- the database file is deleted between runs: the task → message map is rebuilt from the bot's
  own messages, so no task gets a second message (and the old buttons still work);
- a decision a crash left in flight is re-sent at start with the same Idempotency-Key;
- a task the factory never announced appears within ``RECONCILE_INTERVAL_SECONDS``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

from bot.reconcile import MessageRefs, message_refs
from sandbox.discord_emulator import RecordedMessage
from sandbox.world import (
    ALERTS_CHANNEL_ID,
    DEPLOYS_CHANNEL_ID,
    FEED_CHANNEL_ID,
    TASKS_CHANNEL_ID,
    World,
)
from tests.support.harness import BridgeProcess, wait_until

COMPLETE = r"/v1/tasks/[^/]+/complete"
LIST = r"/v1/tasks"


def posted(world: World, channel_id: int) -> list[RecordedMessage]:
    return [m for m in world.discord.messages(channel_id) if not m.deleted and not m.ephemeral]


def messages_of(world: World, task_id: str) -> list[RecordedMessage]:
    """Messages in #factory-tasks whose embed footer names the task."""
    return [
        m
        for m in posted(world, TASKS_CHANNEL_ID)
        if m.embeds
        and re.match(
            rf"task {re.escape(task_id)}\b", (m.embeds[0].get("footer") or {}).get("text", "")
        )
    ]


def decision_of(message: RecordedMessage) -> str:
    for f in message.embeds[0].get("fields", []):
        if f["name"] == "Decision":
            return str(f["value"])
    return ""


def pending_lists(world: World) -> int:
    """How many ``GET /v1/tasks?status=pending`` pages the bridge asked for."""
    return sum(c.query.get("status") == "pending" for c in world.factory.calls("GET", LIST))


async def passes_done(world: World, since: int, passes: int = 2) -> None:
    """Wait until the bridge listed pending tasks ``passes`` + 1 times more than ``since``.

    With one page per pass, the (n+1)-th listing starts only after the n-th pass ended.
    """
    await wait_until(
        lambda: pending_lists(world) >= since + passes + 1,
        timeout=15,
        what=f"{passes} reconciliation passes",
    )


def message_recorded(world: World, task_id: str) -> bool:
    """Whether the bridge's store holds the id of the task's message."""
    with sqlite3.connect(world.database_file) as conn:
        row = conn.execute("SELECT message_id FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    return row is not None and row[0] is not None


def delete_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def test_restart_posts_missed_tasks_once_and_shows_decisions_made_meanwhile(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(RECONCILE_INTERVAL_SECONDS="0.2")
    await bridge.start()
    decided = [await world.factory.create_task(title=f"decided while down {n}") for n in range(2)]
    still_open = await world.factory.create_task(title="still open")
    await world.discord.wait_for(lambda: len(posted(world, TASKS_CHANNEL_ID)) == 3, 10)
    await bridge.terminate()

    await world.factory.decide_task(decided[0]["id"], "approved", emit=False)
    await world.factory.decide_task(decided[1]["id"], "rejected", notes="no tests", emit=False)
    new = [
        await world.factory.create_task(title=f"created while down {n}", emit=False)
        for n in range(3)
    ]
    before = pending_lists(world)
    await bridge.start()

    await world.discord.wait_for(lambda: len(posted(world, TASKS_CHANNEL_ID)) >= 6, 15)
    first, second = (messages_of(world, t["id"])[0] for t in decided)
    await world.discord.wait_for(lambda: "Approved" in decision_of(first), 10)
    await world.discord.wait_for(lambda: "Rejected" in decision_of(second), 10)
    assert "no tests" in decision_of(second)
    assert first.button_labels == [] and second.button_labels == []
    await passes_done(world, before)
    for task in (*decided, still_open, *new):
        assert len(messages_of(world, task["id"])) == 1, task["title"]
    assert len(posted(world, TASKS_CHANNEL_ID)) == 6  # nothing else was posted
    assert messages_of(world, still_open["id"])[0].button_labels[:2] == ["Approve", "Reject"]
    for channel_id in (ALERTS_CHANNEL_ID, DEPLOYS_CHANNEL_ID, FEED_CHANNEL_ID):
        assert posted(world, channel_id) == []


async def test_after_a_restart_events_are_handled_while_the_factory_is_still_listing(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    """The start-up reconciliation lists every pending task (100,000 take tens of seconds):
    a task created meanwhile must not wait for that listing to be posted."""
    # the listing outlasts the whole test, and the client does not give up on it meanwhile
    bridge = make_bridge(FACTORY_TIMEOUT_SECONDS="60")
    await bridge.start()
    first = await world.factory.create_task(title="open before the restart")
    await world.discord.wait_for(lambda: len(posted(world, TASKS_CHANNEL_ID)) == 1, 10)
    # stopped only once the store has the message: a task without one makes the start-up
    # rebuild the message map, which lists the pending tasks first (by design)
    await wait_until(
        lambda: message_recorded(world, first["id"]), timeout=10, what="the message recorded"
    )
    await bridge.terminate()

    world.factory.delay("GET", LIST, 30, times=1)  # the start-up pass's pending listing
    before = pending_lists(world)
    await bridge.start()
    fresh = await world.factory.create_task(title="created during the slow listing")
    await world.discord.wait_for(lambda: len(messages_of(world, fresh["id"])) == 1, 6)
    assert pending_lists(world) == before + 1, "the slow listing is still under way"
    assert len(posted(world, TASKS_CHANNEL_ID)) == 2


async def test_lost_database_is_rebuilt_from_the_channel_without_second_messages(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(RECONCILE_INTERVAL_SECONDS="0.2")
    await bridge.start()
    tasks = [await world.factory.create_task(title=f"survives the lost db {n}") for n in range(3)]
    await world.discord.wait_for(lambda: len(posted(world, TASKS_CHANNEL_ID)) == 3, 10)
    # one decided through Discord before the loss (its message has no buttons left)
    decided_here = messages_of(world, tasks[0]["id"])[0]
    await world.discord.press_button(
        TASKS_CHANNEL_ID, "Approve", user=world.people.alice, message_id=decided_here.id
    )
    await world.discord.wait_for(lambda: "Approved" in decision_of(decided_here), 10)
    await bridge.terminate()

    delete_database(world.database_file)
    assert not world.database_file.exists()
    # one decided at the factory while the bridge was down and without its database
    await world.factory.decide_task(tasks[1]["id"], "rejected", notes="wrong store", emit=False)
    before = pending_lists(world)
    await bridge.start()

    away = messages_of(world, tasks[1]["id"])[0]
    await world.discord.wait_for(lambda: "Rejected" in decision_of(away), 10)
    await passes_done(world, before, passes=3)
    assert len(posted(world, TASKS_CHANNEL_ID)) == 3
    for task in tasks:
        assert len(messages_of(world, task["id"])) == 1, task["title"]
    assert "Approved" in decision_of(decided_here)  # an old decision is not undone

    # the adopted message of the open task still works, and is the one updated
    still_open = messages_of(world, tasks[2]["id"])[0]
    click = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Approve", user=world.people.dave, message_id=still_open.id
    )
    await click.response()
    await world.discord.wait_for(lambda: "Approved" in decision_of(still_open), 10)
    assert world.factory.tasks[tasks[2]["id"]]["decision"] == "approved"
    assert len(posted(world, TASKS_CHANNEL_ID)) == 3


async def test_decision_in_flight_at_a_crash_is_resent_with_the_same_key(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge()
    await bridge.start()
    task = await world.factory.create_task(title="crash mid-decision", priority="high")
    await world.discord.wait_for(lambda: len(posted(world, TASKS_CHANNEL_ID)) == 1, 10)
    message = posted(world, TASKS_CHANNEL_ID)[0]
    world.factory.delay("POST", COMPLETE, 30.0)
    await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.alice)
    await wait_until(lambda: len(world.factory.calls("POST", COMPLETE)) == 1, what="the decision")
    await bridge.kill()  # the decision is in flight: begun in the store, not confirmed
    world.factory.clear_faults()

    await bridge.start()
    await world.discord.wait_for(lambda: "Approved" in decision_of(message), 15)
    assert f"<@{world.people.alice.id}>" in decision_of(message)
    calls = world.factory.calls("POST", COMPLETE)
    assert len({c.header("Idempotency-Key") for c in calls}) == 1
    assert world.factory.tasks[task["id"]]["decision"] == "approved"
    assert len(posted(world, TASKS_CHANNEL_ID)) == 1


async def test_task_never_announced_appears_on_the_next_periodic_pass(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(RECONCILE_INTERVAL_SECONDS="0.3")
    await bridge.start()
    silent = await world.factory.create_task(title="no event for this one", emit=False)
    await world.discord.wait_for(lambda: len(messages_of(world, silent["id"])) == 1, 10)
    announced = await world.factory.create_task(title="announced")
    await world.discord.wait_for(lambda: len(messages_of(world, announced["id"])) == 1, 10)
    await passes_done(world, pending_lists(world))
    assert len(posted(world, TASKS_CHANNEL_ID)) == 2


async def test_lost_database_keeps_batch_items_on_their_batch_message(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(
        BATCH_ENABLED="true", BATCH_GROUP_WAIT_SECONDS="0.3", RECONCILE_INTERVAL_SECONDS="0.2"
    )
    await bridge.start()
    routine = [
        await world.factory.create_task(
            title=f"routine review {n}", type="review", stageName="review", priority="medium"
        )
        for n in range(3)
    ]
    await world.discord.wait_for(lambda: len(posted(world, TASKS_CHANNEL_ID)) == 1, 15)
    (batch,) = posted(world, TASKS_CHANNEL_ID)
    footer = batch.embeds[0]["footer"]["text"]
    assert "3 pending" in footer and "batch " in footer
    await bridge.terminate()

    delete_database(world.database_file)
    await world.factory.decide_task(routine[0]["id"], "rejected", notes="no", emit=False)
    before = pending_lists(world)
    await bridge.start()
    await world.discord.wait_for(lambda: "1 rejected" in batch.embeds[0]["footer"]["text"], 10)
    await passes_done(world, before, passes=3)
    assert posted(world, TASKS_CHANNEL_ID) == [batch]  # no item got a message of its own
    assert "2 pending" in batch.embeds[0]["footer"]["text"]


def test_message_refs_reads_task_ids_from_buttons_footers_and_batch_selects() -> None:
    row = {"type": 1, "components": [{"type": 2, "custom_id": "fb:t:approve:t-1", "label": "A"}]}
    assert message_refs([row], []) == MessageRefs(("t-1",))
    snooze = {"type": 1, "components": [{"type": 3, "custom_id": "fb:snooze:t-2"}]}
    assert message_refs([snooze], []) == MessageRefs(("t-2",))
    decided = {"footer": {"text": "task t-3"}, "fields": [{"name": "SLA Deadline", "value": "x"}]}
    assert message_refs([], [decided]) == MessageRefs(("t-3",))
    other = {"footer": {"text": "task t-4"}, "fields": [{"name": "Tests", "value": "x"}]}
    assert message_refs([], [other]) is None  # not a task message (e.g. a details view)
    assert message_refs([], [{"description": "🚨 SLA breached: task `t-5`"}]) is None
    pick = {
        "type": 1,
        "components": [
            {
                "type": 3,
                "custom_id": "fb:b:pick:b-9",
                "options": [{"label": "x", "value": "t-7"}, {"label": "y", "value": "t-6"}],
            }
        ],
    }
    batch_embed = {"footer": {"text": "1 approved · 1 pending · batch b-9"}}
    assert message_refs([pick], [batch_embed]) == MessageRefs(("t-7", "t-6"), "b-9")
    bare = {"type": 1, "components": [{"type": 2, "custom_id": "fb:b:review:b-8"}]}
    text = {"description": "**t-11** then **t-10**"}
    found = message_refs([bare], [text], known_ids={"t-10", "t-11", "t-12"})
    assert found == MessageRefs(("t-11", "t-10"), "b-8")


async def test_a_task_the_factory_no_longer_has_is_closed_and_stops_escalating(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    """The factory deleted an open task (its ``GET`` answers 404) without any event: the
    next pass closes it — its message says so and loses its buttons, its ladder stops, the
    audit trail has ``task.gone`` — instead of it staying open and escalating for ever."""
    bridge = make_bridge(RECONCILE_INTERVAL_SECONDS="0.2", ESCALATION_DM_AFTER_SECONDS="1")
    await bridge.start()
    doomed = await world.factory.create_task(title="Deleted at the factory", priority="high")
    kept = await world.factory.create_task(title="Still there", priority="high")
    await world.discord.wait_for(lambda: len(messages_of(world, doomed["id"])) == 1, 10)
    await world.discord.wait_for(lambda: len(messages_of(world, kept["id"])) == 1, 10)
    del world.factory.tasks[doomed["id"]]  # gone from the factory, no event
    [message] = messages_of(world, doomed["id"])
    await world.discord.wait_for(
        lambda: decision_of(message).startswith("🗑️ No longer at the factory"), 10
    )
    assert "the factory answers 404 for it" in decision_of(message)
    assert message.button_labels == []
    assert decision_of(messages_of(world, kept["id"])[0]) == ""  # the other one stays open
    with sqlite3.connect(world.database_file) as conn:
        gone = conn.execute(
            "SELECT outcome FROM audit WHERE task_id = ? AND action = 'task.gone'",
            (doomed["id"],),
        ).fetchall()
        steps = conn.execute(
            "SELECT COUNT(*) FROM escalation_deliveries WHERE task_id = ? AND status = 'pending'",
            (doomed["id"],),
        ).fetchone()
    assert gone == [("ok",)]
    assert steps == (0,)
