"""The leader lease (issue 15): acquire, renew, lapse, release, and fencing of leader-only writes,
on SQLite and on PostgreSQL. Two :class:`Store` objects on one database stand for two bridge
processes; time is a fake monotonic clock per process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from bot.leadership import (
    DatabaseInUse,
    Leadership,
    Lease,
    NotLeader,
    SQLiteFileLock,
    holder_dead_here,
    holder_id,
)
from bot.leadership.lease import process_space
from bot.store import Store
from bot.store import tables as t
from bot.store.ladder import LadderStore
from escalation.models import Priority, Task, TaskStatus, TaskType
from tests.support.databases import fresh_postgres_database
from tests.support.harness import wait_until

LEASE = 10.0


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lease.db'}"
    else:
        with fresh_postgres_database("test_replicas") as url:
            yield url


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database: process A and process B."""
    a, b = Store(database_url), Store(database_url)
    await a.create_schema()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def lease_for(store: Store, name: str, clock: FakeClock) -> Lease:
    lease = Lease(store.db, holder=name, lease_seconds=LEASE, clock=clock)
    store.db.fence = lease.fence
    return lease


def task(task_id: str) -> Task:
    now = datetime(2026, 1, 5, 12, tzinfo=UTC)
    return Task(
        id=task_id,
        type=TaskType.APPROVAL,
        status=TaskStatus.PENDING,
        priority=Priority.HIGH,
        title="Deploy",
        created_at=now,
        updated_at=now,
        sla_deadline=now + timedelta(hours=1),
    )


async def test_first_process_leads_and_second_stands_by(stores: tuple[Store, Store]) -> None:
    a, b = stores
    clock_a, clock_b = FakeClock(), FakeClock()
    leader, standby = lease_for(a, "a", clock_a), lease_for(b, "b", clock_b)

    assert await leader.acquire() is True
    assert leader.token == 1 and leader.is_leader
    assert await standby.acquire() is False
    assert standby.token is None and not standby.is_leader
    stored = await standby.read()
    assert stored is not None and (stored.token, stored.holder) == (1, "a")


async def test_renewals_keep_the_lease_and_a_lapse_hands_it_over(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    clock_a, clock_b = FakeClock(), FakeClock()
    leader, standby = lease_for(a, "a", clock_a), lease_for(b, "b", clock_b)
    assert await leader.acquire()
    assert not await standby.acquire()

    # the leader renews every third of the lease: the standby never sees a whole lease unchanged
    for _ in range(6):
        clock_a.now += LEASE / 3
        clock_b.now += LEASE / 3
        assert await leader.renew() is True
        assert await standby.acquire() is False
    assert leader.is_leader

    # the leader stops renewing (killed, paused): just short of a lease nothing happens …
    clock_b.now += LEASE - 0.1
    assert await standby.acquire() is False
    # … a whole lease unchanged and the standby takes over with a newer token
    clock_b.now += 0.1
    assert await standby.acquire() is True
    assert standby.token == 2

    # the old leader's own deadline has passed too, and its renewal finds the newer token
    clock_a.now += LEASE
    assert not leader.is_leader
    assert await leader.renew() is False
    assert leader.token is None


async def test_the_leader_deadline_runs_from_its_last_renewal(
    stores: tuple[Store, Store],
) -> None:
    a, _ = stores
    clock = FakeClock()
    lease = lease_for(a, "a", clock)
    assert await lease.acquire()
    clock.now += LEASE - 0.01
    assert lease.is_leader
    assert await lease.renew()
    clock.now += LEASE - 0.01
    assert lease.is_leader  # renewed: a new lease from the renewal's start
    clock.now += 0.02
    assert not lease.is_leader  # no renewal for a whole lease: stop acting


async def test_a_released_lease_is_taken_at_once(stores: tuple[Store, Store]) -> None:
    a, b = stores
    leader, standby = lease_for(a, "a", FakeClock()), lease_for(b, "b", FakeClock())
    assert await leader.acquire()
    assert not await standby.acquire()
    await leader.release()
    assert leader.token is None
    assert await standby.acquire() is True  # no waiting for a lease
    assert standby.token == 2


async def test_fencing_rejects_a_stale_leaders_step_claim_and_decision(
    stores: tuple[Store, Store],
) -> None:
    """A paused leader that resumes after a takeover claims no step and begins no decision."""
    a, b = stores
    clock_a, clock_b = FakeClock(), FakeClock()
    old, new = lease_for(a, "a", clock_a), lease_for(b, "b", clock_b)
    assert await old.acquire()
    await a.upsert_task(task("T-1"), datetime(2026, 1, 5, 13, tzinfo=UTC))
    assert not await new.acquire()
    clock_b.now += LEASE  # "a" is paused: no renewal for a whole lease
    assert await new.acquire()

    # "a" resumes: it still believes it holds token 1 (its loop has not run yet)
    assert old.token == 1
    due = datetime(2026, 1, 5, 12, 30, tzinfo=UTC)
    with pytest.raises(NotLeader, match="token 1"):
        await LadderStore(a.db).claim_step("T-1", "reminder", due_at=due, now=due, deliveries=[])
    with pytest.raises(NotLeader):
        await a.begin_decision(
            "T-1", "approved", discord_user_id=1, name="alice", key="k-old", notes=None
        )
    with pytest.raises(NotLeader):
        await a.claim_posting("T-1")

    # the new leader's writes go through, once
    ladder_b = LadderStore(b.db)
    assert await ladder_b.claim_step("T-1", "reminder", due_at=due, now=due, deliveries=[])
    assert not await ladder_b.claim_step("T-1", "reminder", due_at=due, now=due, deliveries=[])
    won = await b.begin_decision(
        "T-1", "approved", discord_user_id=2, name="dave", key="k-new", notes=None
    )
    assert won is not None and won.inflight_key == "k-new"

    def steps(conn: object) -> int:
        return int(conn.execute(select(func.count()).select_from(t.escalation_steps)).scalar_one())  # type: ignore[attr-defined]

    assert await b.db.read(steps) == 1
    tracked = await b.get_task("T-1")
    assert tracked is not None and tracked.inflight_by_name == "dave"


async def test_a_fenced_write_holds_off_a_takeover_until_it_commits(
    stores: tuple[Store, Store],
) -> None:
    """On PostgreSQL the fence reads the lease row FOR SHARE: a takeover's UPDATE of that row
    cannot run while a fenced transaction is open (it lands before the new term or not at all)."""
    a, _ = stores
    if a.db.dialect_name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite has one writer anyway")
    lease = lease_for(a, "a", FakeClock())
    assert await lease.acquire()
    fenced = a.db.write_engine.connect()
    taker = a.db.write_engine.connect()
    try:
        fenced.begin()
        lease.fence(fenced)  # the transaction is still open
        taker.begin()
        taker.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
        with pytest.raises(OperationalError, match="lock timeout"):
            taker.exec_driver_sql("UPDATE leader_lease SET token = token + 1")
        taker.rollback()
        fenced.commit()
        with taker.begin():  # once the fenced write committed, the takeover goes through
            taker.exec_driver_sql("UPDATE leader_lease SET token = token + 1")
        with pytest.raises(NotLeader), fenced.begin():
            lease.fence(fenced)
    finally:
        fenced.close()
        taker.close()


async def test_a_frozen_leader_holding_the_lease_row_does_not_block_the_takeover(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leader frozen in the middle of a fenced write (SIGSTOP, a paused VM) keeps the lease
    row FOR SHARE. PostgreSQL ends that idle transaction (``idle_in_transaction_session_timeout``,
    here 1 s) and the standby's lease statements give up waiting for the lock after a third of
    a lease instead of hanging: once the lease has lapsed the standby leads."""
    from bot.store import database

    if not database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite has one writer anyway")
    monkeypatch.setattr(database, "IDLE_IN_TRANSACTION_SECONDS", 1.0)
    a, b = Store(database_url), Store(database_url)
    await a.create_schema()
    clock_a, clock_b = FakeClock(), FakeClock()
    lease_a = Lease(a.db, holder="a", lease_seconds=1.5, clock=clock_a)
    lease_b = Lease(b.db, holder="b", lease_seconds=1.5, clock=clock_b)
    frozen = a.db.write_engine.connect()
    try:
        assert await lease_a.acquire()
        pid = frozen.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        frozen.commit()
        frozen.begin()
        lease_a.fence(frozen)  # ... and the process freezes here, its transaction open
        with pytest.raises(OperationalError, match="lock timeout"):  # gives up, never hangs
            await asyncio.wait_for(lease_b.acquire(), 5)

        def frozen_session_ended() -> bool:
            with b.db.write_engine.connect() as conn:
                alive = conn.exec_driver_sql(
                    f"SELECT count(*) FROM pg_stat_activity WHERE pid = {int(pid)}"
                ).scalar_one()
            return alive == 0

        await wait_until(frozen_session_ended, timeout=10, what="PostgreSQL ending the session")
        assert not await lease_b.acquire()  # the row seen held: a lease must pass unrenewed
        clock_b.now += 1.5
        assert await lease_b.acquire()
        assert lease_b.token == 2
    finally:
        frozen.invalidate()  # PostgreSQL ended its session: nothing to roll back
        frozen.close()
        await a.close()
        await b.close()


async def test_writes_that_are_not_leader_only_go_on_for_a_standby(
    stores: tuple[Store, Store],
) -> None:
    """A standby stores events (POST /events) without holding the lease."""
    a, b = stores
    assert await lease_for(a, "a", FakeClock()).acquire()
    lease_for(b, "b", FakeClock())
    recorded = await b.record_event("evt-1", "task.created", {}, "webhook")
    assert recorded.name == "NEW"


async def test_the_leadership_loop_deposes_a_leader_whose_lease_was_taken(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    clock_a, clock_b = FakeClock(), FakeClock()
    elected: list[str] = []
    deposed: list[str] = []
    roles: list[bool] = []

    async def on_elected() -> None:
        elected.append("a")

    loop_a = Leadership(
        lease_for(a, "a", clock_a),
        on_elected=on_elected,
        on_deposed=deposed.append,
        on_failed=lambda exc: None,
        on_role=roles.append,
    )
    await loop_a.step()
    assert loop_a.elected is not None
    await loop_a.elected
    assert elected == ["a"] and loop_a.role == "leader" and roles == [True]

    other = lease_for(b, "b", clock_b)
    assert not await other.acquire()
    clock_b.now += LEASE
    assert await other.acquire()

    await loop_a.step()  # its renewal finds token 2
    assert loop_a.role == "standby" and loop_a.deposed
    assert deposed and "took the lease over" in deposed[0]
    assert roles == [True, False]


async def test_a_late_renewal_keeps_the_lease_when_no_standby_took_it(
    stores: tuple[Store, Store],
) -> None:
    """The event loop held up past the deadline (a takeover rebuilding 100,000 timers on a
    loaded host, bench ``failover``): the renewal that finally runs, however slow, keeps the
    lease if the row still carries this process's token; nobody is left leaderless."""
    a, _ = stores
    clock = FakeClock()
    deposed: list[str] = []
    lease = lease_for(a, "a", clock)
    leadership = Leadership(
        lease, on_elected=_nothing, on_deposed=deposed.append, on_failed=lambda exc: None
    )
    await leadership.step()
    assert leadership.role == "leader"
    clock.now += LEASE + 5  # no look for longer than a lease
    assert not lease.is_leader

    renew, started, answer = lease.renew, asyncio.Event(), asyncio.Event()

    async def slow_renew() -> bool:  # the database answers, after a while (a loaded host)
        started.set()
        await answer.wait()
        return await renew()

    lease.renew = slow_renew  # type: ignore[method-assign]
    step = asyncio.create_task(leadership.step())
    await started.wait()
    done, _ = await asyncio.wait({step}, timeout=0.3)
    assert not done and not deposed  # still waiting for the answer, not given up
    answer.set()
    await step
    assert not deposed and not leadership.deposed
    assert leadership.role == "leader" and lease.token == 1
    assert lease.deadline == clock.now + LEASE  # a whole lease from this renewal


async def test_a_second_process_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    first = SQLiteFileLock(db)
    first.acquire()
    try:
        with pytest.raises(DatabaseInUse, match="PostgreSQL") as refused:
            SQLiteFileLock(db).acquire()
        assert str(db) in str(refused.value)
    finally:
        first.release()
    SQLiteFileLock(db).acquire()  # free again once the first let go


async def test_an_exclusive_lease_is_taken_at_once_from_a_dead_holder(
    stores: tuple[Store, Store],
) -> None:
    """SQLite (file-locked: no other process can run): a restart after ``kill -9`` leads
    without waiting out the dead process's lease."""
    a, b = stores
    assert await lease_for(a, "dead", FakeClock()).acquire()
    restarted = Lease(b.db, holder="new", lease_seconds=LEASE, clock=FakeClock(), exclusive=True)
    assert await restarted.acquire() is True
    assert restarted.token == 2 and restarted.is_leader


def _exited_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _sleeping_process() -> subprocess.Popen[bytes]:
    """A process of this host that stays alive (a minute at most)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # ok-sleep


def _holder(pid: int, *, host: str | None = None, namespace: str | None = None) -> str:
    """A holder id of the :func:`holder_id` form for ``pid``."""
    ours = holder_id().split(":")
    return f"{host or ours[0]}:{namespace or ours[1]}:{pid}:0badcafe"


async def test_a_holder_process_of_this_host_that_is_gone_is_replaced_at_once(
    stores: tuple[Store, Store],
) -> None:
    """``kill -9`` of the leader, restarted on the same host (or a standby beside it): its
    process is gone, so the lease is taken without waiting a whole lease; the newer token
    fences anything the dead one left in flight."""
    a, b = stores
    dead = Lease(a.db, holder=_holder(_exited_pid()), lease_seconds=LEASE, clock=FakeClock())
    assert await dead.acquire()
    restarted = lease_for(b, holder_id(), FakeClock())
    assert await restarted.acquire() is True
    assert restarted.token == 2 and restarted.is_leader


async def test_a_holder_that_may_be_alive_is_waited_out(stores: tuple[Store, Store]) -> None:
    """A holder whose process exists (paused, busy, or its pid taken by another program), or
    that runs on another host or in another PID namespace (a container), may still act: the
    standby waits out a whole lease, as for any holder it cannot see."""
    a, b = stores
    alive = _sleeping_process()
    try:
        for holder in (
            _holder(alive.pid),
            _holder(os.getpid()),
            _holder(_exited_pid(), host="another-host"),
            _holder(_exited_pid(), namespace="another-boot"),
            f"another-form:{_exited_pid()}",
        ):
            await a.db.write(lambda conn: conn.execute(t.leader_lease.delete()))
            clock = FakeClock()
            assert await Lease(a.db, holder=holder, lease_seconds=LEASE, clock=clock).acquire()
            standby = lease_for(b, holder_id(), clock)
            assert await standby.acquire() is False, holder
            clock.now += LEASE
            assert await standby.acquire() is True, holder
    finally:
        alive.kill()
        alive.wait()


def test_a_holder_id_names_host_namespace_and_process() -> None:
    host, namespace, pid, random = holder_id().split(":")
    assert host == socket.gethostname() and pid == str(os.getpid())
    assert namespace == process_space() != "-" and len(random) == 8
    assert holder_dead_here(holder_id()) is False  # this very process
    assert holder_dead_here(_holder(_exited_pid())) is True
    assert holder_dead_here(None) is False


async def test_a_standby_looks_again_exactly_when_the_lease_it_saw_lapses(
    stores: tuple[Store, Store],
) -> None:
    """The takeover does not wait for the next regular look (issue 15: leader within 15 s)."""
    a, b = stores
    clock_b = FakeClock()
    assert await lease_for(a, "a", FakeClock()).acquire()
    standby = Leadership(
        lease_for(b, "b", clock_b),
        on_elected=_nothing,
        on_deposed=lambda reason: None,
        on_failed=lambda exc: None,
    )
    await standby.step()
    assert standby.role == "standby"
    assert standby._next_look() == pytest.approx(LEASE / 3)
    clock_b.now += 3 * LEASE / 3 - 0.5  # three looks later, half a second before the lapse
    assert standby._next_look() == pytest.approx(0.51)


async def _nothing() -> None:
    return None


async def test_the_task_cache_stays_right_across_a_takeover(stores: tuple[Store, Store]) -> None:
    """Only the lease holder writes task rows; a standby that takes over forgets its cache."""
    a, b = stores
    clock_a, clock_b = FakeClock(), FakeClock()
    old, new = lease_for(a, "a", clock_a), lease_for(b, "b", clock_b)
    assert await old.acquire()
    await a.upsert_task(task("T-2"), datetime(2026, 1, 5, 13, tzinfo=UTC))
    cached = await b.get_task("T-2")  # the standby read (and cached) the row
    assert cached is not None and cached.inflight_key is None
    assert await a.begin_decision(
        "T-2", "approved", discord_user_id=1, name="alice", key="k-a", notes=None
    )
    assert not await new.acquire()
    clock_b.now += LEASE
    assert await new.acquire()
    b.forget_cached_tasks()  # what BridgeApp._lead does first
    fresh = await b.get_task("T-2")
    assert fresh is not None and fresh.inflight_key == "k-a"
    # the old leader can no longer change the row behind the new leader's cache
    with pytest.raises(NotLeader):
        await a.abort_decision("T-2", "k-a")
    again = await b.get_task("T-2")
    assert again is not None and again.inflight_key == "k-a"


async def test_a_lease_of_months_can_still_be_taken(stores: tuple[Store, Store]) -> None:
    """The settings accept a lease of up to a year; a third of it in ms is more than
    PostgreSQL's largest ``lock_timeout`` (2147483647), which made every lease statement fail
    and left every bridge a standby."""
    a, _ = stores
    lease = Lease(a.db, holder="A:x:1:a", lease_seconds=7_000_000, clock=FakeClock())  # 81 days
    assert await lease.acquire()
