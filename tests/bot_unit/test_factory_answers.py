"""Factory answers the bridge cannot understand are failed attempts (contract §7.1 retries),
then a clear error; a timeout makes the outcome uncertain; odd list items are skipped."""

from __future__ import annotations

import logging

import httpx
import pytest

from bot.factory.client import (
    FactoryBadResponse,
    FactoryClient,
    FactoryError,
    FactoryUnavailable,
    RetryPolicy,
)
from escalation.models import Priority, Task, TaskStatus, TaskType

TASK = {"id": "t-1", "title": "x", "createdAt": "2026-11-21T10:00:00Z", "status": "completed"}
HTML = httpx.Response(
    200, content=b"<html><h1>502 Bad Gateway</h1></html>", headers={"Content-Type": "text/html"}
)

Answer = httpx.Response | Exception


def client_with(answers: list[Answer], seen: list[httpx.Request]) -> FactoryClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def no_sleep(seconds: float) -> None:
        return None

    return FactoryClient(
        "http://factory.test/v1",
        "key",
        transport=httpx.MockTransport(handler),
        sleep=no_sleep,
        retry=RetryPolicy(jitter_seconds=0.0),
    )


async def complete(client: FactoryClient) -> Task:
    return await client.complete_task(
        "t-1", decision="approved", notes=None, decision_data={}, idempotency_key="k-1"
    )


GARBAGE = {
    "html": HTML,
    "invalid json": httpx.Response(200, content=b'{"ok": tru'),
    "empty body": httpx.Response(200, content=b""),
    "no content (204) where a task is due": httpx.Response(204),
    "json list": httpx.Response(200, json=[1, 2]),
    "ok false": httpx.Response(200, json={"ok": False, "data": TASK}),
    "data missing": httpx.Response(200, json={"ok": True}),
    "data of the wrong shape": httpx.Response(200, json={"ok": True, "data": 5}),
    "task without id": httpx.Response(
        200, json={"ok": True, "data": {"title": "x", "createdAt": "2026-11-21T10:00:00Z"}}
    ),
}


@pytest.mark.parametrize("kind", list(GARBAGE))
async def test_unreadable_answer_is_retried_then_succeeds(kind: str) -> None:
    seen: list[httpx.Request] = []
    answers: list[Answer] = [GARBAGE[kind], httpx.Response(200, json={"ok": True, "data": TASK})]
    task = await complete(client_with(answers, seen))
    assert task.id == "t-1"
    assert len(seen) == 2
    assert {r.headers["Idempotency-Key"] for r in seen} == {"k-1"}


@pytest.mark.parametrize("kind", list(GARBAGE))
async def test_unreadable_answers_every_time_raise_bad_response(kind: str) -> None:
    seen: list[httpx.Request] = []
    answers: list[Answer] = [GARBAGE[kind]] * 4
    with pytest.raises(FactoryBadResponse, match="unreadable answer") as caught:
        await complete(client_with(answers, seen))
    assert len(seen) == 4  # the first attempt and 3 retries (contract §7.1)
    assert isinstance(caught.value, FactoryUnavailable)
    assert caught.value.uncertain  # a success status: it may have been recorded


async def test_claim_and_read_back_parse_inside_the_retry_loop() -> None:
    seen: list[httpx.Request] = []
    good = httpx.Response(200, json={"ok": True, "data": {**TASK, "status": "claimed"}})
    client = client_with([HTML, good, HTML, good], seen)
    claimed = await client.claim_task("t-1", user_id=None, idempotency_key="k-2")
    read = await client.get_task("t-1")
    assert claimed.status is TaskStatus.CLAIMED and read.id == "t-1"
    assert len(seen) == 4


async def test_timeouts_make_the_outcome_uncertain() -> None:
    seen: list[httpx.Request] = []
    answers: list[Answer] = [httpx.ReadTimeout("slow")] * 4
    with pytest.raises(FactoryUnavailable) as caught:
        await complete(client_with(answers, seen))
    assert caught.value.uncertain
    assert not isinstance(caught.value, FactoryBadResponse)


async def test_refusals_and_unsent_requests_are_certain() -> None:
    seen: list[httpx.Request] = []
    answers: list[Answer] = [
        httpx.Response(503),
        httpx.ConnectError("refused"),
        httpx.Response(500),
        httpx.Response(429),
    ]
    with pytest.raises(FactoryUnavailable) as caught:
        await complete(client_with(answers, seen))
    assert not caught.value.uncertain  # nothing can have been recorded


async def test_a_timeout_then_refusals_stays_uncertain() -> None:
    seen: list[httpx.Request] = []
    answers: list[Answer] = [httpx.ReadTimeout("slow"), *[httpx.Response(503)] * 3]
    with pytest.raises(FactoryUnavailable) as caught:
        await complete(client_with(answers, seen))
    assert caught.value.uncertain


async def test_error_answer_that_is_not_an_envelope_is_still_a_factory_error() -> None:
    seen: list[httpx.Request] = []
    answers: list[Answer] = [httpx.Response(404, json=["not", "an", "envelope"])]
    with pytest.raises(FactoryError) as caught:
        await complete(client_with(answers, seen))
    assert caught.value.status == 404 and caught.value.code == "HTTP_404"


async def test_bulk_answer_of_the_wrong_shape_is_retried() -> None:
    seen: list[httpx.Request] = []
    answers: list[Answer] = [
        httpx.Response(200, json={"ok": True, "data": {"succeeded": "t-1"}}),
        httpx.Response(200, json={"ok": True, "data": {"succeeded": ["t-1"], "failed": []}}),
    ]
    result = await client_with(answers, seen).bulk(
        action="approve", task_ids=["t-1"], notes=None, idempotency_key="k"
    )
    assert result.succeeded == ["t-1"] and len(seen) == 2


def page(items: list[object], *, has_next: object = False) -> httpx.Response:
    return httpx.Response(
        200,
        json={"ok": True, "data": items, "meta": {"pagination": {"hasNext": has_next}}},
    )


def item(task_id: str) -> dict[str, str]:
    return {"id": task_id, "title": task_id, "createdAt": "2026-11-21T10:00:00Z"}


async def test_one_odd_item_is_left_out_and_the_others_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = {"id": "good", "title": "g", "createdAt": "2026-11-21T10:00:00Z"}
    bad_date = {"id": "bad-date", "title": "b", "createdAt": "yesterday-ish"}
    no_id = {"title": "n", "createdAt": "2026-11-21T10:00:00Z"}
    later = {"id": "later", "title": "l", "createdAt": "2026-11-21T11:00:00Z"}
    seen: list[httpx.Request] = []
    client = client_with([page([good, bad_date, no_id, 7], has_next=True), page([later])], seen)
    with caplog.at_level(logging.WARNING, logger="bot.factory.answers"):
        tasks = await client.iter_tasks(status="pending")
    assert [t.id for t in tasks] == ["good", "later"]
    assert client.skipped_items == 3
    assert "bad-date" in caplog.text


async def test_unknown_enum_values_map_to_safe_defaults(caplog: pytest.LogCaptureFixture) -> None:
    odd = {
        "id": "odd",
        "title": "o",
        "createdAt": "2026-11-21T10:00:00Z",
        "priority": "urgent",
        "type": "vibe_check",
        "status": "snoozed",
    }
    seen: list[httpx.Request] = []
    with caplog.at_level(logging.WARNING, logger="escalation.models"):
        [task] = await client_with([page([odd])], seen).iter_tasks(status="pending")
    assert task.priority is Priority.HIGH  # an unknown priority counts as high
    assert task.type is TaskType.DECISION
    assert task.status is TaskStatus.PENDING and task.is_open
    assert "urgent" in caplog.text


async def test_a_list_answer_that_is_not_a_list_is_retried() -> None:
    seen: list[httpx.Request] = []
    client = client_with(
        [httpx.Response(200, json={"ok": True, "data": {"items": []}}), page([])], seen
    )
    assert await client.iter_tasks() == []
    assert len(seen) == 2


async def test_a_factory_that_ignores_the_page_number_is_not_followed_for_ever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It answers page 1 with "hasNext" to every page: the second, bringing nothing new,
    ends the listing (each task once), instead of the reconciliation never returning."""
    seen: list[httpx.Request] = []
    answers: list[Answer] = [page([item("a"), item("b")], has_next=True) for _ in range(50)]
    client = client_with(answers, seen)
    with caplog.at_level(logging.WARNING, logger="bot.factory.answers"):
        tasks = await client.iter_tasks(status="pending")
    assert [t.id for t in tasks] == ["a", "b"]
    assert len(seen) == 2
    assert "brought nothing new" in caplog.text


@pytest.mark.parametrize("has_next", ["false", "true", 1, None])
async def test_has_next_is_followed_only_when_it_is_a_json_true(has_next: object) -> None:
    seen: list[httpx.Request] = []
    client = client_with([page([item("a")], has_next=has_next), page([item("b")])], seen)
    assert [t.id for t in await client.iter_tasks()] == ["a"]
    assert len(seen) == 1


async def test_an_empty_page_that_says_more_follow_ends_the_listing() -> None:
    seen: list[httpx.Request] = []
    answers: list[Answer] = [page([item("a")], has_next=True)] + [
        page([], has_next=True) for _ in range(5)
    ]
    client = client_with(answers, seen)
    assert [t.id for t in await client.iter_tasks()] == ["a"]
    assert len(seen) == 2


async def test_a_task_listed_again_on_a_later_page_is_kept_once() -> None:
    """The listing shifted while it was read (a task moved a page down)."""
    seen: list[httpx.Request] = []
    client = client_with(
        [page([item("a"), item("b")], has_next=True), page([item("b"), item("c")])], seen
    )
    assert [t.id for t in await client.iter_tasks()] == ["a", "b", "c"]


async def test_the_pipeline_listing_is_bounded_the_same_way() -> None:
    pipeline = {"id": "p-1", "name": "mcp-one", "slug": "mcp-one", "status": "active"}
    seen: list[httpx.Request] = []
    answers: list[Answer] = [page([pipeline], has_next=True) for _ in range(20)]
    pipelines = await client_with(answers, seen).list_pipelines()
    assert [p.id for p in pipelines] == ["p-1"]
    assert len(seen) == 2


# ------------------------------------------------------------ one odd optional field (contract §1.4)
async def test_a_confirmed_decision_with_an_odd_optional_field_is_read_at_once() -> None:
    """The factory's 200 to the decision is its confirmation, whatever its ``slaDeadline``."""
    answer = {
        **TASK,
        "decision": "approved",
        "decidedBy": "alice",
        "slaDeadline": "in 2 hours",
        "updatedAt": "just now",
        "decisionData": "alice",
    }
    seen: list[httpx.Request] = []
    task = await complete(
        client_with([httpx.Response(200, json={"ok": True, "data": answer})], seen)
    )
    assert len(seen) == 1  # read, not retried as an unreadable answer
    assert task.decision == "approved" and task.decided_by == "alice"
    assert task.sla_deadline is None and task.decision_data == {}


async def test_a_listed_task_with_an_odd_optional_field_is_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    odd = {**item("odd"), "slaDeadline": "in 2 hours", "claimedAt": "a while ago"}
    seen: list[httpx.Request] = []
    client = client_with([page([item("a"), odd, item("b")])], seen)
    with caplog.at_level(logging.WARNING):
        tasks = await client.iter_tasks(status="pending")
    assert [t.id for t in tasks] == ["a", "odd", "b"]
    assert tasks[1].sla_deadline is None and tasks[1].claimed_at is None
    assert client.skipped_items == 0
    assert "odd" in caplog.text and "slaDeadline" in caplog.text and "claimedAt" in caplog.text


async def test_a_task_dated_outside_the_utc_range_is_left_out_not_fatal() -> None:
    """``createdAt`` 0001-01-01T00:00:00+01:00 is before year 1 in UTC: that task is left
    out, the listing goes on."""
    out_of_range = {**item("early"), "createdAt": "0001-01-01T00:00:00+01:00"}
    seen: list[httpx.Request] = []
    client = client_with([page([item("a"), out_of_range, item("b")])], seen)
    assert [t.id for t in await client.iter_tasks()] == ["a", "b"]
    assert client.skipped_items == 1


async def test_one_odd_pipeline_is_left_out_and_the_others_listed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = {"id": "p-1", "name": "mcp-one", "slug": "mcp-one", "status": "active"}
    odd = {"id": "p-2", "name": "mcp-two", "createdAt": "last tuesday"}
    seen: list[httpx.Request] = []
    with caplog.at_level(logging.WARNING, logger="bot.factory.answers"):
        pipelines = await client_with([page([odd, good])], seen).list_pipelines()
    assert [p.id for p in pipelines] == ["p-1"]
    assert "p-2" in caplog.text
