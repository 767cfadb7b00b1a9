"""The factory client's retry policy (contract §7.1) against scripted HTTP answers."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from bot.factory.client import FactoryClient, FactoryError, FactoryUnavailable, RetryPolicy
from bot.factory.retries import retry_after_seconds

TASK = {"id": "t-1", "title": "x", "createdAt": "2026-11-21T10:00:00Z", "status": "completed"}


def client_with(
    answers: list[httpx.Response], seen: list[httpx.Request], delays: list[float]
) -> FactoryClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)

    return FactoryClient(
        "http://factory.test/v1",
        "key",
        transport=httpx.MockTransport(handler),
        sleep=fake_sleep,
        retry=RetryPolicy(jitter_seconds=0.0),
    )


async def complete(client: FactoryClient) -> object:
    return await client.complete_task(
        "t-1", decision="approved", notes=None, decision_data={}, idempotency_key="k-1"
    )


async def test_retries_5xx_with_exponential_backoff_and_same_key() -> None:
    seen: list[httpx.Request] = []
    delays: list[float] = []
    answers = [
        httpx.Response(503),
        httpx.Response(502),
        httpx.Response(200, json={"ok": True, "data": TASK}),
    ]
    client = client_with(answers, seen, delays)
    task = await complete(client)
    assert task.id == "t-1"
    assert delays == [1.0, 2.0]
    assert {r.headers["Idempotency-Key"] for r in seen} == {"k-1"}
    assert all(r.headers["X-API-Key"] == "key" for r in seen)


async def test_retry_after_is_honoured_on_429() -> None:
    seen: list[httpx.Request] = []
    delays: list[float] = []
    answers = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, json={"ok": True, "data": TASK}),
    ]
    await complete(client_with(answers, seen, delays))
    assert delays == [7.0]


async def test_gives_up_after_three_retries() -> None:
    seen: list[httpx.Request] = []
    delays: list[float] = []
    answers = [httpx.Response(500) for _ in range(4)]
    with pytest.raises(FactoryUnavailable, match="after 3 retries"):
        await complete(client_with(answers, seen, delays))
    assert len(seen) == 4


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410])
async def test_client_errors_are_not_retried(status: int) -> None:
    seen: list[httpx.Request] = []
    delays: list[float] = []
    body = {
        "ok": False,
        "error": {
            "code": "CONFLICT",
            "message": "already approved",
            "details": {"decidedBy": "jake"},
        },
    }
    with pytest.raises(FactoryError) as caught:
        await complete(client_with([httpx.Response(status, json=body)], seen, delays))
    assert len(seen) == 1 and delays == []
    assert caught.value.status == status
    assert caught.value.details == {"decidedBy": "jake"}


def test_idempotency_key_is_stable_for_a_seed() -> None:
    assert FactoryClient.new_idempotency_key("interaction:1") == FactoryClient.new_idempotency_key(
        "interaction:1"
    )
    assert FactoryClient.new_idempotency_key("interaction:1") != FactoryClient.new_idempotency_key(
        "interaction:2"
    )


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "soon", ""])
async def test_a_retry_after_that_is_no_finite_delay_falls_back_to_backoff(value: str) -> None:
    """``Retry-After: nan`` parses as a float; waiting on it would never end."""
    seen: list[httpx.Request] = []
    delays: list[float] = []
    answers = [
        httpx.Response(429, headers={"Retry-After": value}),
        httpx.Response(200, json={"ok": True, "data": TASK}),
    ]
    await complete(client_with(answers, seen, delays))
    assert delays == [1.0]


def test_retry_after_as_an_http_date_is_the_seconds_until_then() -> None:
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
    later = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2026 07:28:12 GMT"})
    past = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2026 07:00:00 GMT"})
    assert retry_after_seconds(later, now=lambda: now) == 12.0
    assert retry_after_seconds(past, now=lambda: now) == -1680.0
    assert RetryPolicy().delay(1, retry_after_seconds(past, now=lambda: now)) == 0.0


@pytest.mark.parametrize("status", [507, 520, 524])
async def test_a_server_error_outside_the_retry_list_is_unknown_not_a_refusal(status: int) -> None:
    """524: the origin timed out after the request reached it. Not retried (contract §7.1),
    but the decision may have been recorded: the caller must read it back."""
    seen: list[httpx.Request] = []
    delays: list[float] = []
    with pytest.raises(FactoryUnavailable) as raised:
        await complete(client_with([httpx.Response(status)], seen, delays))
    assert raised.value.uncertain
    assert len(seen) == 1 and delays == []


@pytest.mark.parametrize("status", [501, 505])
async def test_a_server_error_that_did_nothing_is_a_refusal(status: int) -> None:
    seen: list[httpx.Request] = []
    delays: list[float] = []
    with pytest.raises(FactoryError) as raised:
        await complete(client_with([httpx.Response(status)], seen, delays))
    assert raised.value.status == status and len(seen) == 1
