"""The bundler's reminder DM and its read of the store (the rig of ``test_ladder_runtime``).

A bundle of many reminders is one DM that lists the ones that fit in 2,000 characters; the
flush reads only the columns its rules need, and a DM reads only the tasks it shows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from bot.ladder import bundles
from bot.store import Store
from bot.store.ladder import LadderStore, NewDelivery
from escalation.models import Priority, Task, TaskDecision, TaskStatus
from tests.bot_unit.test_ladder_runtime import (  # noqa: F401 (make_rig: a fixture)
    ALICE,
    START,
    make_rig,
)


async def test_a_big_bundle_is_one_dm_listing_what_fits_and_reads_only_those_tasks(
    make_rig: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bundles, "FINISH_PAGE", 16)  # the outcomes are written in 4 pages
    rig = await make_rig(
        escalation_bundle_seconds=120, escalation_mention_after_seconds=3600, roster=(ALICE,)
    )
    await rig.add_task("a", created=START, sla_seconds=7200)
    await rig.at(START + timedelta(seconds=60))  # a's reminder opens Alice's window
    assert len(rig.messenger.dms) == 1
    for n in range(60):
        await rig.add_task(
            f"b{n:02d}",
            created=START + timedelta(seconds=10 + n // 2),
            sla_seconds=7200,
            priority=Priority.LOW,
        )
    await rig.at(START + timedelta(seconds=100))  # every b reminder held in the window
    assert len(rig.messenger.dms) == 1
    store = rig.bridge.store
    read = store.tasks_by_ids
    ids_read: list[str] = []

    async def counting(task_ids: Any) -> Any:
        ids_read.extend(task_ids)
        return await read(task_ids)

    store.tasks_by_ids = counting
    await rig.at(START + timedelta(seconds=180))
    assert len(rig.messenger.dms) == 2
    user, text = rig.messenger.dms[1]
    lines = text.split("\n")
    assert user == 11 and len(text) <= 2000
    assert lines[0] == "⏰ Reminder: 60 tasks are waiting for your decision:"
    deadline = int((START + timedelta(seconds=10 + 7200)).timestamp())
    assert lines[1] == (
        f"• **Task b00** (🔵 Low) SLA deadline <t:{deadline}:R> [reminder DM] (late by 1 min) "
        "https://discord.com/channels/1/100/5002"
    )
    shown = len(lines) - 2
    assert lines[-1] == f"…and {60 - shown} more: see /factory pending"
    assert [line.split("**")[1] for line in lines[1:-1]] == [f"Task b{n:02d}" for n in range(shown)]
    assert len(ids_read) < 60  # only the tasks of the lines shown (a page of them)
    rows = await rig.runtime.ladder_store.deliveries(channels=["dm"])
    assert {r.status for r in rows} == {"sent"} and len(rows) == 61
    assert all(r.detail["bundle_size"] == 60 for r in rows if r.task_id != "a")
    audit = [
        a for a in await store.audit_entries() if a.action == "escalation.dm" and a.task_id != "a"
    ]
    assert len(audit) == 60
    # (": None": a sent DM's detail has neither an error nor a note; kept as it was)
    assert {a.detail for a in audit} == {"reminder_dm → Alice (one of 60 in one message): None"}


@pytest.fixture
async def opened(database_url: str) -> AsyncIterator[tuple[Store, LadderStore]]:
    """A store with its schema on the test's engine and its ladder tables' store."""
    store = Store(database_url)
    try:
        await store.create_schema()
        yield store, LadderStore(store.db)
    finally:
        await store.close()


async def test_pending_reminders_carry_what_stops_them(
    opened: tuple[Store, LadderStore],
) -> None:
    store, ladder = opened
    for task_id in ("open", "acked", "decided"):
        await store.upsert_task(_task(task_id), START + timedelta(hours=1))
    await store.set_acknowledged("acked", 11, "alice", START)
    decided = _task("decided").model_copy(
        update={
            "status": TaskStatus.COMPLETED,
            "decision": TaskDecision.APPROVED,
            "decided_at": START,
        }
    )
    await store.upsert_task(decided, START + timedelta(hours=1))
    for task_id in ("open", "acked", "decided", "gone"):
        await ladder.claim_step(
            task_id,
            "reminder_dm",
            due_at=START,
            now=START + timedelta(seconds=2),
            deliveries=[NewDelivery("dm", "Alice", held=task_id == "open")],
        )
    await ladder.claim_step(
        "open", "sla_breach", due_at=START, now=START, deliveries=[NewDelivery("sms", "Dave")]
    )
    sms = [r.id for r in await ladder.deliveries(channels=["sms"])]
    assert await ladder.claim_deliveries(sms, START)  # claimed: no longer pending

    rows = await ladder.pending_reminders(["dm", "sms"])
    assert [r.task_id for r in rows] == ["open", "acked", "decided", "gone"]
    by_task = {r.task_id: r for r in rows}
    assert (by_task["open"].held, by_task["open"].due_at) == (True, START)
    assert (by_task["open"].step, by_task["open"].channel) == ("reminder_dm", "dm")
    assert by_task["open"].recipient == "Alice"
    assert [(r.task_known, r.decision, r.acknowledged) for r in rows] == [
        (True, None, False),
        (True, None, True),
        (True, "approved", False),
        (False, None, False),
    ]
    assert await ladder.pending_reminders(["sms"]) == []
    assert await ladder.pending_reminders([]) == []


async def test_finishing_many_deliveries_merges_each_stored_detail(
    opened: tuple[Store, LadderStore],
) -> None:
    store, ladder = opened
    for n in range(7):
        await ladder.claim_step(
            f"t{n}",
            "reminder_dm",
            due_at=START,
            now=START,
            deliveries=[
                NewDelivery("dm", "Alice", detail={"address": "x"} if n == 3 else {}),
                NewDelivery("dm", "Dave"),
            ],
        )
    rows = await ladder.deliveries()
    sent = {"message_id": 9, "via": "DM"}
    await ladder.finish_deliveries(
        [(r.id, "failed" if r.task_id == "t5" else "sent", sent) for r in rows],
        START + timedelta(seconds=3),
        audits=[
            {
                "actor_name": "escalation",
                "via": "ladder",
                "action": "escalation.dm",
                "outcome": "sent",
                "task_id": r.task_id,
            }
            for r in rows
        ],
    )
    after = {(r.task_id, r.recipient): r for r in await ladder.deliveries()}
    assert len(after) == 14
    assert after[("t3", "Alice")].detail == {"address": "x", **sent}
    assert all(r.detail == sent for k, r in after.items() if k != ("t3", "Alice"))
    assert {k for k, r in after.items() if r.status == "failed"} == {
        ("t5", "Alice"),
        ("t5", "Dave"),
    }
    assert all(r.finished_at == START + timedelta(seconds=3) for r in after.values())
    assert len(await store.audit_entries()) == 14


def _task(task_id: str) -> Task:
    return Task(id=task_id, title=f"Task {task_id}", priority=Priority.LOW, created_at=START)


async def test_a_delivery_outcome_and_its_audit_entry_are_one_write(
    opened: tuple[Store, LadderStore],
) -> None:
    """The ladder finishes each of its own deliveries with its audit entry in one call
    (``LadderRepository.finish_delivery(..., audit=...)``): both land, or neither."""
    store, ladder = opened
    await ladder.claim_step(
        "t", "sla_breach", due_at=START, now=START, deliveries=[NewDelivery("alert", "alerts")]
    )
    (row,) = await ladder.deliveries(task_id="t")
    assert await ladder.claim_deliveries([row.id], START)
    audit = {
        "actor_name": "escalation",
        "via": "system",
        "action": "escalation.alert",
        "outcome": "sent",
        "task_id": "t",
        "detail": "sla_breach → alerts: ok",
    }
    done = START + timedelta(seconds=1)
    await ladder.finish_delivery(row.id, "sent", {"message_id": 7}, done, audit=audit)
    (after,) = await ladder.deliveries(task_id="t")
    assert (after.status, after.detail, after.finished_at) == ("sent", {"message_id": 7}, done)
    entries = await store.audit_entries(task_id="t")
    assert [(e.action, e.outcome, e.detail, e.at) for e in entries] == [
        ("escalation.alert", "sent", "sla_breach → alerts: ok", done)
    ]
    with pytest.raises(ValueError, match="not audit columns"):  # checked before writing
        await ladder.finish_delivery(row.id, "failed", {}, done, audit={"bogus": 1})
    assert (await ladder.deliveries(task_id="t"))[0].status == "sent"


async def _pending_dms(ladder: LadderStore, task_ids: list[str]) -> list[int]:
    for task_id in task_ids:
        await ladder.claim_step(
            task_id,
            "reminder_dm",
            due_at=START,
            now=START,
            deliveries=[NewDelivery("dm", "Alice")],
        )
    return [r.id for r in await ladder.deliveries(channels=["dm"])]


async def test_a_bundle_is_claimed_a_page_at_a_time_leaving_out_a_decided_task(
    opened: tuple[Store, LadderStore],
) -> None:
    store, ladder = opened
    ids = await _pending_dms(ladder, [f"t{n}" for n in range(7)])
    await ladder.cancel_pending("t3", "task approved", START)  # decided meanwhile
    groups: list[int] = []
    write = store.db.write

    async def counting(fn: Any, **kwargs: Any) -> Any:
        groups.append(1)
        return await write(fn, **kwargs)

    store.db.write = counting  # type: ignore[method-assign]
    claimed = await ladder.claim_pending(ids, START, page=2)
    assert claimed == [i for n, i in enumerate(ids) if n != 3]  # in order, t3 left out
    assert len(groups) == 4  # 7 rows in pages of 2: four transactions
    rows = {r.id: r.status for r in await ladder.deliveries(channels=["dm"])}
    # the pages before the last are reserved (the message is not under way yet)
    expected = ["reserved"] * 3 + ["cancelled"] + ["reserved", "reserved", "claimed"]
    assert [rows[i] for i in ids] == expected
    assert await ladder.claim_pending(ids, START) == []  # nothing pending any more
    store.db.write = write  # type: ignore[method-assign]
    await ladder.finish_deliveries([(i, "sent", {"message_id": 9}) for i in claimed], START)
    rows = {r.id: r.status for r in await ladder.deliveries(channels=["dm"])}
    assert [rows[i] for i in claimed] == ["sent"] * 6


async def test_a_claim_refused_half_way_puts_the_claimed_pages_back(
    opened: tuple[Store, LadderStore],
) -> None:
    from bot.leadership.lease import NotLeader

    store, ladder = opened
    ids = await _pending_dms(ladder, ["a", "b", "c", "d"])
    fenced: list[int] = []

    def fence(conn: Any) -> None:  # the lease is lost after the first page
        fenced.append(1)
        if len(fenced) > 1:
            raise NotLeader("lease lost")

    store.db.fence = fence
    with pytest.raises(NotLeader):
        await ladder.claim_pending(ids, START, page=2)
    rows = await ladder.deliveries(channels=["dm"])
    assert {r.status for r in rows} == {"pending"}  # whoever leads now sends them
    assert all(r.claimed_at is None for r in rows)


class _Died(BaseException):
    """The process dying (kill -9) in the middle of a write: nothing after it runs."""


async def test_a_crash_between_two_pages_leaves_the_bundle_to_be_sent_after_the_restart(
    opened: tuple[Store, LadderStore],
) -> None:
    store, ladder = opened
    ids = await _pending_dms(ladder, ["a", "b", "c", "d", "e"])
    write = store.db.write
    calls: list[int] = []

    async def dying(fn: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:  # the process dies in the second page: no put-back either
            raise _Died
        return await write(fn, **kwargs)

    store.db.write = dying  # type: ignore[method-assign]
    with pytest.raises(_Died):
        await ladder.claim_pending(ids, START, page=2)
    store.db.write = write  # type: ignore[method-assign]
    rows = {r.id: r.status for r in await ladder.deliveries(channels=["dm"])}
    assert [rows[i] for i in ids] == ["reserved"] * 2 + ["pending"] * 3
    # the restart: no row of that bundle was claimed, so its message was never sent
    assert await ladder.expire_claimed(START + timedelta(seconds=5)) == []
    rows_after = await ladder.deliveries(channels=["dm"])
    assert {r.status for r in rows_after} == {"pending"}
    assert all(r.claimed_at is None for r in rows_after)
    assert await ladder.claim_pending(ids, START + timedelta(seconds=6)) == ids


@pytest.mark.parametrize("last_page_empty", [False, True])
async def test_a_crash_once_the_bundle_is_claimed_marks_every_row_of_it_unknown(
    opened: tuple[Store, LadderStore], last_page_empty: bool
) -> None:
    _, ladder = opened
    ids = await _pending_dms(ladder, ["a", "b", "c", "d", "e"])
    if last_page_empty:  # the last page's only task is decided before it is claimed
        await ladder.cancel_pending("e", "task approved", START)
    claimed = await ladder.claim_pending(ids, START, page=2)
    assert claimed == (ids[:4] if last_page_empty else ids)
    statuses = {r.id: r.status for r in await ladder.deliveries(channels=["dm"])}
    assert "claimed" in {statuses[i] for i in claimed}  # the message may go out now
    # the restart: the message may have been sent, so none of the bundle is sent again
    expired = await ladder.expire_claimed(START + timedelta(seconds=5))
    assert sorted(r.id for r in expired) == sorted(claimed)
    statuses = {r.id: r.status for r in await ladder.deliveries(channels=["dm"])}
    assert {statuses[i] for i in claimed} == {"unknown"}


async def test_a_paused_leader_refused_half_way_leaves_the_new_leaders_claim_alone(
    opened: tuple[Store, LadderStore],
) -> None:
    from bot.leadership.lease import NotLeader

    store, ladder = opened
    ids = await _pending_dms(ladder, ["a", "b", "c", "d"])
    write = store.db.write
    calls: list[int] = []
    later = START + timedelta(seconds=30)

    async def paused(fn: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:  # SIGSTOP after the first page; meanwhile a standby took over
            await ladder.expire_claimed(later)  # its start: the first page is pending
            assert await ladder.claim_pending(ids, later) == ids  # and it claimed them
            raise NotLeader("lease lost while paused")
        return await write(fn, **kwargs)

    store.db.write = paused  # type: ignore[method-assign]
    with pytest.raises(NotLeader):
        await ladder.claim_pending(ids, START, page=2)
    rows = await ladder.deliveries(channels=["dm"])
    # the old leader's put-back did not undo the new leader's claim (a DM sent twice)
    assert {(r.status, r.claimed_at) for r in rows} == {("claimed", later)}


async def test_the_tasks_with_a_step_left_claimed_are_found_at_start(
    opened: tuple[Store, LadderStore],
) -> None:
    """What a restart wakes even for a decided task: a step claimed and never finished."""
    _, ladder = opened
    await ladder.claim_step("t1", "critical", due_at=START, now=START, deliveries=[])
    await ladder.claim_step(
        "t2", "critical", due_at=START, now=START, deliveries=[], done_outcome={"late": 0}
    )
    assert await ladder.claimed_step_tasks() == {"t1"}
