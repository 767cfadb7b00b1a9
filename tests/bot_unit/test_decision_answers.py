"""A success answer is not a confirmation unless it says so (factory contract §1.5: the answer
to ``POST /v1/tasks/{id}/complete`` is the updated Task), and a 409 may be this very decision.

The factory here is scripted with httpx's ``MockTransport``; the bridge runs on the store of
each engine, with no Discord.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot import actions
from bot.bridge import Bridge
from bot.factory.client import FactoryClient, RetryPolicy
from bot.ladder.adapters import BridgeDecider
from bot.outcomes import Actor
from bot.roster import Roster
from bot.settings import Settings
from bot.store import GONE, Store
from escalation.models import Task

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
OPEN = {
    "id": "t1",
    "title": "Release",
    "createdAt": NOW.isoformat(),
    "status": "pending",
    "priority": "high",
    "type": "review",
}
ALICE = Actor(name="alice", via="button", discord_user_id=7, role_ids=frozenset({5}))


def decided(decision: str, by: str, discord_id: str, **extra: Any) -> dict[str, Any]:
    return {
        **OPEN,
        "status": "completed",
        "decision": decision,
        "decidedBy": by,
        "decidedAt": NOW.isoformat(),
        "decisionData": {"discordUserId": discord_id},
        **extra,
    }


OURS = decided("approved", "alice", "7")
BOBS = decided("rejected", "bob", "99")
CONFLICT = httpx.Response(
    409, json={"ok": False, "error": {"code": "CONFLICT", "message": "already decided"}}
)

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


def ok(data: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"ok": True, "data": data})


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


async def bridge_with(store: Store, answers: list[Answer]) -> tuple[Bridge, list[str]]:
    """A bridge whose factory answers ``answers`` in turn (then 500s); the requests made."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        answer = answers.pop(0) if answers else httpx.Response(500)
        return answer(request) if callable(answer) else answer

    async def no_sleep(seconds: float) -> None:
        return None

    factory = FactoryClient(
        "http://factory.test/v1",
        "key",
        transport=httpx.MockTransport(handler),
        sleep=no_sleep,
        retry=RetryPolicy(jitter_seconds=0.0, base_delay_seconds=0.0),
    )
    settings = Settings(
        discord_bot_token="token",
        discord_guild_id=1,
        discord_tasks_channel_id=2,
        factory_api_key="key",
        factory_webhook_secret="secret",
        discord_approver_role_ids=[5],
    )
    bridge = Bridge(settings=settings, store=store, factory=factory, roster=Roster())
    await store.upsert_task(Task.model_validate(OPEN), NOW + timedelta(hours=4))
    return bridge, calls


async def approve(bridge: Bridge) -> Any:
    return await bridge.decide("t1", "approved", ALICE, idempotency_seed="click-1")


async def test_a_200_showing_the_task_undecided_is_read_back_not_taken_as_done(
    store: Store,
) -> None:
    bridge, calls = await bridge_with(store, [ok(OPEN), ok(OPEN)])
    outcome = await approve(bridge)
    assert outcome.kind == "failed"  # read back: still open, so NOT recorded
    assert "NOT recorded" in outcome.message
    stored = await store.get_task("t1")
    assert stored is not None and stored.decision is None and stored.inflight_key is None
    assert calls == ["POST /v1/tasks/t1/complete", "GET /v1/tasks/t1"]


async def test_a_200_with_another_tasks_record_confirms_nothing(store: Store) -> None:
    other = {**OURS, "id": "t999"}
    bridge, calls = await bridge_with(store, [ok(other), ok(OURS)])
    outcome = await approve(bridge)
    # the read back of t1 shows Alice's approval: that, not the stray answer, confirms it
    assert outcome.kind == "done"
    stored = await store.get_task("t1")
    assert stored is not None and stored.decision == "approved"
    assert calls == ["POST /v1/tasks/t1/complete", "GET /v1/tasks/t1"]


async def test_a_200_whose_record_is_someone_elses_decision_is_a_conflict(store: Store) -> None:
    """A 200 naming another decision is read back (one already decided is a 409, contract
    §7.1): the factory's record, read, says Bob rejected it first."""
    bridge, calls = await bridge_with(store, [ok(BOBS), ok(BOBS)])
    outcome = await approve(bridge)
    assert calls == ["POST /v1/tasks/t1/complete", "GET /v1/tasks/t1"]
    assert outcome.kind == "conflict"
    assert "Already rejected by <@99>" in outcome.message
    stored = await store.get_task("t1")
    assert stored is not None and stored.decision == "rejected"  # the factory's record
    assert stored.inflight_key is None
    entries = await store.audit_entries(task_id="t1")
    assert [e.outcome for e in entries if e.action == "task.approved"] == ["conflict"]


@pytest.mark.parametrize(
    ("record", "kind", "stored_decision"),
    [(OURS, "done", "approved"), (BOBS, "conflict", "rejected")],
    ids=["the record is ours", "the record is someone else's"],
)
async def test_a_409_after_a_timeout_is_read_back_before_it_is_called_a_conflict(
    store: Store, record: dict[str, Any], kind: str, stored_decision: str
) -> None:
    """The first request timed out after the factory applied it; the retry meets a factory
    that no longer replays its first answer (409): the read back tells whose it is."""
    bridge, calls = await bridge_with(store, [timeout, CONFLICT, ok(record)])
    outcome = await approve(bridge)
    assert outcome.kind == kind
    stored = await store.get_task("t1")
    assert stored is not None and stored.decision == stored_decision
    assert calls[-1] == "GET /v1/tasks/t1"
    entries = await store.audit_entries(task_id="t1")
    expected = "ok" if kind == "done" else "conflict"
    assert [e.outcome for e in entries if e.action == "task.approved"] == [expected]


async def test_acknowledging_a_task_decided_at_the_factory_meanwhile_acknowledges_nothing(
    store: Store,
) -> None:
    """The dashboard approved it before its event reached the bridge: the claim is 409
    (contract §1.3, a state conflict), and the read back tells who decided."""
    claimed_409 = httpx.Response(
        409,
        json={
            "ok": False,
            "error": {"code": "CONFLICT", "message": "task is completed"},
        },
    )
    bridge, calls = await bridge_with(store, [claimed_409, ok(BOBS)])
    outcome = await bridge.acknowledge("t1", ALICE, idempotency_seed="click-2")
    assert outcome.kind == "conflict"
    assert "Already rejected by <@99>" in outcome.message
    stored = await store.get_task("t1")
    assert stored is not None and stored.acknowledged_at is None
    assert stored.decision == "rejected"
    entries = await store.audit_entries(task_id="t1")
    assert [e.outcome for e in entries if e.action == "task.acknowledge"] == ["conflict"]
    assert calls == ["POST /v1/tasks/t1/claim", "GET /v1/tasks/t1"]


async def test_a_409_claim_on_a_task_still_open_is_acknowledged_as_before(store: Store) -> None:
    """A factory that will not re-claim a task someone else claimed: the reminders still
    stop for the person who acknowledged."""
    claimed_by_carol = {**OPEN, "claimedBy": "carol", "claimedAt": NOW.isoformat()}
    bridge, _ = await bridge_with(store, [CONFLICT, ok(claimed_by_carol)])
    outcome = await bridge.acknowledge("t1", ALICE, idempotency_seed="click-3")
    assert outcome.kind == "done"
    stored = await store.get_task("t1")
    assert stored is not None and stored.acknowledged_at is not None


async def test_a_task_the_factory_no_longer_has_is_closed_after_the_read_back(
    store: Store,
) -> None:
    """Every attempt timed out and the read back answers 404: nothing was recorded, and the
    task is closed here too — a second click is told so instead of sending again."""
    not_found = httpx.Response(
        404, json={"ok": False, "error": {"code": "NOT_FOUND", "message": "task t1 not found"}}
    )
    bridge, calls = await bridge_with(store, [timeout, timeout, timeout, timeout, not_found])
    outcome = await approve(bridge)
    assert outcome.kind == "failed" and "no longer knows this task" in outcome.message
    stored = await store.get_task("t1")
    assert stored is not None and stored.decision == "gone" and stored.inflight_key is None
    again = await bridge.decide("t1", "approved", ALICE, idempotency_seed="click-9")
    assert again.kind == "conflict" and "no longer at the factory" in again.message
    assert calls.count("POST /v1/tasks/t1/complete") == 4  # the second click sent nothing
    entries = await store.audit_entries(task_id="t1")
    assert [e.outcome for e in entries if e.action == "task.gone"] == ["ok"]


async def test_a_200_naming_another_decision_when_the_factory_recorded_ours_is_confirmed(
    store: Store,
) -> None:
    """The factory recorded Alice's approval, but its answer names Bob's rejection: the read
    back shows the record, and Alice is told her approval was recorded (she was told it was
    lost, and the message showed Bob's rejection, which the factory did not have)."""
    bridge, calls = await bridge_with(store, [ok(BOBS), ok(OURS)])
    outcome = await approve(bridge)
    assert calls == ["POST /v1/tasks/t1/complete", "GET /v1/tasks/t1"]
    assert outcome.kind == "done"
    stored = await store.get_task("t1")
    assert stored is not None and stored.decision == "approved" and stored.inflight_key is None


async def test_a_read_back_answered_with_another_tasks_record_confirms_nothing(
    store: Store,
) -> None:
    """Every POST was answered with an HTML page; the read back of t1 is answered with task
    t2's record, decided: it says nothing of t1, which stays in flight to be sent again (it
    was confirmed by t2's record: the person read "approved", the factory never had it)."""
    html = httpx.Response(200, text="<html>maintenance</html>")
    t2 = {**OURS, "id": "t2", "title": "Another"}
    bridge, calls = await bridge_with(store, [html] * 4 + [ok(t2)] * 4)
    outcome = await approve(bridge)
    await bridge.resender.stop()
    assert outcome.kind == "unconfirmed"
    assert calls.count("GET /v1/tasks/t1") == 4  # t2's record was refused, and asked again
    stored = await store.get_task("t1")
    assert stored is not None and stored.decision is None and stored.inflight_key is not None


# ---------------------------------------------------------------- same verdict, someone else's
#: Bob approved first; a factory that replays the task's record for a complete of the same
#: verdict answers Alice's click with it (contract §1.4 ``Task.decidedBy``/``decisionData``).
BOBS_APPROVAL = decided("approved", "bob", "99")


async def test_a_200_with_our_verdict_but_decided_by_someone_else_is_not_ours(
    store: Store,
) -> None:
    bridge, calls = await bridge_with(store, [ok(BOBS_APPROVAL), ok(BOBS_APPROVAL)])
    outcome = await approve(bridge)
    assert outcome.kind == "conflict"  # Alice is not credited with Bob's approval
    assert "Already approved by <@99>" in outcome.message
    stored = await store.get_task("t1")
    assert stored is not None and stored.decision == "approved" and stored.decided_by == "bob"
    assert stored.inflight_key is None
    entries = await store.audit_entries(task_id="t1")
    assert [(e.actor_name, e.outcome) for e in entries if e.action == "task.approved"] == [
        ("bob", "ok"),  # the factory's decision, audited as Bob's
        ("alice", "conflict"),
    ]
    assert calls == ["POST /v1/tasks/t1/complete", "GET /v1/tasks/t1"]  # read back first


async def test_a_re_send_answered_with_someone_elses_record_of_our_verdict_is_not_ours(
    store: Store,
) -> None:
    """The first send's outcome stayed unknown (timeouts, read back unreadable); the
    background re-send is answered 200 with Bob's approval: Bob's, not Alice's."""
    answers: list[Answer] = [timeout] * 4 + [httpx.Response(503)] * 4
    bridge, calls = await bridge_with(store, answers)
    first = await approve(bridge)
    assert first.kind == "unconfirmed"
    await bridge.resender.stop()
    in_flight = await store.get_task("t1")
    assert in_flight is not None and in_flight.inflight_key is not None
    answers.extend([ok(BOBS_APPROVAL), ok(BOBS_APPROVAL)])
    outcome = await bridge.resume_decision(in_flight, notify=False)
    assert calls[-2:] == ["POST /v1/tasks/t1/complete", "GET /v1/tasks/t1"]
    assert outcome.kind == "conflict"
    stored = await store.get_task("t1")
    assert stored is not None and stored.decided_by == "bob" and stored.inflight_key is None


async def test_a_200_naming_nobody_answers_our_own_request(store: Store) -> None:
    """A record with no ``decidedBy`` and no ``decisionData`` of another person is the answer
    to our request: confirmed as ours."""
    bridge, _ = await bridge_with(store, [ok({**OURS, "decidedBy": None, "decisionData": {}})])
    outcome = await approve(bridge)
    assert outcome.kind == "done"


# ---------------------------------------------------------------- the ladder's safe default
async def safe_default(bridge: Bridge) -> tuple[str, dict[str, Any]]:
    tracked = await bridge.store.get_task("t1")
    assert tracked is not None
    return await BridgeDecider(bridge).safe_default(tracked, "deferred", "safe default")


async def test_the_safe_default_never_takes_credit_for_a_humans_decision(store: Store) -> None:
    bobs = decided("deferred", "bob", "99")
    bridge, _ = await bridge_with(store, [ok(bobs), ok(bobs)])  # the answer, then its read-back
    status, _ = await safe_default(bridge)
    assert status == "skipped"
    stored = await store.get_task("t1")
    assert stored is not None and stored.decision == "deferred" and stored.decided_by == "bob"
    entries = await store.audit_entries(task_id="t1")
    assert [(e.actor_name, e.outcome) for e in entries if e.action == "task.deferred"] == [
        ("bob", "ok"),
        ("escalation", "conflict"),  # the ladder did not decide it
    ]


async def test_the_safe_default_confirmed_as_the_ladders_is_sent(store: Store) -> None:
    """As the factory emulator records it: ``decidedBy`` = ``decisionData.discordUsername``."""
    ours = {**decided("deferred", "escalation", "x"), "decisionData": {}}
    bridge, _ = await bridge_with(store, [ok(ours)])
    assert (await safe_default(bridge))[0] == "sent"
    stored = await store.get_task("t1")
    assert stored is not None and stored.decided_by == "escalation"


async def test_a_safe_default_still_in_flight_is_unknown_not_failed(store: Store) -> None:
    """Every complete timed out and the read back failed: the decision may well be recorded
    and is re-sent in the background, so the incident report must not say "failed"."""
    bridge, _ = await bridge_with(store, [timeout] * 4 + [httpx.Response(503)] * 4)
    status, detail = await safe_default(bridge)
    await bridge.resender.stop()
    assert status == "unknown", detail
    stored = await store.get_task("t1")
    assert stored is not None and stored.inflight_decision == "deferred"


async def test_the_safe_default_recorded_under_the_api_keys_user_is_the_ladders(
    store: Store,
) -> None:
    """A factory may record ``decidedBy`` as the user of the API key, a UUID the bridge does
    not know (contract §1.4): that names nobody else, so the answer is the ladder's own."""
    api_user = "5b0c8a0e-0000-4000-8000-00000000b1d9"
    ours = {
        **decided("deferred", api_user, "x"),
        "decisionData": {"source": "system", "discordUsername": "escalation"},
    }
    bridge, _ = await bridge_with(store, [ok(ours)])
    assert (await safe_default(bridge))[0] == "sent"
    entries = await store.audit_entries(task_id="t1")
    assert [e.outcome for e in entries if e.action == "task.deferred"] == ["ok"]


@pytest.mark.parametrize("status", [404, 410])
async def test_a_decision_on_a_task_the_factory_no_longer_has_closes_it_at_once(
    store: Store, status: int
) -> None:
    """``POST /complete`` answered 404/410: nothing was recorded, and the task is closed here
    too (no live buttons, no ladder), not left open until reconciliation notices."""
    gone = httpx.Response(
        status, json={"ok": False, "error": {"code": "NOT_FOUND", "message": "no such task"}}
    )
    bridge, calls = await bridge_with(store, [gone, gone])
    outcome = await approve(bridge)
    assert outcome.kind == "failed"
    stored = await store.get_task("t1")
    assert stored is not None and stored.decision == GONE and stored.inflight_key is None
    assert calls == ["POST /v1/tasks/t1/complete", "GET /v1/tasks/t1"]  # read back: gone


async def test_a_404_for_a_task_the_factory_still_has_closes_nothing(store: Store) -> None:
    """A 404 on ``POST /complete`` while ``GET`` still finds the task (a proxy's 404 for the
    route, say): nothing recorded, and the buttons stay live (the task is not closed)."""
    gone = httpx.Response(
        404, json={"ok": False, "error": {"code": "NOT_FOUND", "message": "no such route"}}
    )
    bridge, calls = await bridge_with(store, [gone, ok(OPEN)])
    outcome = await approve(bridge)
    assert outcome.kind == "failed"
    stored = await store.get_task("t1")
    assert stored is not None and stored.decision is None and stored.inflight_key is None
    assert calls == ["POST /v1/tasks/t1/complete", "GET /v1/tasks/t1"]


async def test_the_safe_default_on_a_task_the_factory_no_longer_has_is_skipped(
    store: Store,
) -> None:
    """The ladder's safe default answered 404: the task is gone, so the delivery is
    ``skipped`` (nothing to decide), not ``failed`` (which the incident report lists as a
    failure to act)."""
    from bot.ladder.adapters import BridgeDecider

    gone = httpx.Response(
        404, json={"ok": False, "error": {"code": "NOT_FOUND", "message": "no such task"}}
    )
    bridge, _ = await bridge_with(store, [gone, gone])
    tracked = await store.get_task("t1")
    assert tracked is not None
    status, detail = await BridgeDecider(bridge).safe_default(tracked, "deferred", "SLA breached")
    assert status == "skipped" and "gone" in detail["note"]


# ---------------------------------------------------------------- a pick whose option was lost
PICK = {
    **OPEN,
    "type": "decision",
    "context": {
        "modalType": "choice",
        "modalConfig": {"options": [{"value": "oauth", "label": "OAuth 2.0"}]},
    },
}


async def test_a_pick_whose_option_was_lost_is_not_cleared_while_its_request_may_land(
    store: Store,
) -> None:
    """A failover (or a restart) in the middle of a pick: the new process no longer knows the
    option and reads the task back, open — but the first request may still be on its way
    (the factory recorded it a moment later). It stays in flight and is read again; only once
    the request can no longer land is the pick cleared and the person told to pick again
    (they were told "nothing was recorded" while the factory recorded it)."""
    bridge, calls = await bridge_with(store, [ok(PICK), ok(PICK), ok(PICK)])
    await store.upsert_task(Task.model_validate(PICK), NOW + timedelta(hours=4))
    marked = await store.begin_decision(
        "t1", "approved", discord_user_id=7, name="alice", key="k-1", notes=None
    )
    assert marked is not None and marked.inflight_at is not None
    bridge.actions.clock = lambda: marked.inflight_at + timedelta(seconds=5)  # type: ignore[operator]
    outcome = await bridge.resume_decision(marked, notify=False)
    assert outcome.kind == "failed"
    kept = await store.get_task("t1")
    assert kept is not None and kept.inflight_key == "k-1"  # still in flight, read again later
    assert calls == ["GET /v1/tasks/t1"]  # never re-sent without its option
    bridge.actions.clock = lambda: marked.inflight_at + timedelta(minutes=10)  # type: ignore[operator]
    late = await bridge.resume_decision(kept, notify=False)
    assert "pick" in late.message.lower()
    cleared = await store.get_task("t1")
    assert cleared is not None and cleared.inflight_key is None


async def test_the_phones_acknowledgement_does_not_wait_long_behind_another(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another acknowledgement of the task is under way (reading the factory back, up to a
    minute and more): the phone's is answered in time for Twilio, and sends nothing."""
    monkeypatch.setattr(actions, "ACK_WAIT_SECONDS", 0.01)
    bridge, calls = await bridge_with(store, [])
    async with bridge.actions.acknowledging("t1"):
        outcome = await bridge.actions.acknowledge(
            "t1", ALICE, idempotency_seed="sms-1", first=True
        )
    assert outcome.kind == "conflict" and "right now" in outcome.message
    assert calls == []
