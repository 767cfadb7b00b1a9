"""The two-person rule counts distinct Discord people: nobody without a Discord identity can be
one of them, and nothing reaches the factory before enough of them approved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.bridge import Actor, Bridge
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store
from escalation.models import Task

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
DEPLOYER = 55


class NoFactory:
    """Fails the test if the bridge calls the factory at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the factory was called ({name}) before the approvals were in")


def make_bridge(store: Store) -> Bridge:
    settings = Settings(
        discord_bot_token="token",
        discord_guild_id=1,
        discord_tasks_channel_id=2,
        discord_deploy_approver_role_ids=str(DEPLOYER),
        factory_api_key="key",
        factory_webhook_secret="secret",
        deploy_required_approvers=2,
    )
    return Bridge(settings=settings, store=store, factory=NoFactory(), roster=Roster())  # type: ignore[arg-type]


async def production_task(store: Store) -> None:
    task = Task(id="t1", title="GHL → Production", stage_name="production", created_at=NOW)
    await store.upsert_task(task, NOW + timedelta(hours=1))


async def test_an_actor_without_a_discord_identity_is_not_a_distinct_approver(
    store: Store,
) -> None:
    bridge = make_bridge(store)
    await production_task(store)
    outcome = await bridge.decide(
        "t1",
        "approved",
        Actor(name="someone", via="api", role_ids=frozenset({DEPLOYER})),
        idempotency_seed="s1",
        deploy_confirmed=True,
    )
    assert outcome.kind == "refused" and "2 distinct deploy approvers" in outcome.message
    tracked = await store.get_task("t1")
    assert tracked is not None and tracked.deploy_approvals == ()
    assert tracked.inflight_decision is None


async def test_one_approval_is_recorded_and_nothing_is_sent(store: Store) -> None:
    bridge = make_bridge(store)
    await production_task(store)
    dave = Actor(name="dave", via="modal", discord_user_id=7, role_ids=frozenset({DEPLOYER}))
    outcome = await bridge.decide(
        "t1", "approved", dave, idempotency_seed="s1", deploy_confirmed=True
    )
    assert outcome.kind == "pending" and "(1 of 2)" in outcome.message
    again = await bridge.decide(
        "t1", "approved", dave, idempotency_seed="s2", deploy_confirmed=True
    )
    assert again.kind == "refused" and "already approved" in again.message
    tracked = await store.get_task("t1")
    assert tracked is not None and [a.name for a in tracked.deploy_approvals] == ["dave"]
