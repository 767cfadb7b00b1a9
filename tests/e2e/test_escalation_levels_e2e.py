"""The factory learns the ladder's level end to end (``POST /v1/approvals/{id}/escalate``).

``factory-bridge run`` as a separate process with short ladder settings: DM at T+2 (level 1),
@mention at T+4, @here warning at T+6 (level 2), breach at D = T+10 (level 3), critical at
D+3 (level 4, ``escalateTo`` the admin it reassigns to). A ``kill -9`` after level 2 and a
restart after the breach: every level reaches the factory once, in order; a task without an
approval is never escalated at the factory.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.store import Store
from bot.store.ladder import LadderStore
from sandbox.discord_emulator import RecordedMessage
from sandbox.world import ALERTS_CHANNEL_ID, TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until

ESCALATE = r"/v1/approvals/[^/]+/escalate"

#: The ladder of these tests (seconds after the task was created).
LADDER = {
    "ESCALATION_DM_AFTER_SECONDS": 2,
    "ESCALATION_MENTION_AFTER_SECONDS": 4,
    "SLA_WARNING_THRESHOLD_PERCENT": 40,
    "ESCALATION_CRITICAL_AFTER_BREACH_SECONDS": 3,
    "ESCALATION_BUNDLE_SECONDS": 1,
}


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def bot_posts(world: World, channel_id: int) -> list[RecordedMessage]:
    return [
        m
        for m in world.discord.messages(channel_id)
        if m.author_id == world.discord.bot_user_id and not m.ephemeral and not m.deleted
    ]


def task_message(world: World, task_id: str) -> RecordedMessage | None:
    return next(
        (m for m in bot_posts(world, TASKS_CHANNEL_ID) if task_id in str(m.components)), None
    )


def fields(message: RecordedMessage) -> dict[str, str]:
    return {f["name"]: f["value"] for f in message.embeds[0].get("fields", [])}


def executed(world: World, task_id: str) -> list[dict]:
    """The escalations the factory executed for ``task_id`` (not idempotent replays)."""
    return [e for e in world.factory.escalations if e["taskId"] == task_id]


async def test_each_level_reaches_the_factory_once_in_order_across_a_kill(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(**LADDER)
    await bridge.start()
    t0 = datetime.now(UTC)
    times = {"createdAt": iso(t0), "slaDeadline": iso(t0 + timedelta(seconds=10))}
    task = await world.factory.create_task(
        emit=False, title="Notion MCP Server gate", priority="high", **times
    )
    approval = await world.factory.request_approval(task["id"])
    plain = await world.factory.create_task(
        title="Linear MCP Server review", type="review", priority="high", **times
    )
    await world.discord.wait_for(
        lambda: task_message(world, task["id"]) and task_message(world, plain["id"]), 10
    )
    message = task_message(world, task["id"])
    assert message is not None

    # levels 1 (reminder DM, T+2) and 2 (SLA warning, T+6), each on time
    await wait_until(lambda: len(executed(world, task["id"])) >= 2, timeout=10, what="level 2")
    calls = world.factory.calls("POST", ESCALATE)
    assert [c.path for c in calls] == [f"/v1/approvals/{approval['id']}/escalate"] * 2
    assert abs((calls[0].at - (t0 + timedelta(seconds=2))).total_seconds()) <= 1.0
    assert abs((calls[1].at - (t0 + timedelta(seconds=6))).total_seconds()) <= 1.0
    await world.discord.wait_for(
        lambda: "factory level 2" in fields(message).get("Escalation so far", ""), 5
    )

    # kill -9, down over the breach; the restarted bridge takes it late, then the critical
    await bridge.kill()
    await wait_until(
        lambda: datetime.now(UTC) >= t0 + timedelta(seconds=11.5), timeout=10, what="downtime"
    )
    restarted = make_bridge(**LADDER)
    await restarted.start()
    await wait_until(lambda: len(executed(world, task["id"])) >= 4, timeout=15, what="level 4")
    await world.discord.wait_for(
        lambda: any(
            "Incident report" in m.content and task["title"] in m.content
            for m in bot_posts(world, ALERTS_CHANNEL_ID)
        ),
        10,
    )
    critical = t0 + timedelta(seconds=13)
    await wait_until(
        lambda: (
            datetime.now(UTC)
            >= max(critical, world.factory.calls("POST", ESCALATE)[-1].at) + timedelta(seconds=1.5)
        ),
        timeout=10,
        what="quiet",
    )

    done = executed(world, task["id"])
    assert [e["escalationLevel"] for e in done] == [1, 2, 3, 4]  # once each, in order
    assert [e["escalateTo"] for e in done] == [None, None, None, "user-dave"]
    assert [e["reason"].split(":")[0] for e in done] == [
        f"Escalation level {n} of 4 ({label})"
        for n, label in ((1, "reminder"), (2, "SLA warning"), (3, "SLA breach"), (4, "critical"))
    ]
    assert world.factory.tasks[task["id"]]["escalationLevel"] == 4
    # one Idempotency-Key per level (a call interrupted by the kill is replayed, not redone)
    keys = {c.header("Idempotency-Key") for c in world.factory.calls("POST", ESCALATE)}
    assert len(keys) == 4 and None not in keys
    # the task without an approval was never escalated at the factory
    assert executed(world, plain["id"]) == []
    assert world.factory.tasks[plain["id"]]["escalationLevel"] == 0

    report = next(
        m
        for m in bot_posts(world, ALERTS_CHANNEL_ID)
        if "Incident report" in m.content and task["title"] in m.content
    )
    assert "escalate → level 4: ✅ sent" in report.content
    store = Store(world.database_url)
    try:
        rows = await LadderStore(store.db).deliveries(task_id=task["id"], channels=["escalate"])
        assert [(r.step, r.recipient, r.status) for r in rows] == [
            ("reminder_dm", "level 1", "sent"),
            ("sla_warning", "level 2", "sent"),
            ("sla_breach", "level 3", "sent"),
            ("critical", "level 4", "sent"),
        ]
        audit = await store.audit_entries()
        assert sum(a.action == "escalation.escalate" and a.outcome == "sent" for a in audit) == 4
    finally:
        await store.close()
