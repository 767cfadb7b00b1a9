"""The answers people get about outcomes: worded in one place, times written by whoever the
composition root passes in (plain UTC text when nobody does: no Discord markup below the
Discord adapter)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.bridge import Actor, Bridge
from bot.discord.embeds import discord_timestamp
from bot.outcomes import TimeText, conflict_text, plain_time
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store, TrackedTask
from escalation.models import Task, TaskDecision

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
APPROVER = 7
ALICE = Actor(name="alice", via="button", discord_user_id=11, role_ids=frozenset({APPROVER}))


class NoFactory:
    """Fails the test if the bridge calls the factory at all."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the factory was called ({name})")


def make_bridge(store: Store, time_text: TimeText | None = None) -> Bridge:
    settings = Settings(
        discord_bot_token="token",
        discord_guild_id=1,
        discord_tasks_channel_id=2,
        discord_approver_role_ids=str(APPROVER),
        factory_api_key="key",
        factory_webhook_secret="secret",
    )
    extra = {} if time_text is None else {"time_text": time_text}
    return Bridge(
        settings=settings,
        store=store,
        factory=NoFactory(),  # type: ignore[arg-type]
        roster=Roster(),
        clock=lambda: NOW,
        **extra,
    )


async def decided_task(store: Store) -> TrackedTask:
    task = Task(id="t1", title="Release", created_at=NOW - timedelta(hours=1))
    await store.upsert_task(task, NOW + timedelta(hours=1))
    won = await store.begin_decision(
        "t1", "approved", discord_user_id=22, name="bob", key="k1", notes=None
    )
    assert won is not None
    decided = task.model_copy(update={"decision": TaskDecision.APPROVED, "decided_at": NOW})
    return await store.confirm_decision(
        decided,
        decision="approved",
        decided_by="bob",
        discord_user_id=22,
        notes=None,
        source="button",
        at=NOW,
    )


def test_plain_time_is_utc_text_whatever_the_style() -> None:
    moment = datetime(2026, 11, 21, 13, 5, tzinfo=UTC)
    assert plain_time(moment, "R") == plain_time(moment, "f") == "2026-11-21 13:05 UTC"


async def test_conflict_text_uses_the_time_writer_passed_in(store: Store) -> None:
    tracked = await decided_task(store)
    seen: list[tuple[datetime, str]] = []

    def writer(at: datetime, style: str) -> str:
        seen.append((at, style))
        return "WHEN"

    text = conflict_text(tracked, writer)
    assert text == "Already approved by <@22> WHEN. Nothing was changed."
    assert seen == [(NOW, "R")]


async def test_a_bridge_writes_no_discord_markup_unless_given_the_discord_writer(
    store: Store,
) -> None:
    await decided_task(store)
    outcome, _ = await make_bridge(store).check("t1", "approved", ALICE)
    assert outcome is not None and outcome.kind == "conflict"
    assert "<t:" not in outcome.message and "2026-11-21 12:00 UTC" in outcome.message
    outcome, _ = await make_bridge(store, discord_timestamp).check("t1", "approved", ALICE)
    assert outcome is not None
    assert f"<t:{int(NOW.timestamp())}:R>" in outcome.message


async def test_snooze_answer_writes_until_with_the_time_writer(store: Store) -> None:
    task = Task(id="t2", title="Deploy docs", created_at=NOW)
    await store.upsert_task(task, NOW + timedelta(hours=4))
    bridge = make_bridge(store, discord_timestamp)
    outcome = await bridge.snooze("t2", ALICE, 3600)
    assert outcome.kind == "done"
    until = int((NOW + timedelta(hours=1)).timestamp())
    assert f"snoozed until <t:{until}:f>. The SLA deadline does not move." in outcome.message
