"""``POST /v1/approvals/{id}/escalate`` (contract §1.5) through the client and the ladder's
``BridgeDecider``: the body, the Idempotency-Key per task and level, and what 404/409/5xx
become."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import httpx

from bot.bridge import Bridge
from bot.factory.client import FactoryClient, RetryPolicy
from bot.ladder.adapters import BridgeDecider
from escalation.ports import LadderTask

APPROVAL = {"id": "ap/1", "taskId": "t-1", "status": "pending", "escalationLevel": 2}


@dataclass(frozen=True)
class Tracked:
    task_id: str
    approval_id: str | None


def decider_with(answers: list[httpx.Response], seen: list[httpx.Request]) -> BridgeDecider:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    async def no_sleep(seconds: float) -> None:
        return None

    client = FactoryClient(
        "http://factory.test/v1",
        "key",
        transport=httpx.MockTransport(handler),
        sleep=no_sleep,
        retry=RetryPolicy(jitter_seconds=0.0),
    )
    return BridgeDecider(cast(Bridge, SimpleNamespace(factory=client)))


def ok(data: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"ok": True, "data": data, "meta": {}})


def error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"ok": False, "error": {"code": code, "message": "no"}})


async def escalate(
    decider: BridgeDecider, level: int, to: str | None = None, task_id: str = "t-1"
) -> tuple[str, dict[str, Any]]:
    task = cast(LadderTask, Tracked(task_id, "ap/1"))
    return await decider.escalate(task, level, f"level {level}", to)


async def test_each_level_is_one_post_with_its_own_stable_key() -> None:
    seen: list[httpx.Request] = []
    decider = decider_with([ok(APPROVAL), ok(APPROVAL), ok(APPROVAL)], seen)
    assert await escalate(decider, 2) == (
        "sent",
        {"approval_id": "ap/1", "factory_level": 2},
    )
    status, detail = await escalate(decider, 4, "user-dave")
    assert status == "sent" and detail["escalate_to"] == "user-dave"
    await escalate(decider, 2)  # the same level again (a restart): the same key
    assert [r.url.raw_path for r in seen] == [b"/v1/approvals/ap%2F1/escalate"] * 3
    assert [json.loads(r.content) for r in seen[:2]] == [
        {"reason": "level 2"},
        {"reason": "level 4", "escalateTo": "user-dave"},
    ]
    keys = [r.headers["Idempotency-Key"] for r in seen]
    assert keys[0] == keys[2] != keys[1]
    assert keys[0] == FactoryClient.new_idempotency_key("escalation:t-1:escalate:2")


async def test_a_decided_approval_is_skipped_other_failures_fail() -> None:
    seen: list[httpx.Request] = []
    answers = [error(409, "CONFLICT"), error(404, "NOT_FOUND"), error(403, "FORBIDDEN")]
    answers += [error(503, "SERVICE_UNAVAILABLE")] * 4
    decider = decider_with(answers, seen)
    status, detail = await escalate(decider, 1)
    assert status == "skipped" and "409" in detail["note"]
    assert (await escalate(decider, 1))[0] == "skipped"
    status, detail = await escalate(decider, 1)
    assert status == "failed" and "403" in detail["error"]
    status, detail = await escalate(decider, 1)  # retried per §7.1 by the client, then failed
    assert status == "failed" and len(seen) == 3 + 4


async def test_a_task_without_an_approval_is_not_sent() -> None:
    seen: list[httpx.Request] = []
    decider = decider_with([], seen)
    task = cast(LadderTask, Tracked("t-2", None))
    assert (await decider.escalate(task, 1, "r", None))[0] == "skipped"
    assert seen == []
