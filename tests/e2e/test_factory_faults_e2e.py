"""The factory misbehaving for decisions and claims: answers that cannot be understood (an HTML
page, invalid JSON, the wrong shape), timeouts and 404s.

Whatever it does, no decision is left in flight without a re-send under way, and every person
gets a truthful final answer: recorded (shown as done), NOT recorded (buttons live), or not
confirmed yet (re-sent in the background, then a DM with the outcome). A timeout is not a "no":
the task is read back before anything is said.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from sandbox.discord_emulator import InteractionRecord, RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until

COMPLETE = r"/v1/tasks/[^/]+/complete"
CLAIM = r"/v1/tasks/[^/]+/claim"
TASK = r"/v1/tasks/[^/]+"
HTML = "<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
INVALID_JSON = '{"ok": true, "data": {"id": '
WRONG_SHAPE = '{"ok": true, "data": ["not", "a", "task"]}'
ATTEMPTS = 4  # the first attempt and 3 retries (contract §7.1)
FAST = {"FACTORY_RETRY_BASE_SECONDS": "0.05", "FACTORY_TIMEOUT_SECONDS": "0.5"}


def task_messages(world: World) -> list[RecordedMessage]:
    return [
        m
        for m in world.discord.messages(TASKS_CHANNEL_ID)
        if not m.deleted and not m.ephemeral and m.embeds
    ]


def decision_field(message: RecordedMessage) -> str:
    fields = {f["name"]: f["value"] for f in message.embeds[0].get("fields", [])}
    return fields.get("Decision", "")


def in_flight(world: World) -> list[str]:
    """Task ids the bridge's store holds a decision in flight for."""
    with sqlite3.connect(world.database_file) as conn:
        rows = conn.execute("SELECT task_id FROM tasks WHERE inflight_decision IS NOT NULL")
        return [r[0] for r in rows]


async def start(make_bridge: Callable[..., BridgeProcess]) -> BridgeProcess:
    bridge = make_bridge(**FAST)
    await bridge.start()
    return bridge


async def open_task(
    world: World, title: str = "Stripe MCP Server code review"
) -> tuple[dict, RecordedMessage]:  # type: ignore[type-arg]
    task = await world.factory.create_task(
        title=title, priority="high", type="review", stageName="review"
    )
    await world.discord.wait_for(lambda: len(task_messages(world)) >= 1, 10)
    return task, task_messages(world)[-1]


async def final_answer(click: InteractionRecord, timeout: float = 20.0) -> str:
    """The person's answer once it is no longer a "⏳ working…" one."""
    await click.response()

    def final() -> bool:
        content = click.reply_content or ""
        return bool(content) and not content.startswith("⏳")

    await wait_until(final, timeout=timeout, what="the final answer")
    return click.reply_content or ""


def shown(click: InteractionRecord) -> list[str]:
    """Every content the person's answer showed, in order."""
    original = click.original_message
    assert original is not None
    return [str(e.get("content")) for e in original.edits if e.get("content")] + [original.content]


async def approve(world: World) -> InteractionRecord:
    return await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.alice)


# ---------------------------------------------------------------------------------- decisions
async def test_html_page_every_time_not_recorded_is_said_and_buttons_stay_live(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start(make_bridge)
    task, message = await open_task(world)
    world.factory.garble("POST", COMPLETE, HTML, times=ATTEMPTS)  # nothing is done
    click = await approve(world)
    answer = await final_answer(click)
    assert "NOT recorded" in answer and "reading the task back" in answer
    assert any("checking the task" in text for text in shown(click))
    assert len(world.factory.calls("POST", COMPLETE)) == ATTEMPTS
    assert world.factory.tasks[task["id"]]["status"] != "completed"
    assert in_flight(world) == []
    assert "Approve" in message.button_labels
    again = await approve(world)  # nothing is wedged: the next click decides it
    assert "approved" in await final_answer(again)
    await world.discord.wait_for(lambda: "Approved" in decision_field(message), 10)


async def test_invalid_json_after_recording_is_shown_as_done_with_the_factorys_decider(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start(make_bridge)
    task, message = await open_task(world)
    # a proxy mangles every answer; the factory did record the decision
    world.factory.garble(
        "POST", COMPLETE, INVALID_JSON, content_type="application/json", times=ATTEMPTS, after=True
    )
    click = await approve(world)
    answer = await final_answer(click)
    assert "approved" in answer and "user-alice" in answer  # the factory's decidedBy
    assert world.factory.tasks[task["id"]]["decision"] == "approved"
    assert in_flight(world) == []
    await world.discord.wait_for(lambda: "Approved" in decision_field(message), 10)
    assert message.button_labels == []


async def test_wrong_shape_once_is_retried_and_recorded_once(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start(make_bridge)
    _task, message = await open_task(world)
    world.factory.garble("POST", COMPLETE, WRONG_SHAPE, content_type="application/json")
    click = await approve(world)
    assert "approved" in await final_answer(click)
    calls = world.factory.calls("POST", COMPLETE)
    assert len(calls) == 2 and len({c.header("Idempotency-Key") for c in calls}) == 1
    assert len([a for a in world.factory.audit if a.get("action") == "task.approved"]) == 1
    await world.discord.wait_for(lambda: "Approved" in decision_field(message), 10)


async def test_timeouts_are_not_a_no_the_task_is_read_back(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start(make_bridge)
    task, message = await open_task(world)
    world.factory.delay("POST", COMPLETE, 1.0)  # every answer comes after the 0.5 s timeout
    click = await approve(world)
    answer = await final_answer(click)
    assert "NOT" not in answer
    assert "approved" in answer and "reading the task back" in answer
    assert any("Not confirmed yet" in text for text in shown(click))
    assert world.factory.tasks[task["id"]]["decision"] == "approved"
    assert in_flight(world) == []
    await world.discord.wait_for(lambda: "Approved" in decision_field(message), 10)


async def test_unknown_outcome_is_resent_in_the_background_and_the_clicker_gets_a_dm(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start(make_bridge)
    task, message = await open_task(world)
    world.factory.delay("POST", COMPLETE, 1.0, drop=True)  # lost: only timeouts
    world.factory.fail("GET", TASK, status=503, times=1000)  # and it cannot be read back
    click = await approve(world)
    answer = await final_answer(click)
    assert "Not confirmed yet" in answer and "DM" in answer
    assert in_flight(world) == [task["id"]]  # kept in flight: a re-send is under way
    assert "Approve" in message.button_labels  # never shown as done before confirmed
    world.factory.clear_faults()  # the factory recovers: the background re-send gets through
    alice = world.people.alice
    await world.discord.wait_for(lambda: len(world.discord.dm_messages(alice.id)) >= 1, 30)
    dm = world.discord.dm_messages(alice.id)[-1].content
    assert "About your decision" in dm and "approved" in dm
    assert world.factory.tasks[task["id"]]["decision"] == "approved"
    keys = {c.header("Idempotency-Key") for c in world.factory.calls("POST", COMPLETE)}
    assert len(keys) == 1  # the same key for the click and every re-send
    await world.discord.wait_for(lambda: "Approved" in decision_field(message), 10)
    assert len(world.discord.dm_messages(alice.id)) == 1  # told once
    assert in_flight(world) == []


async def test_404_on_complete_is_a_truthful_refusal(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start(make_bridge)
    _task, message = await open_task(world)
    world.factory.fail("POST", COMPLETE, status=404)
    click = await approve(world)
    answer = await final_answer(click)
    assert "NOT_FOUND" in answer and "Nothing was recorded" in answer
    assert len(world.factory.calls("POST", COMPLETE)) == 1  # 404 is never retried
    assert in_flight(world) == []
    assert "Approve" in message.button_labels


# ---------------------------------------------------------------------------------- claims
async def acknowledge(world: World) -> InteractionRecord:
    return await world.discord.press_button(
        TASKS_CHANNEL_ID, "Acknowledge", user=world.people.alice
    )


async def test_claim_answers_mangled_after_recording_are_read_back_as_acknowledged(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start(make_bridge)
    task, _message = await open_task(world)
    world.factory.garble("POST", CLAIM, HTML, times=ATTEMPTS, after=True)
    click = await acknowledge(world)
    assert "You acknowledged" in await final_answer(click)
    assert world.factory.tasks[task["id"]]["status"] == "claimed"


async def test_claim_garbage_before_recording_says_not_acknowledged(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start(make_bridge)
    task, _ = await open_task(world)
    world.factory.garble(
        "POST", CLAIM, WRONG_SHAPE, content_type="application/json", times=ATTEMPTS
    )
    click = await acknowledge(world)
    answer = await final_answer(click)
    assert "NOT recorded" in answer and "try again" in answer
    assert world.factory.tasks[task["id"]]["status"] == "pending"


async def test_claim_timeouts_with_no_read_back_say_it_may_or_may_not_be_recorded(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start(make_bridge)
    await open_task(world)
    world.factory.delay("POST", CLAIM, 1.0, drop=True)
    world.factory.fail("GET", TASK, status=503, times=1000)
    click = await acknowledge(world)
    answer = await final_answer(click)
    assert "may or may not be recorded" in answer and "again is safe" in answer


async def test_claim_404_is_a_truthful_refusal(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start(make_bridge)
    await open_task(world)
    world.factory.fail("POST", CLAIM, status=404)
    click = await acknowledge(world)
    assert "The factory refused" in await final_answer(click)


# ---------------------------------------------------------------------------------- a crash
async def test_clicker_of_a_decision_cut_short_by_a_crash_gets_a_dm_after_restart(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = await start(make_bridge)
    task, message = await open_task(world)
    world.factory.delay("POST", COMPLETE, 2.0, times=1)  # the click's request hangs …
    click = await approve(world)
    await click.response()
    await wait_until(lambda: len(world.factory.calls("POST", COMPLETE)) == 1, what="the send")
    await wait_until(lambda: in_flight(world) == [task["id"]], what="the decision in flight")
    await bridge.kill()  # … and the bridge dies before the factory answers
    assert (click.reply_content or "").startswith("⏳")  # the person was never told
    await bridge.start()  # the decision is re-sent with its key at start
    alice = world.people.alice
    await world.discord.wait_for(lambda: len(world.discord.dm_messages(alice.id)) >= 1, 20)
    dm = world.discord.dm_messages(alice.id)[-1].content
    assert "About your decision" in dm and "approved" in dm
    assert "Stripe MCP Server code review" in dm
    await world.discord.wait_for(lambda: "Approved" in decision_field(message), 10)
    assert len([a for a in world.factory.audit if a.get("action") == "task.approved"]) == 1
    assert len(world.discord.dm_messages(alice.id)) == 1  # told once
    assert in_flight(world) == []
