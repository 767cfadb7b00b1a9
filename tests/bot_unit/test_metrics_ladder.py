"""``factory_bridge_escalation_deliveries_total`` counts the ladder's own deliveries.

The ladder's store writes a step's claim and a delivery's outcome with their audit entries in
one transaction, beside ``Store.audit``: the metrics must see those entries all the same (the
Grafana panel "deliveries by channel and status" and README "Metrics" promise it).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.bridge import Bridge
from bot.ladder import LadderRuntime
from bot.metrics import BridgeMetrics
from bot.roster import Operator, Roster
from bot.settings import Settings
from bot.store import Store
from escalation.models import Task
from tests.bot_unit.test_memory_bounded import (
    START,
    Clock,
    FakeFactory,
    FakeNotifier,
    SilentMessenger,
)


async def test_a_reminder_dm_the_ladder_sent_is_counted(tmp_path: Path) -> None:
    clock = Clock()
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    await store.create_schema()
    metrics = BridgeMetrics()
    store.add_audit_observer(metrics.observe_audit)  # as bot.bridge_app does
    settings = Settings(
        _env_file=None,
        discord_bot_token="t",
        discord_guild_id=1,
        discord_tasks_channel_id=100,
        discord_approver_role_ids="7",
        factory_api_key="k",
        factory_webhook_secret="s",
        quiet_hours_enabled=False,
        batch_enabled=False,
    )
    roster = Roster(
        (Operator(name="Alice", factory_user_id="u-alice", discord_user_id=11, on_call=True),)
    )
    factory = FakeFactory(clock)
    bridge = Bridge(settings=settings, store=store, factory=factory, roster=roster, clock=clock)
    bridge.attach_notifier(FakeNotifier())
    runtime = LadderRuntime(
        bridge=bridge,
        messenger=SilentMessenger(),
        pager=None,
        clock=clock,
        step_taken=metrics.step_taken,
    )
    bridge.escalation = runtime
    await runtime.recover()
    try:
        task = Task(
            id="t1",
            title="Review",
            priority="high",
            created_at=START,
            type="review",
            assignee_id="u-alice",
        )
        factory.tasks[task.id] = task
        await bridge.show_task(task)
        await runtime.tick()
        await runtime.drain()
        clock.now = START + timedelta(seconds=settings.escalation_dm_after_seconds + 5)
        await runtime.tick()
        await runtime.drain()
        clock.now += timedelta(seconds=settings.escalation_bundle_seconds + 5)
        await runtime.tick()
        await runtime.drain()

        audits = [(e.action, e.outcome) for e in await store.audit_entries(task_id="t1")]
        assert ("escalation.dm", "sent") in audits
        sent = metrics.registry.get_sample_value(
            "factory_bridge_escalation_deliveries_total", {"channel": "dm", "status": "sent"}
        )
        assert sent == 1
    finally:
        await runtime.stop()
        await store.close()
