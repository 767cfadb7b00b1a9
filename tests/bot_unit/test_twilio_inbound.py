"""The Twilio webhooks (bot.pager.inbound) in-process: the signature check, TwiML answers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from bot.pager.inbound import TwilioWebhooks
from escalation.phone import Keypress

TOKEN = "inbound-test-token"
PUBLIC = "https://bridge.example.com"


class FakeDesk:
    """Records what the webhooks hand over."""

    def __init__(self) -> None:
        self.sms: list[tuple[str, str, str]] = []
        self.statuses: list[tuple[str, list[str], str, str]] = []
        self.key = Keypress.ACKNOWLEDGE  # what the next keypress asks for
        self.bridge = SimpleNamespace(store=SimpleNamespace(get_task=self.get_task))

    async def get_task(self, task_id: str) -> None:
        return None

    def clock(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)

    async def on_sms(self, from_: str, body: str, sid: str) -> str:
        self.sms.append((from_, body, sid))
        return "Acknowledged: Deploy <prod> & co."

    async def on_keypress(
        self, to: str, tasks: list[str], digits: str | None, sid: str
    ) -> tuple[Keypress, str]:
        if self.key is not Keypress.ACKNOWLEDGE:
            return self.key, ""
        return Keypress.ACKNOWLEDGE, "Acknowledged: Deploy."

    async def on_call_status(self, to: str, tasks: list[str], status: str, sid: str) -> None:
        self.statuses.append((to, tasks, status, sid))


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[Any, Any], FakeDesk]]:
    desk = FakeDesk()
    app = web.Application()
    TwilioWebhooks(public_url=PUBLIC, auth_token=TOKEN, desk=desk).attach(app)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as http:
        yield http, desk


def signed(path: str, form: dict[str, str], token: str = TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(PUBLIC + path, form)}


async def test_a_signed_sms_is_answered_with_escaped_twiml(client: Any) -> None:
    http, desk = client
    form = {"From": "+15550100001", "To": "+15550100000", "Body": "ACK 1", "MessageSid": "SM1"}
    response = await http.post("/twilio/sms", data=form, headers=signed("/twilio/sms", form))
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    assert await response.text() == (
        "<Response><Message>Acknowledged: Deploy &lt;prod&gt; &amp; co.</Message></Response>"
    )
    assert desk.sms == [("+15550100001", "ACK 1", "SM1")]


@pytest.mark.parametrize("headers", [{}, {"X-Twilio-Signature": "Zm9yZ2Vk"}])
async def test_missing_or_wrong_signature_is_403_and_reaches_nothing(
    client: Any, headers: dict[str, str]
) -> None:
    http, desk = client
    form = {"From": "+15550100001", "Body": "ACK ALL"}
    response = await http.post("/twilio/sms", data=form, headers=headers)
    assert response.status == 403
    assert desk.sms == []


async def test_a_signature_by_another_token_or_for_another_url_is_403(client: Any) -> None:
    http, desk = client
    form = {"From": "+15550100001", "Body": "ACK"}
    other_token = signed("/twilio/sms", form, token="someone-elses")
    assert (await http.post("/twilio/sms", data=form, headers=other_token)).status == 403
    other_path = signed("/twilio/sms?x=1", form)  # the query is part of what is signed
    assert (await http.post("/twilio/sms", data=form, headers=other_path)).status == 403
    assert desk.sms == []


async def test_status_callback_carries_the_tasks_of_the_query(client: Any) -> None:
    http, desk = client
    path = "/twilio/voice/status?tasks=t1,t2"  # as bot.pager.twilio_pager.callback_url writes it
    form = {"CallSid": "CA1", "CallStatus": "no-answer", "To": "+15550100001"}
    response = await http.post(path, data=form, headers=signed(path, form))
    assert response.status == 200 and await response.text() == "<Response/>"
    assert desk.statuses == [("+15550100001", ["t1", "t2"], "no-answer", "CA1")]


async def test_keypress_1_says_what_happened(client: Any) -> None:
    http, _ = client
    path = "/twilio/voice/gather?tasks=t1"
    form = {"CallSid": "CA1", "Digits": "1", "To": "+15550100001"}
    response = await http.post(path, data=form, headers=signed(path, form))
    assert "Acknowledged: Deploy. Goodbye." in await response.text()


async def test_a_signed_form_with_a_repeated_key_is_accepted(client: Any) -> None:
    # Twilio signs every value of a repeated parameter (RequestValidator.compute_signature)
    http, desk = client
    form = MultiDict([("From", "+15550100001"), ("Body", "ACK"), ("X", "a"), ("X", "b")])
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/sms", form)
    response = await http.post("/twilio/sms", data=form, headers={"X-Twilio-Signature": signature})
    assert response.status == 200
    assert desk.sms == [("+15550100001", "ACK", "")]


async def test_a_form_with_a_repeated_key_signed_over_one_value_is_403(client: Any) -> None:
    http, desk = client
    form = MultiDict([("From", "+15550100001"), ("Body", "ACK"), ("X", "a"), ("X", "b")])
    only_last = signed("/twilio/sms", {"From": "+15550100001", "Body": "ACK", "X": "b"})
    assert (await http.post("/twilio/sms", data=form, headers=only_last)).status == 403
    assert desk.sms == []


async def test_key_2_when_the_store_fails_says_sorry_instead_of_an_error(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    http, desk = client
    desk.key = Keypress.REPEAT

    async def broken(task_id: str) -> None:
        raise RuntimeError("database down")

    desk.bridge.store.get_task = broken
    path = "/twilio/voice/gather?tasks=t1"
    form = {"CallSid": "CA1", "Digits": "2", "To": "+15550100001"}
    with caplog.at_level(logging.ERROR, logger="bot.pager.inbound"):
        response = await http.post(path, data=form, headers=signed(path, form))
    assert response.status == 200  # Twilio would otherwise play "an application error"
    assert "Something went wrong. Please open Discord." in await response.text()
    assert any("database down" in (r.exc_text or "") for r in caplog.records)


async def test_a_body_that_is_no_form_is_403_not_a_server_error(client: Any) -> None:
    """Anyone can post bytes that are not UTF-8: refused like an unsigned request (no 500, no
    traceback), and nothing reaches the desk."""
    http, desk = client
    response = await http.post(
        "/twilio/sms",
        data=b"From=%2B1555&Body=\xff\xfe",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": "Zm9yZ2Vk",
        },
    )
    assert response.status == 403
    assert desk.sms == []


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/twilio/sms?tasks=a%2Cb", "/twilio/sms?tasks=a%2Cb"),  # kept as signed, undecoded
        ("http://10.0.0.5:8080/twilio/sms?tasks=a%2Cb", "/twilio/sms?tasks=a%2Cb"),
        ("https://bridge.example.com", "/"),
        ("https://bridge.example.com?x=1", "/?x=1"),
    ],
)
def test_the_signed_path_is_the_origin_form_of_the_request_target(
    target: str, expected: str
) -> None:
    from bot.pager.inbound import origin_form

    assert origin_form(target) == expected


async def test_a_signed_request_in_absolute_form_is_accepted(client: Any) -> None:
    """RFC 9112 §3.2.2: a server accepts ``POST http://host/path``, as some proxies send it;
    the URL Twilio signed is still ``BRIDGE_PUBLIC_URL`` + the path."""
    import asyncio
    from urllib.parse import urlencode

    http, desk = client
    form = {"From": "+15550100001", "To": "+15550100000", "Body": "ACK 1", "MessageSid": "SM9"}
    body = urlencode(form).encode()
    port = http.server.port
    head = (
        f"POST http://127.0.0.1:{port}/twilio/sms HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"X-Twilio-Signature: {signed('/twilio/sms', form)['X-Twilio-Signature']}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + body)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"200", status_line
    assert desk.sms == [("+15550100001", "ACK 1", "SM9")]
