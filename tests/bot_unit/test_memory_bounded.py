"""Per-task state is forgotten once tasks are decided: memory does not grow with every task
ever seen (the bridge's message locks and decision events, the ladder's step history, locks,
wake-ups and timer heap; bounded caches stay within their bound)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.bridge import Actor, Bridge
from bot.factory.events import FactoryEvent
from bot.keyed import BoundedMap, KeyedLocks
from bot.ladder import LadderRuntime
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store, TrackedTask
from escalation.models import Task, TaskDecision, TaskStatus

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
COUNT = 1200
ALICE = Actor(name="alice", via="button", discord_user_id=11, role_ids=frozenset({7}))


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class FakeFactory:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.tasks: dict[str, Task] = {}

    async def complete_task(self, task_id: str, *, decision: str, **kwargs: Any) -> Task:
        return self.tasks[task_id].model_copy(
            update={
                "status": TaskStatus.COMPLETED,
                "decision": TaskDecision(decision),
                "decided_at": self.clock(),
            }
        )

    async def get_task(self, task_id: str) -> Task:
        return self.tasks[task_id]


class FakeNotifier:
    def __init__(self) -> None:
        self.posted = 0

    async def post_task(self, tracked: TrackedTask) -> tuple[int, int]:
        self.posted += 1
        return 100, 10_000 + self.posted

    async def edit_task(self, tracked: TrackedTask, *, wait: bool = True) -> None:
        await asyncio.sleep(0)

    async def post_event(self, event: FactoryEvent) -> None:
        return None


class SilentMessenger:
    async def send_dm(self, user_id: int, content: str) -> int:
        return 1

    async def post(self, channel_id: int, content: str, **kwargs: Any) -> int:
        return 1

    def may_mention_everyone(self, channel_id: int) -> bool:
        return True


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Bridge, LadderRuntime, FakeFactory]]:
    clock = Clock()
    # in-process memory is the subject, not the engine: SQLite only (on PostgreSQL the 2,400
    # serial commits of this test take ~40 s on a shared 2-core machine)
    store = Store(f"sqlite:///{tmp_path / 'memory.db'}")
    await store.create_schema()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        discord_bot_token="t",
        discord_guild_id=1,
        discord_tasks_channel_id=100,
        discord_approver_role_ids="7",
        factory_api_key="k",
        factory_webhook_secret="s",
        quiet_hours_enabled=False,
    )
    factory = FakeFactory(clock)
    bridge = Bridge(
        settings=settings,
        store=store,
        factory=factory,  # type: ignore[arg-type]
        roster=Roster(()),
        clock=clock,
    )
    bridge.attach_notifier(FakeNotifier())
    runtime = LadderRuntime(bridge=bridge, messenger=SilentMessenger(), pager=None, clock=clock)
    bridge.escalation = runtime
    await runtime.recover()
    try:
        yield bridge, runtime, factory
    finally:
        await store.close()


async def settle(runtime: LadderRuntime) -> None:
    await runtime.tick()
    await runtime.drain()


async def test_state_of_decided_tasks_is_forgotten(
    rig: tuple[Bridge, LadderRuntime, FakeFactory],
) -> None:
    bridge, runtime, factory = rig
    for index in range(COUNT):
        task = Task(
            id=f"t{index}",
            title=f"Task {index}",
            priority="high",
            created_at=START,
            type="review",
        )
        factory.tasks[task.id] = task
        await bridge.show_task(task)
    await settle(runtime)  # every ladder planned: wake-ups in the future
    assert len(runtime._wake) == COUNT
    for index in range(COUNT):
        task_id = f"t{index}"
        if index % 2:  # a click
            outcome = await bridge.decide(task_id, "approved", ALICE, idempotency_seed=task_id)
            assert outcome.kind == "done", outcome.message
        else:  # decided at the factory (a task.completed event)
            await bridge.apply_factory_task(
                await factory.complete_task(task_id, decision="rejected")
            )
    await settle(runtime)
    assert await bridge.store.open_tasks() == []
    assert len(bridge._message_locks) == 0
    assert bridge._decisions_settled == {}
    assert len(bridge.resender) == 0
    assert runtime._wake == {}
    assert runtime._history == {}
    assert len(runtime._locks) == 0
    assert len(runtime._heap) <= 1024 + 1  # stale timer entries are compacted away


async def test_keyed_locks_serialise_and_forget() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    order: list[str] = []

    async def hold(name: str) -> None:
        async with locks("a"):
            order.append(f"{name} in")
            await asyncio.sleep(0)
            order.append(f"{name} out")

    await asyncio.gather(hold("x"), hold("y"))
    assert order == ["x in", "x out", "y in", "y out"]
    assert len(locks) == 0 and "a" not in locks


async def test_keyed_lock_of_a_cancelled_waiter_is_forgotten() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    async with locks("a"):
        waiter = asyncio.create_task(_enter(locks))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert len(locks) == 0


async def test_a_keyed_lock_not_had_in_time_raises_and_is_forgotten() -> None:
    """The phone's acknowledgement waits a few seconds at most behind another one of the same
    task (Twilio waits 15 s for its answer): then TimeoutError, nothing held."""
    locks: KeyedLocks[str] = KeyedLocks()
    async with locks("a"):
        with pytest.raises(TimeoutError):
            async with locks("a", wait_seconds=0.01):
                pytest.fail("entered a lock another holds")
        async with locks("b", wait_seconds=0.01):  # another key is free
            pass
    assert len(locks) == 0
    async with locks("a", wait_seconds=0.01):  # free again
        pass


async def _enter(locks: KeyedLocks[str]) -> None:
    async with locks("a"):
        return None


def test_bounded_map_forgets_the_least_recently_used() -> None:
    seen: BoundedMap[int, str] = BoundedMap(3)
    for key in range(5):
        seen[key] = str(key)
    assert list(seen) == [2, 3, 4]
    assert seen.get(2) == "2"  # used: now the most recent
    seen[5] = "5"
    assert list(seen) == [4, 2, 5] and len(seen) == 3
    assert seen.get(3) is None
    with pytest.raises(ValueError):
        BoundedMap(0)
