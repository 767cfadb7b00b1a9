"""A standby hands a request only the leader can answer to the leader, at the address the
leader announced with its fencing token — never to a dead leader's address, never twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.leadership.lease import LeaseView
from bot.leadership.relay import LEADER_STATE_KEY, RELAYED_HEADER, LeaderRelay
from bot.store import Store

FALLBACK = "<Response><Say>sorry</Say></Response>"


@dataclass
class FakeLease:
    """What the relay reads of a lease: whether it leads, its token, the row as last seen."""

    is_leader: bool = False
    token: int | None = None
    holder: str = "standby-1"
    seen: LeaseView | None = None


def seen(token: int, holder: str | None = "leader-1") -> LeaseView:
    return LeaseView(token=token, holder=holder, version=3, lease_seconds=10.0)


@pytest.fixture
async def served(store: Store) -> AsyncIterator[tuple[FakeLease, list[httpx.Request], str]]:
    """A relay behind a one-route aiohttp server; the leader is an httpx mock recording what
    it received. Yields (the relay's lease, the leader's requests, the route's URL)."""
    lease = FakeLease(seen=seen(7))
    received: list[httpx.Request] = []

    def leader(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(
            200, text="<Response><Message>Acknowledged</Message></Response>",
            headers={"Content-Type": "text/xml; charset=utf-8"},
        )  # fmt: skip

    relay = LeaderRelay(
        lease=lease,  # type: ignore[arg-type]
        store=store,
        own_url="http://standby:8080",
        transport=httpx.MockTransport(leader),
    )

    async def route(request: web.Request) -> web.Response:
        await request.read()
        fallback = web.Response(status=200, text=FALLBACK, content_type="text/xml")
        return await relay.forward(request, fallback=fallback)

    app = web.Application()
    app.router.add_post("/twilio/sms", route)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield lease, received, str(server.make_url("/twilio/sms?tasks=t1,t2"))
    finally:
        await server.close()
        await relay.aclose()


async def post(url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            url,
            content=b"From=%2B15550100001&Body=ACK+4821",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": "c2lnbmVk",
                **headers,
            },
        )


async def test_the_request_goes_to_the_announced_leader_as_it_came(
    store: Store, served: tuple[FakeLease, list[httpx.Request], str]
) -> None:
    lease, received, url = served
    await store.save_state(LEADER_STATE_KEY, {"url": "http://leader:8080", "token": 7})
    answer = await post(url)
    assert answer.status_code == 200
    assert answer.text == "<Response><Message>Acknowledged</Message></Response>"
    assert answer.headers["Content-Type"].startswith("text/xml")
    [request] = received
    assert str(request.url) == "http://leader:8080/twilio/sms?tasks=t1,t2"
    assert request.content == b"From=%2B15550100001&Body=ACK+4821"
    assert request.headers["X-Twilio-Signature"] == "c2lnbmVk"  # the leader checks it again
    assert request.headers[RELAYED_HEADER] == lease.holder


@pytest.mark.parametrize(
    "record",
    [None, {"url": "http://old-leader:8080", "token": 6}, {"token": 7}],
    ids=["no leader announced", "a dead leader's address", "no address"],
)
async def test_without_the_current_leaders_address_the_fallback_is_answered(
    store: Store, served: tuple[FakeLease, list[httpx.Request], str], record: Any
) -> None:
    _, received, url = served
    if record is not None:
        await store.save_state(LEADER_STATE_KEY, record)
    answer = await post(url)
    assert answer.text == FALLBACK
    assert received == []


async def test_a_request_relayed_once_is_never_relayed_again(
    store: Store, served: tuple[FakeLease, list[httpx.Request], str]
) -> None:
    """Two processes that each think the other leads cannot bounce a request for ever."""
    _, received, url = served
    await store.save_state(LEADER_STATE_KEY, {"url": "http://leader:8080", "token": 7})
    answer = await post(url, **{RELAYED_HEADER: "standby-2"})
    assert answer.text == FALLBACK
    assert received == []


async def test_the_leader_announces_its_address_with_its_token(store: Store) -> None:
    lease = FakeLease(is_leader=True, token=8, holder="leader-2", seen=seen(8, "leader-2"))
    relay = LeaderRelay(lease=lease, store=store, own_url="http://leader-2:8080/")  # type: ignore[arg-type]
    try:
        await relay.announce()
        assert await relay.leader_url() == "http://leader-2:8080"
        lease.seen = seen(9, "leader-3")  # a successor took over and has not announced yet
        assert await relay.leader_url() is None
    finally:
        await relay.aclose()
