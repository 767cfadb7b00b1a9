"""Factory text that tries to ping or format never does, on any kind of message.

Titles, descriptions, summaries, pipeline names, reasons, versions, errors and the name of who
decided at the factory all carry ``@everyone``, ``@here``, a user mention, a role mention and
markdown. Every message the bridge sends — task and batch messages, reminder DMs and
@mentions, the SLA warning and breach (which do ping @here on purpose), the incident report,
alert / deploy / feed posts, slash command answers and outcome answers — is then checked in
the Discord emulator: the only pings are the bridge's own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.discord_emulator import InteractionRecord, RecordedMessage
from sandbox.world import (
    ALERTS_CHANNEL_ID,
    APPROVER_ROLE_ID,
    DEPLOYS_CHANNEL_ID,
    FEED_CHANNEL_ID,
    TASKS_CHANNEL_ID,
    World,
)
from tests.support.harness import BridgeProcess, wait_until

#: DM at T+2, @mention at T+4, @here warning at T+6, breach at T+10, critical at T+11.
LADDER = {
    "ESCALATION_DM_AFTER_SECONDS": 2,
    "ESCALATION_MENTION_AFTER_SECONDS": 4,
    "SLA_WARNING_THRESHOLD_PERCENT": 40,
    "ESCALATION_CRITICAL_AFTER_BREACH_SECONDS": 1,
    "ESCALATION_BUNDLE_SECONDS": 1,
    "BATCH_ENABLED": "true",
    "BATCH_GROUP_WAIT_SECONDS": "1",
}


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def bot_posts(world: World, channel_id: int) -> list[RecordedMessage]:
    return [
        m
        for m in world.discord.messages(channel_id)
        if m.author_id == world.discord.bot_user_id and not m.ephemeral and not m.deleted
    ]


def message_of(world: World, task_id: str) -> RecordedMessage | None:
    return next(
        (m for m in bot_posts(world, TASKS_CHANNEL_ID) if task_id in str(m.components)), None
    )


async def shown(world: World, task_id: str) -> RecordedMessage:
    await world.discord.wait_for(lambda: message_of(world, task_id) is not None, 15)
    message = message_of(world, task_id)
    assert message is not None
    return message


async def final_reply(world: World, rec: InteractionRecord, timeout: float = 10) -> str:
    await rec.response()
    await world.discord.wait_for(
        lambda: (
            bool(rec.reply_content or (rec.original_message and rec.original_message.embeds))
            and not (rec.reply_content or "").startswith("⏳")
        ),
        timeout,
    )
    return rec.reply_content or ""


def results() -> dict[str, Any]:
    return {"total": 47, "passed": 47, "failed": 0, "skipped": 0, "coveragePercent": 95}


async def test_factory_text_never_pings_on_any_message_kind(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    alice, bob = world.people.alice, world.people.bob
    hostile = (
        f"@everyone @here <@{bob.id}> <@!{bob.id}> <@&{APPROVER_ROLE_ID}> **bold** "
        "[link](https://evil.example)"
    )
    bridge = make_bridge(**LADDER)
    await bridge.start()
    factory = world.factory
    pipeline = factory.create_pipeline(name=f"pipe {hostile}")
    now = datetime.now(UTC)

    # escalates: DM, @mention, @here warning, breach alert, incident report
    ladder = await factory.create_task(
        title=f"Ship {hostile}",
        description=hostile,
        priority="high",
        pipelineId=pipeline["id"],
        context={"summary": f"summary {hostile}", "testResults": results()},
        createdAt=iso(now),
        slaDeadline=iso(now + timedelta(seconds=10)),
    )
    # batched: the batch message, Review All, a picked item, Approve All Low-Risk
    batched = [
        await factory.create_task(
            title=f"Review {n} {hostile}",
            type="review",
            stageName="review",
            priority="medium",
            pipelineId="helpdesk-mcp-server",
            context={"summary": f"summary {hostile}", "testResults": results()},
        )
        for n in (1, 2)
    ]
    # decided by people through the bridge: acknowledge, snooze, approve answers
    decided = await factory.create_task(title=f"Decide {hostile}", priority="high")
    # decided at the factory by someone with a hostile name: the "Already approved by" answer
    raced = await factory.create_task(title=f"Raced {hostile}", priority="high")

    ladder_message = await shown(world, ladder["id"])
    decided_message = await shown(world, decided["id"])
    raced_message = await shown(world, raced["id"])
    await world.discord.wait_for(lambda: message_of(world, batched[0]["id"]) is not None, 15)

    async def press(label: str, message: RecordedMessage) -> str:
        rec = await world.discord.press_button(
            TASKS_CHANNEL_ID, label, user=alice, message_id=message.id
        )
        return await final_reply(world, rec)

    assert "You acknowledged" in await press("Acknowledge", decided_message)
    snooze = await world.discord.choose(
        TASKS_CHANNEL_ID,
        "💤 Snooze reminders…",
        ["3600"],
        user=alice,
        message_id=decided_message.id,
    )
    assert "snoozed until" in await final_reply(world, snooze)
    await press("Details", ladder_message)
    assert "approved" in await press("Approve", decided_message)
    await factory.decide_task(raced["id"], "approved", decided_by=f"x {hostile}", emit=False)
    assert "Already approved by" in await press("Approve", raced_message)

    batch = message_of(world, batched[0]["id"])
    assert batch is not None
    await press("Review All", batch)
    pick = await world.discord.choose(
        TASKS_CHANNEL_ID, "Pick an item…", [batched[0]["id"]], user=alice, message_id=batch.id
    )
    await pick.response()
    assert "Approved 2 low-risk items" in await press("Approve All Low-Risk (2)", batch)

    # informational events: alerts, deploys, feed
    channel = f"pipeline:{pipeline['id']}"
    named = {**pipeline, "name": f"pipe {hostile}"}
    await factory.emit(
        "pipeline.blocked",
        {
            "pipelineId": pipeline["id"],
            "pipelineName": hostile,
            "blockedAt": hostile,
            "reason": hostile,
            "taskId": ladder["id"],
        },
        channel=channel,
    )
    await factory.emit(
        "pipeline.failed", {"pipeline": {**named, "status": "failed"}, "reason": hostile}
    )
    await factory.emit("task.sla_breached", factory.sla_payload(ladder["id"]))
    deploy = {
        "pipelineId": pipeline["id"],
        "pipelineName": hostile,
        "target": "production",
        "version": hostile,
    }
    await factory.emit("deploy.started", {**deploy, "status": "started"}, channel="deploys:*")
    await factory.emit(
        "deploy.failed", {**deploy, "status": "failed", "error": hostile}, channel="deploys:*"
    )
    await factory.emit("pipeline.created", {"pipeline": named}, channel=channel)
    await factory.emit(
        "pipeline.stage_changed",
        {
            "pipelineId": pipeline["id"],
            "pipelineName": hostile,
            "fromStage": hostile,
            "toStage": "staging",
            "triggeredBy": hostile,
        },
        channel=channel,
    )

    # slash command answers
    for name, options in (
        ("factory pending", {}),
        ("factory pipelines", {}),
        ("factory blockers", {}),
        ("factory history", {"task": decided["id"]}),
    ):
        rec = await world.discord.run_command(
            name, options, user=alice, channel_id=TASKS_CHANNEL_ID
        )
        await final_reply(world, rec)

    # the ladder runs its course: warning, breach, incident report
    def alert_with(word: str) -> bool:
        return any(word in m.content for m in bot_posts(world, ALERTS_CHANNEL_ID))

    await wait_until(lambda: alert_with("Incident report"), timeout=20, what="incident report")
    await world.discord.wait_for(lambda: len(bot_posts(world, DEPLOYS_CHANNEL_ID)) >= 2, 10)
    # feed posts are coalesced: count lines, not messages
    await world.discord.wait_for(
        lambda: sum(len(m.content.split("\n")) for m in bot_posts(world, FEED_CHANNEL_ID)) >= 2, 10
    )
    await world.discord.wait_for(lambda: bool(world.discord.dm_messages(alice.id)), 10)

    everyone_pings: list[RecordedMessage] = []
    for m in world.discord.all_messages():
        if m.author_id != world.discord.bot_user_id:
            continue
        text = m.content + json.dumps(m.embeds)
        assert "@everyone" not in text, m
        assert f"<@{bob.id}>" not in text and f"<@!{bob.id}>" not in text, m
        assert "<@&" not in text, m
        assert "**bold**" not in text and "[link](" not in text, m
        assert bob.id not in m.mentioned_user_ids, m
        if m.mentions_everyone:
            # the one @everyone/@here token is the bridge's own @here
            assert re.findall(r"@(?:everyone|here)", m.content, re.I) == ["@here"]
            assert "SLA breach imminent" in m.content or "SLA breached @here" in m.content
            everyone_pings.append(m)
        else:  # the ladder's own step labels name @here (the incident report); nothing else
            labels = m.content.replace("SLA warning (@here)", "").replace("SMS + @here", "")
            assert "@here" not in labels, m.content
    # the bridge's own @here still pings: the warning on the task and the breach alert
    assert len(everyone_pings) == 2
    # every kind of message was there to check
    assert any("Ship" in m.content for m in world.discord.dm_messages(alice.id))
    replies = [m for m in bot_posts(world, TASKS_CHANNEL_ID) if m.message_reference]
    assert any("reminder" in m.content for m in replies)
    assert any("Incident report" in m.content for m in bot_posts(world, ALERTS_CHANNEL_ID))
    assert [e for e in world.discord.errors if e.code == 50035] == []
