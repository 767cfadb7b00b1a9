"""The Twilio emulator, driven by the real twilio client (async HTTP client, and sync once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from bot.pager.twilio_base import DEFAULT_TWILIO_API_BASE_URL, configure_client
from sandbox.twilio_emulator import TwilioEmulator

ALICE = "+15551230001"
BOB = "+15551230002"
FROM = "+15550009999"
TWIML = "<Response><Say>Task overdue</Say></Response>"

# twilio 9.13's AsyncTwilioHttpClient still uses aiohttp's deprecated BasicAuth / auth=.
pytestmark = pytest.mark.filterwarnings(
    "ignore:BasicAuth is deprecated:DeprecationWarning",
    "ignore:The 'auth' parameter is deprecated:DeprecationWarning",
)


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioEmulator]:
    emulator = TwilioEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def client(twilio: TwilioEmulator) -> AsyncIterator[Client]:
    http = AsyncTwilioHttpClient()
    real = Client(twilio.account_sid, twilio.auth_token, http_client=http)
    configure_client(real, twilio.base_url)
    yield real
    await http.close()


async def test_sms_and_call_reach_the_emulator(twilio: TwilioEmulator, client: Client) -> None:
    message = await client.messages.create_async(to=ALICE, from_=FROM, body="Task T-1 needs you")
    call = await client.calls.create_async(to=BOB, from_=FROM, twiml=TWIML)

    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued" and message.body == "Task T-1 needs you"
    assert message.date_created is not None
    assert call.sid.startswith("CA") and len(call.sid) == 34
    assert [(m["sid"], m["to"], m["from"], m["body"]) for m in twilio.messages] == [
        (message.sid, ALICE, FROM, "Task T-1 needs you")
    ]
    assert [(c["sid"], c["to"], c["twiml"], c["url"]) for c in twilio.calls] == [
        (call.sid, BOB, TWIML, None)
    ]
    fetched = await client.messages(message.sid).fetch_async()
    assert fetched.body == "Task T-1 needs you"


async def test_sync_client_works_too(twilio: TwilioEmulator) -> None:
    sync = Client(twilio.account_sid, twilio.auth_token)
    configure_client(sync, twilio.base_url)
    call = await asyncio.to_thread(
        sync.calls.create, to=ALICE, from_=FROM, url="https://example.test/voice.xml"
    )
    assert twilio.calls[0]["sid"] == call.sid
    assert twilio.calls[0]["url"] == "https://example.test/voice.xml"


async def test_wrong_auth_is_401_20003(twilio: TwilioEmulator) -> None:
    http = AsyncTwilioHttpClient()
    bad = Client(twilio.account_sid, "wrong-token", http_client=http)
    configure_client(bad, twilio.base_url)
    try:
        with pytest.raises(TwilioRestException) as caught:
            await bad.messages.create_async(to=ALICE, from_=FROM, body="x")
    finally:
        await http.close()
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert twilio.messages == []
    assert [(a["kind"], a["status"], a["code"]) for a in twilio.attempts] == [
        ("messages", 401, 20003)
    ]


async def test_fail_number_is_permanent(twilio: TwilioEmulator, client: Client) -> None:
    twilio.fail_number(ALICE)
    for _ in range(2):
        with pytest.raises(TwilioRestException) as caught:
            await client.messages.create_async(to=ALICE, from_=FROM, body="x")
        assert (caught.value.status, caught.value.code) == (400, 21610)
    with pytest.raises(TwilioRestException):
        await client.calls.create_async(to=ALICE, from_=FROM, twiml=TWIML)
    await client.messages.create_async(to=BOB, from_=FROM, body="x")
    assert [m["to"] for m in twilio.messages] == [BOB]


async def test_fail_number_limited_to_one_kind(twilio: TwilioEmulator, client: Client) -> None:
    twilio.fail_number(ALICE, kind="messages")
    await client.calls.create_async(to=ALICE, from_=FROM, twiml=TWIML)
    assert len(twilio.calls) == 1


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, 20500)])
async def test_fail_next_then_success(
    twilio: TwilioEmulator, client: Client, status: int, code: int
) -> None:
    twilio.fail_next("messages", status=status, times=2, retry_after=1)
    for _ in range(2):
        with pytest.raises(TwilioRestException) as caught:
            await client.messages.create_async(to=ALICE, from_=FROM, body="x")
        assert (caught.value.status, caught.value.code) == (status, code)
    await client.calls.create_async(to=ALICE, from_=FROM, twiml=TWIML)  # other kind unaffected
    await client.messages.create_async(to=ALICE, from_=FROM, body="x")
    assert [a["status"] for a in twilio.attempts] == [status, status, 201, 201]
    assert len(twilio.messages) == 1


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": "5551230001", "from_": FROM, "body": "x"}, 21211),
        ({"to": ALICE, "from_": "not-a-number", "body": "x"}, 21212),
        ({"to": ALICE, "from_": FROM, "body": "x" * 1601}, 21617),
    ],
)
async def test_validation_errors(
    twilio: TwilioEmulator, client: Client, kwargs: dict[str, str], code: int
) -> None:
    with pytest.raises(TwilioRestException) as caught:
        await client.messages.create_async(**kwargs)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert twilio.messages == []


def test_configure_client_validates_and_clears_edge() -> None:
    real = Client("AC" + "0" * 32, "token", edge="sydney", region="au1")
    with pytest.raises(ValueError):
        configure_client(real, "127.0.0.1:8000")
    configure_client(real, "http://127.0.0.1:8000/")
    assert real.api.base_url == "http://127.0.0.1:8000"
    assert (real.edge, real.region) == (None, None)
    configure_client(real, DEFAULT_TWILIO_API_BASE_URL)
    assert real.api.base_url == DEFAULT_TWILIO_API_BASE_URL
