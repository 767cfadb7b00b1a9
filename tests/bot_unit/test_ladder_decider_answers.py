"""The ladder's own factory calls (``BridgeDecider``, bot/ladder/adapters.py) judge the
factory's answers instead of trusting any 2xx: ``POST /v1/tasks/{id}/reassign`` answers the
updated Task and ``POST /v1/approvals/{id}/escalate`` the Approval (contract §1.5); a 409,
404/410 or a timeout after the factory may have acted is not a plain "failed" (§7.1).

The factory is scripted with httpx's ``MockTransport``; the bridge is a stand-in that records
what the decider stores (``apply_factory_task``) and closes (``task_gone``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from bot.bridge import Bridge
from bot.factory.client import FactoryClient, RetryPolicy
from bot.ladder.adapters import BridgeDecider
from escalation.models import Task
from escalation.ports import LadderTask
from escalation.recipients import Person

DAVE = Person("Dave", discord_user_id=12, phone=None, factory_user_id="u-dave", admin=True)
TASK = {
    "id": "t-1",
    "title": "Release",
    "createdAt": "2026-01-01T00:00:00Z",
    "status": "pending",
    "priority": "high",
    "type": "approval",
    "assigneeId": "u-alice",
}
REASSIGNED = {**TASK, "assigneeId": "u-dave"}
DECIDED = {
    **TASK,
    "status": "completed",
    "decision": "approved",
    "decidedBy": "bob",
    "decidedAt": "2026-01-01T01:00:00Z",
}
APPROVAL = {"id": "ap-1", "taskId": "t-1", "status": "pending", "escalationLevel": 2}

Answer = httpx.Response | type[Exception]


@dataclass(frozen=True)
class Tracked:
    task_id: str
    approval_id: str | None


@dataclass
class Rig:
    decider: BridgeDecider
    calls: list[str]
    applied: list[Task]
    gone: list[str]


def ok(data: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"ok": True, "data": data})


def error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"ok": False, "error": {"code": code, "message": "no"}})


def rig(answers: list[Answer]) -> Rig:
    """A decider whose factory answers ``answers`` in turn (a ``ReadTimeout`` class: the
    request times out after the factory got it); then 503s."""
    calls: list[str] = []
    applied: list[Task] = []
    gone: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        answer = answers.pop(0) if answers else error(503, "SERVICE_UNAVAILABLE")
        if isinstance(answer, httpx.Response):
            return answer
        raise answer("timed out", request=request)

    async def no_sleep(seconds: float) -> None:
        return None

    async def apply_factory_task(task: Task) -> None:
        applied.append(task)

    async def task_gone(task_id: str, reason: str) -> None:
        gone.append(task_id)

    client = FactoryClient(
        "http://factory.test/v1",
        "key",
        transport=httpx.MockTransport(handler),
        sleep=no_sleep,
        retry=RetryPolicy(jitter_seconds=0.0, base_delay_seconds=0.0),
    )
    bridge = SimpleNamespace(
        factory=client, apply_factory_task=apply_factory_task, task_gone=task_gone
    )
    return Rig(BridgeDecider(cast(Bridge, bridge)), calls, applied, gone)


async def reassign(r: Rig) -> tuple[str, dict[str, Any]]:
    return await r.decider.reassign(cast(LadderTask, Tracked("t-1", None)), DAVE, "SLA breached")


POST = "POST /v1/tasks/t-1/reassign"
GET = "GET /v1/tasks/t-1"
TIMEOUTS: list[Answer] = [httpx.ReadTimeout] * 4  # the first try and the client's 3 retries


async def test_a_200_assigning_the_task_to_the_admin_is_sent_and_stored() -> None:
    r = rig([ok(REASSIGNED)])
    assert await reassign(r) == ("sent", {"assignee": "u-dave"})
    assert [t.assignee_id for t in r.applied] == ["u-dave"]  # the new assignee, known at once
    assert r.calls == [POST]


@pytest.mark.parametrize(
    ("record", "says"),
    [({**REASSIGNED, "id": "t-999"}, "another task"), (TASK, "assigned to 'u-alice'")],
    ids=["another task's record", "still assigned to the old person"],
)
async def test_a_200_that_does_not_show_the_reassign_is_unknown(
    record: dict[str, Any], says: str
) -> None:
    r = rig([ok(record)])
    status, detail = await reassign(r)
    assert status == "unknown" and says in detail["note"]
    assert r.applied == []


async def test_a_200_showing_the_task_decided_is_skipped_and_the_record_stored() -> None:
    r = rig([ok(DECIDED)])
    status, detail = await reassign(r)
    assert status == "skipped" and "already approved by bob" in detail["note"]
    assert [t.decision for t in r.applied if t.decision] and r.applied[0].decided_by == "bob"


@pytest.mark.parametrize("status", [404, 410])
async def test_a_task_the_factory_no_longer_has_is_skipped_and_closed(status: int) -> None:
    r = rig([error(status, "NOT_FOUND" if status == 404 else "GONE")])
    got, detail = await reassign(r)
    assert got == "skipped" and str(status) in detail["note"]
    assert r.gone == ["t-1"]


async def test_a_409_is_skipped_with_the_factorys_record_read_back_and_stored() -> None:
    r = rig([error(409, "CONFLICT"), ok(DECIDED)])
    status, detail = await reassign(r)
    assert status == "skipped" and "bob" in detail["note"]
    assert [t.decided_by for t in r.applied] == ["bob"]
    assert r.calls == [POST, GET]


async def test_a_409_whose_record_cannot_be_read_is_still_skipped() -> None:
    r = rig([error(409, "CONFLICT"), *[error(503, "SERVICE_UNAVAILABLE")] * 4])
    status, detail = await reassign(r)
    assert status == "skipped" and "409" in detail["note"]
    assert r.applied == []


@pytest.mark.parametrize(
    ("read_back", "expected"),
    [
        ([ok(REASSIGNED)], "sent"),
        ([ok(TASK)], "unknown"),
        ([error(503, "SERVICE_UNAVAILABLE")] * 4, "unknown"),
    ],
    ids=["read back: the admin's", "read back: still alice's", "read back: unreadable"],
)
async def test_a_timeout_after_the_factory_may_have_acted_is_read_back(
    read_back: list[Answer], expected: str
) -> None:
    r = rig([*TIMEOUTS, *read_back])
    status, detail = await reassign(r)
    assert status == expected, detail
    assert "unconfirmed" in detail["note"]
    assert r.calls == [POST] * 4 + [GET] * len(read_back)


async def test_a_refusal_or_an_unreachable_factory_is_still_failed() -> None:
    r = rig([error(403, "FORBIDDEN")])
    assert (await reassign(r))[0] == "failed"
    r = rig([error(503, "SERVICE_UNAVAILABLE")] * 4)  # refused every time: nothing was done
    status, detail = await reassign(r)
    assert status == "failed" and "503" in detail["error"]
    assert GET not in r.calls


async def escalate(r: Rig) -> tuple[str, dict[str, Any]]:
    return await r.decider.escalate(cast(LadderTask, Tracked("t-1", "ap-1")), 2, "level 2", None)


async def test_escalate_410_is_skipped_like_404() -> None:
    status, detail = await escalate(rig([error(410, "GONE")]))
    assert status == "skipped" and "410" in detail["note"]


async def test_escalate_answered_with_another_approval_is_unknown() -> None:
    r = rig([ok({**APPROVAL, "id": "ap-999"})])
    status, detail = await escalate(r)
    assert status == "unknown" and "ap-999" in detail["note"]
    assert "factory_level" not in detail


@pytest.mark.parametrize("state", ["approved", "rejected"])
async def test_escalate_answered_with_an_approval_decided_is_skipped(state: str) -> None:
    status, detail = await escalate(rig([ok({**APPROVAL, "status": state})]))
    assert status == "skipped" and state in detail["note"]


async def test_escalate_of_an_expired_approval_the_factory_accepted_is_sent() -> None:
    """``expired`` is an approval whose SLA passed, the very case the ladder escalates: a
    200 is an escalation done (recorded ``skipped``, it blocked every later level)."""
    status, detail = await escalate(rig([ok({**APPROVAL, "status": "expired"})]))
    assert status == "sent" and detail["factory_level"] == 2


async def test_escalate_of_a_pending_approval_is_sent() -> None:
    r = rig([ok(APPROVAL)])
    assert await escalate(r) == ("sent", {"approval_id": "ap-1", "factory_level": 2})
    assert r.calls == ["POST /v1/approvals/ap-1/escalate"]
