"""A factory that answers nonsense to a listing or a read: refused with a reason, never read as
"nothing is waiting", never followed or held for ever, never filling the bridge's memory.

The factory is scripted with httpx's ``MockTransport``, or, for an answer trickled a byte at
a time, served on 127.0.0.1 by aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.factory import answers, transport
from bot.factory.client import (
    FactoryBadResponse,
    FactoryClient,
    FactoryError,
    FactoryUnavailable,
    RetryPolicy,
)

ONCE = RetryPolicy(max_retries=0, base_delay_seconds=0.0, jitter_seconds=0.0)


def task(task_id: object) -> dict[str, Any]:
    return {"id": task_id, "title": "Release", "createdAt": "2026-11-21T10:00:00Z"}


def page(items: list[Any], *, has_next: bool, **pagination: Any) -> dict[str, Any]:
    return {"ok": True, "data": items, "meta": {"pagination": {"hasNext": has_next, **pagination}}}


def factory(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[FactoryClient, list[str]]:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url.params.get("page", "")))
        return answer(request)

    return (
        FactoryClient(
            "http://factory.test/v1", "key", retry=ONCE, transport=httpx.MockTransport(handler)
        ),
        calls,
    )


async def test_an_answer_trickled_a_byte_at_a_time_times_out_as_a_whole() -> None:
    """httpx's timeout bounds each read: a byte every 0.1 s never tripped a 0.5 s timeout,
    and the reconciliation pass waiting for it held its lock for ever."""

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for _ in range(200):  # 20 s of leading whitespace (valid JSON) before any data
            await response.write(b" ")
            await asyncio.sleep(0.1)  # the factory's pace (what is tested), not a wait
        return response

    app = web.Application()
    app.router.add_get("/v1/tasks", trickle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    factory_client = FactoryClient(
        str(server.make_url("/v1")), "key", timeout_seconds=0.5, retry=ONCE
    )
    started = time.monotonic()
    try:
        with pytest.raises(FactoryUnavailable, match=r"no whole answer within 0\.5s") as raised:
            await factory_client.list_tasks(status="pending")
        assert time.monotonic() - started < 5  # the answer alone would take 20 s
        assert raised.value.uncertain  # it may have reached the factory
    finally:
        await factory_client.aclose()
        await server.close()


@pytest.mark.parametrize("total", ["1e999", "Infinity"])
async def test_an_infinite_total_is_an_unreadable_answer(total: str) -> None:
    body = json.dumps(page([task("t1")], has_next=False)).replace(
        '"hasNext": false', f'"hasNext": false, "total": {total}'
    )
    factory_client, _ = factory(lambda request: httpx.Response(200, text=body))
    with pytest.raises(FactoryBadResponse, match="wrong shape"):  # was a bare OverflowError
        await factory_client.list_tasks(status="pending")


@pytest.mark.parametrize(
    "body",
    [{"ok": True}, {"ok": True, "data": None}, {"ok": True, "error": {"code": "INTERNAL"}}],
    ids=["no data", "null data", "an error under ok"],
)
async def test_a_listing_without_its_list_is_refused_not_read_as_empty(
    body: dict[str, Any],
) -> None:
    """Read as an empty list, it made /factory pending say nothing is waiting."""
    factory_client, _ = factory(lambda request: httpx.Response(200, json=body))
    with pytest.raises(FactoryBadResponse, match="not a list"):
        await factory_client.iter_tasks(status="pending")


async def test_a_page_repeated_for_ever_with_items_without_ids_is_not_followed() -> None:
    """Items without a string id counted as new on every page: 10,000 pages per status."""
    repeated = page([task(n) for n in range(100)], has_next=True)
    factory_client, calls = factory(lambda request: httpx.Response(200, json=repeated))
    assert await factory_client.iter_tasks(status="pending") == []  # each item refused
    assert calls == ["1"]


async def test_a_listing_is_followed_for_at_most_max_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """A factory ignoring ``limit`` (here 50 new items a page, for ever) is followed up to
    MAX_ITEMS items, not MAX_PAGES pages of any size."""
    monkeypatch.setattr(answers, "MAX_ITEMS", 120)

    def endless(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["page"])
        return httpx.Response(
            200, json=page([task(f"t{number}-{i}") for i in range(50)], has_next=True)
        )

    factory_client, calls = factory(endless)
    tasks = await factory_client.iter_tasks(status="pending")
    assert calls == ["1", "2", "3"] and len(tasks) == 150


@pytest.mark.parametrize("declared", [True, False], ids=["Content-Length", "chunked"])
async def test_an_answer_over_the_size_limit_is_refused_before_it_is_all_read(
    monkeypatch: pytest.MonkeyPatch, declared: bool
) -> None:
    monkeypatch.setattr(transport, "MAX_ANSWER_BYTES", 10_000)
    big = json.dumps(page([task(f"t{i}") for i in range(1_000)], has_next=False)).encode()
    chunks_read: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 1_000):
            chunks_read.append(start)
            yield big[start : start + 1_000]

    def answer(request: httpx.Request) -> httpx.Response:
        if declared:
            return httpx.Response(200, content=big)
        return httpx.Response(200, content=chunks())

    factory_client, _ = factory(answer)
    with pytest.raises(FactoryBadResponse, match="bytes"):
        await factory_client.list_tasks(status="pending")
    if not declared:
        assert len(chunks_read) <= 11  # stopped at the limit, not read to its end (74 chunks)


async def test_a_read_of_one_task_answered_with_another_is_refused() -> None:
    factory_client, _ = factory(
        lambda request: httpx.Response(200, json={"ok": True, "data": task("t2")})
    )
    with pytest.raises(FactoryBadResponse, match="the answer is task 't2', not 't1'"):
        await factory_client.get_task("t1")


async def test_a_factory_that_cannot_be_connected_to_did_not_get_the_request() -> None:
    """A connection never made (a listen backlog full, SYNs dropped) is httpx's ConnectTimeout,
    inside the attempt's own deadline: the decision was not sent (``uncertain`` False, so the
    person is told "NOT recorded, try again" instead of a read-back and an endless re-send)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):  # fill the backlog: the next connect hangs
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    factory_client = FactoryClient(
        f"http://127.0.0.1:{port}/v1", "key", retry=ONCE, timeout_seconds=0.5
    )
    try:
        with pytest.raises(FactoryUnavailable) as raised:
            await factory_client.complete_task(
                "t1", decision="approved", notes=None, decision_data={}, idempotency_key="k"
            )
        assert not raised.value.uncertain, str(raised.value)
    finally:
        await factory_client.aclose()
        for sock in [server, *fillers]:
            sock.close()


async def test_an_error_answer_keeps_the_factorys_reason_phrase() -> None:
    """The answer is read and rebuilt (for the size cap): the reason phrase an error is told by
    survives it."""
    factory_client, _ = factory(
        lambda request: httpx.Response(
            418, text="no", extensions={"reason_phrase": b"Factory Says No"}
        )
    )
    with pytest.raises(FactoryError, match="Factory Says No"):
        await factory_client.get_task("t1")
