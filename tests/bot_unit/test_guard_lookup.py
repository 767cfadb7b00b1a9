"""The deploy guard sees the approval behind a task before any decision on it, however the
task reached the bridge: a task first seen through a typed command (its events missed) is
looked up as one shown from its event would be, and an approval that could not be read is
looked up again before a decision rather than forgotten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.bridge import Actor, Bridge
from bot.factory.client import FactoryUnavailable
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store
from escalation.models import Approval, Task

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
APPROVER, DEPLOYER = 11, 55
ALICE = Actor(name="alice", via="command", discord_user_id=7, role_ids=frozenset({APPROVER}))
DEPLOY_GATE = {"id": "a1", "taskId": "t1", "type": "deploy", "stageName": "staging",
               "requiredApprovers": 2}  # fmt: skip
TASK = Task.model_validate(
    {"id": "t1", "title": "Promote GHL MCP", "type": "approval", "stageName": "review",
     "createdAt": NOW.isoformat()}
)  # fmt: skip


class Factory:
    """The factory's task and approval reads (the approval read fails ``unreadable`` times);
    a decision must never reach it in these tests."""

    def __init__(self, unreadable: int = 0) -> None:
        self.unreadable = unreadable
        self.lookups = 0

    async def get_task(self, task_id: str) -> Task:
        return TASK

    async def find_approval(self, task_id: str, *, pipeline_id: str | None = None) -> Approval:
        self.lookups += 1
        if self.unreadable:
            self.unreadable -= 1
            raise FactoryUnavailable("timed out")
        return Approval.model_validate(DEPLOY_GATE)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the factory was asked to {name}: nothing may be sent")


def bridge_with(store: Store, factory: Factory) -> Bridge:
    settings = Settings(
        discord_bot_token="token",
        discord_guild_id=1,
        discord_tasks_channel_id=2,
        discord_approver_role_ids=str(APPROVER),
        discord_deploy_approver_role_ids=str(DEPLOYER),
        factory_api_key="key",
        factory_webhook_secret="secret",
    )
    return Bridge(settings=settings, store=store, factory=factory, roster=Roster())  # type: ignore[arg-type]


async def test_a_task_first_seen_through_a_command_is_guarded_by_its_approval(
    store: Store,
) -> None:
    factory = Factory()
    bridge = bridge_with(store, factory)
    outcome = await bridge.decide("t1", "approved", ALICE, idempotency_seed="cmd-1")
    assert outcome.kind == "refused"  # a deploy: the approver role alone may not approve it
    tracked = await store.get_task("t1")
    assert tracked is not None and tracked.guarded and tracked.approval is not None
    assert tracked.approval.required_approvers == 2
    assert factory.lookups == 1


async def test_an_approval_that_could_not_be_read_is_read_again_before_a_decision(
    store: Store,
) -> None:
    factory = Factory()
    bridge = bridge_with(store, factory)
    await store.upsert_task(TASK, NOW + timedelta(hours=4))
    await store.set_approval("t1", None, unread=True)  # the lookup at its post timed out
    shown = await store.get_task("t1")
    assert shown is not None and shown.guarded  # fail safe meanwhile
    dave = Actor(name="dave", via="modal", discord_user_id=8, role_ids=frozenset({DEPLOYER}))
    outcome = await bridge.decide(
        "t1", "approved", dave, idempotency_seed="modal-1", deploy_confirmed=True
    )
    # read again: the factory wants two distinct deploy approvers, so one is not enough
    assert outcome.kind == "pending" and "(1 of 2)" in outcome.message
    assert factory.lookups == 1


async def test_a_deploy_approval_without_the_typed_deploy_sends_nothing(store: Store) -> None:
    bridge = bridge_with(store, Factory())
    await store.upsert_task(TASK, NOW + timedelta(hours=4))
    await store.set_approval("t1", Approval.model_validate(DEPLOY_GATE))
    dave = Actor(name="dave", via="button", discord_user_id=8, role_ids=frozenset({DEPLOYER}))
    outcome = await bridge.decide("t1", "approved", dave, idempotency_seed="click-1")
    assert outcome.kind == "refused" and "type DEPLOY" in outcome.message
    tracked = await store.get_task("t1")
    assert tracked is not None and tracked.inflight_decision is None
    assert tracked.deploy_approvals == ()  # not counted as one of the two approvers either
    refused = [e for e in await store.audit_entries(task_id="t1") if e.action == "task.approved"]
    assert [e.outcome for e in refused] == ["refused"]


async def test_a_task_that_becomes_a_deploy_during_the_click_is_not_approved(
    store: Store, monkeypatch: Any
) -> None:
    # the click's checks see a routine approval; the approval.pending event that makes it a
    # production deploy lands before the decision is marked in flight
    factory = Factory()
    bridge = bridge_with(store, factory)
    await store.upsert_task(TASK, NOW + timedelta(hours=4))
    begin = store.begin_decision

    async def approval_arrives_first(*args: Any, **kwargs: Any) -> Any:
        await store.set_approval("t1", Approval.model_validate(DEPLOY_GATE))
        return await begin(*args, **kwargs)

    monkeypatch.setattr(store, "begin_decision", approval_arrives_first)
    outcome = await bridge.decide("t1", "approved", ALICE, idempotency_seed="click-1")
    assert outcome.kind == "refused" and "type DEPLOY" in outcome.message
    tracked = await store.get_task("t1")
    assert tracked is not None and tracked.guarded and not tracked.is_decided
    assert tracked.inflight_decision is None  # the claim was given back: the task stays open
    monkeypatch.setattr(store, "begin_decision", begin)
    # through the DEPLOY form, by a deploy approver, it is counted (1 of the 2 required)
    dave = Actor(name="dave", via="modal", discord_user_id=8, role_ids=frozenset({DEPLOYER}))
    again = await bridge.decide(
        "t1", "approved", dave, idempotency_seed="modal-1", deploy_confirmed=True
    )
    assert again.kind == "pending" and "(1 of 2)" in again.message


async def test_a_second_approver_required_during_the_click_is_waited_for(
    store: Store, monkeypatch: Any
) -> None:
    # the checks see a deploy needing one approver; the approval.pending that raises it to two
    # lands before the decision is marked in flight: dave's approval is one of the two
    bridge = bridge_with(store, Factory())
    await store.upsert_task(TASK, NOW + timedelta(hours=4))
    await store.set_approval("t1", Approval.model_validate({**DEPLOY_GATE, "requiredApprovers": 1}))
    begin = store.begin_decision

    async def raised_to_two_first(*args: Any, **kwargs: Any) -> Any:
        await store.set_approval("t1", Approval.model_validate(DEPLOY_GATE))
        return await begin(*args, **kwargs)

    monkeypatch.setattr(store, "begin_decision", raised_to_two_first)
    dave = Actor(name="dave", via="modal", discord_user_id=8, role_ids=frozenset({DEPLOYER}))
    outcome = await bridge.decide(
        "t1", "approved", dave, idempotency_seed="modal-1", deploy_confirmed=True
    )
    assert outcome.kind == "pending" and "(1 of 2)" in outcome.message
    tracked = await store.get_task("t1")
    assert tracked is not None and not tracked.is_decided and tracked.inflight_decision is None
    assert [a.name for a in tracked.deploy_approvals] == ["dave"]
