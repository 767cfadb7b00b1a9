"""POST /events and GET /healthz: verify, validate, store before 202, clear errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.factory.intake import MAX_BODY_BYTES, EventIntake
from bot.factory.signing import signed_headers
from bot.store import Store
from sandbox.segmented import send_segmented

SECRET = "intake-test-secret"


class Health:
    def __init__(self) -> None:
        self.discord = True

    async def __call__(self) -> dict[str, bool]:
        return {"discord": self.discord, "database": True}


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[tuple[EventIntake, httpx.AsyncClient, Health]]:
    store = Store(database_url)
    await store.create_schema()
    health = Health()
    woken: list[int] = []
    server = EventIntake(
        store=store,
        secret=SECRET,
        on_stored=lambda event_id, event: woken.append(event_id),
        health=health,
    )
    await server.start("127.0.0.1", 0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        yield server, client, health
    await server.stop()
    await store.close()


def task_event(**task: Any) -> dict[str, Any]:
    body = {"id": "t-1", "title": "Review freshdesk", "createdAt": "2026-11-21T10:00:00Z"}
    body.update(task)
    return {
        "type": "task.created",
        "timestamp": "2026-11-21T10:00:00Z",
        "channel": "tasks:pending",
        "data": {"task": body},
    }


async def post(
    client: httpx.AsyncClient,
    payload: object,
    *,
    event_id: str = "evt-1",
    secret: str = SECRET,
    timestamp: int | None = None,
    raw: bytes | None = None,
) -> httpx.Response:
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = signed_headers(
        secret,
        body,
        event_id=event_id,
        timestamp=int(time.time()) if timestamp is None else timestamp,
    )
    return await client.post("/events", content=body, headers=headers)


async def test_valid_event_is_stored_before_202(intake: Any) -> None:
    server, client, _ = intake
    response = await post(client, task_event())
    assert response.status_code == 202
    assert response.json() == {"ok": True, "data": {"eventId": "evt-1", "status": "accepted"}}
    stored = await server.store.unprocessed_events()
    assert [e.event_id for e in stored] == ["evt-1"]
    assert stored[0].body["data"]["task"]["title"] == "Review freshdesk"


async def test_duplicate_event_id_is_200_and_stores_nothing_new(intake: Any) -> None:
    server, client, _ = intake
    assert (await post(client, task_event())).status_code == 202
    again = await post(client, task_event(title="changed"))
    assert again.status_code == 200
    assert again.json()["data"]["status"] == "duplicate"
    assert await server.store.count_events() == 1


async def test_same_content_under_a_new_id_is_kept_but_queued_once(intake: Any) -> None:
    """A webhook and a WebSocket copy of one event: both stored, only the first to act on."""
    server, client, _ = intake
    assert (await post(client, task_event(), event_id="evt-a")).status_code == 202
    assert (await post(client, task_event(), event_id="evt-b")).status_code == 202
    assert (await post(client, task_event(title="other"), event_id="evt-c")).status_code == 202
    assert await server.store.count_events() == 3
    queued = await server.store.unprocessed_events()
    assert [e.event_id for e in queued] == ["evt-a", "evt-c"]


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"secret": "wrong"}, "signature mismatch"),
        ({"offset": -301}, "timestamp outside tolerance"),
        ({"offset": 400}, "timestamp outside tolerance"),
    ],
)
async def test_bad_signature_or_stale_timestamp_is_401_and_nothing_stored(
    intake: Any, kwargs: dict[str, Any], reason: str
) -> None:
    server, client, _ = intake
    if "offset" in kwargs:  # computed now, not at collection: the suite can run for minutes
        kwargs = {"timestamp": int(time.time()) + kwargs["offset"]}
    response = await post(client, task_event(), **kwargs)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "UNAUTHORIZED"
    assert reason in error["message"]
    assert SECRET not in response.text
    assert await server.store.count_events() == 0


async def test_missing_signature_is_401(intake: Any) -> None:
    server, client, _ = intake
    response = await client.post("/events", content=json.dumps(task_event()).encode())
    assert response.status_code == 401
    assert await server.store.count_events() == 0


async def test_body_over_one_mebibyte_is_413(intake: Any) -> None:
    server, client, _ = intake
    big = task_event(description="x" * MAX_BODY_BYTES)
    response = await post(client, big)
    assert response.status_code == 413
    assert await server.store.count_events() == 0


async def test_malformed_json_is_400_bad_request(intake: Any) -> None:
    server, client, _ = intake
    response = await post(client, None, raw=b'{"type": "task.created", ')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BAD_REQUEST"
    assert await server.store.count_events() == 0


async def test_invalid_payload_is_400_naming_the_field(intake: Any) -> None:
    server, client, _ = intake
    event = task_event()
    del event["data"]["task"]["createdAt"]
    response = await post(client, event)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["field"] == "data.task.createdAt"
    assert await server.store.count_events() == 0


async def test_unknown_event_type_is_accepted_and_ignored(intake: Any) -> None:
    server, client, _ = intake
    event = {"type": "agent.heartbeat", "timestamp": "2026-11-21T10:00:00Z", "data": {}}
    response = await post(client, event)
    assert response.status_code == 202
    assert response.json()["data"]["status"] == "ignored"
    assert await server.store.count_events() == 0


async def test_healthz_says_which_part_is_down(intake: Any) -> None:
    _, client, health = intake
    ok = await client.get("/healthz")
    assert ok.status_code == 200
    assert ok.json()["checks"] == {"discord": "up", "database": "up"}
    health.discord = False
    down = await client.get("/healthz")
    assert down.status_code == 503
    assert down.json() == {"status": "degraded", "checks": {"discord": "down", "database": "up"}}


async def test_only_new_events_are_handed_to_the_processor(database_url: str) -> None:
    """A duplicate id or content accepted before is answered but not acted on again."""
    store = Store(database_url)
    await store.create_schema()
    handed: list[tuple[str, str]] = []
    server = EventIntake(
        store=store,
        secret=SECRET,
        on_stored=lambda event_id, event: handed.append((event_id, event.type)),
        health=Health(),
    )
    await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await post(client, task_event(), event_id="evt-a")).status_code == 202
            assert (await post(client, task_event(), event_id="evt-a")).status_code == 200
            assert (await post(client, task_event(), event_id="evt-b")).status_code == 202
            other = task_event(title="other")
            assert (await post(client, other, event_id="evt-c")).status_code == 202
    finally:
        await server.stop()
        await store.close()
    assert handed == [("evt-a", "task.created"), ("evt-c", "task.created")]


# ---------------------------------------------------------------- bodies as networks deliver them


def signed(body: bytes, event_id: str = "evt-1") -> dict[str, str]:
    headers = signed_headers(SECRET, body, event_id=event_id, timestamp=int(time.time()))
    headers["Content-Type"] = "application/json"
    return headers


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [1_300, 200_000], ids=["1.3KB", "200KB"])
async def test_a_signed_body_arriving_in_segments_is_read_whole(
    intake: Any, size: int, chunked: bool
) -> None:
    """1,448-byte segments with pauses, as a relay forwards them: the signature covers it all."""
    server, _, _ = intake
    event = task_event()
    filler = size - len(json.dumps(event))
    event["data"]["task"]["description"] = "d" * filler
    body = json.dumps(event).encode()
    assert abs(len(body) - size) < 64
    response = await send_segmented(
        "127.0.0.1", server.port, "/events", body, signed(body), chunked=chunked, chunk_bytes=1000
    )
    assert response.status == 202, response.body
    stored = await server.store.unprocessed_events()
    assert [e.body for e in stored] == [event]


async def test_a_chunked_body_over_one_mebibyte_is_413_and_nothing_stored(intake: Any) -> None:
    server, _, _ = intake
    body = json.dumps(task_event(description="x" * MAX_BODY_BYTES)).encode()
    response = await send_segmented(
        "127.0.0.1",
        server.port,
        "/events",
        body,
        signed(body),
        chunked=True,
        segment_bytes=65536,
        pause_seconds=0,
    )
    assert response.status == 413
    assert response.json()["error"]["code"] == "BAD_REQUEST"
    assert await server.store.count_events() == 0


@pytest.fixture
async def quick_intake(database_url: str) -> AsyncIterator[EventIntake]:
    """An intake that waits at most 0.3 s for the rest of a body."""
    store = Store(database_url)
    await store.create_schema()
    server = EventIntake(
        store=store,
        secret=SECRET,
        on_stored=lambda event_id, event: None,
        health=Health(),
        body_timeout_seconds=0.3,
        counters=lambda: {"events_failed": 2, "events_retrying": 1},
    )
    await server.start("127.0.0.1", 0)
    yield server
    await server.stop()
    await store.close()


async def test_a_body_shorter_than_its_content_length_is_400(quick_intake: EventIntake) -> None:
    """Signed over what was sent, but the announced length never arrives: refused, not stored."""
    body = json.dumps(task_event()).encode()
    response = await send_segmented(
        "127.0.0.1",
        quick_intake.port or 0,
        "/events",
        body,
        signed(body),
        content_length=len(body) + 100,
    )
    assert response.status == 400
    error = response.json()["error"]
    assert error["code"] == "BAD_REQUEST"
    assert "Content-Length" in error["message"]
    assert await quick_intake.store.count_events() == 0


async def test_a_gzipped_body_shorter_than_its_content_length_is_400_too(
    quick_intake: EventIntake,
) -> None:
    """The same broken framing gets the same answer whatever the encoding: a 400 (not retried
    by the factory), not the 408 of a chunked body that never ended."""
    import gzip

    body = json.dumps(task_event()).encode()
    compressed = gzip.compress(body)
    head = {**signed(body), "Content-Encoding": "gzip"}
    response = await send_segmented(
        "127.0.0.1",
        quick_intake.port or 0,
        "/events",
        compressed,
        head,
        content_length=len(compressed) + 10,
    )
    assert response.status == 400
    error = response.json()["error"]
    assert error["code"] == "BAD_REQUEST" and "Content-Length" in error["message"]
    assert await quick_intake.store.count_events() == 0


@pytest.mark.parametrize("segmented", [False, True], ids=["whole", "in pieces"])
async def test_a_body_that_is_not_the_gzip_it_says_is_400_not_500(
    quick_intake: EventIntake, segmented: bool
) -> None:
    """A corrupt ``Content-Encoding: gzip`` body: a 400 with the reason (the factory does not
    send it again), not aiohttp's 500 (which the factory retries for ever, contract §7.1)."""
    body = json.dumps(task_event()).encode()
    head = {**signed(body), "Content-Encoding": "gzip"}
    if segmented:
        response = await send_segmented(
            "127.0.0.1", quick_intake.port or 0, "/events", body, head, content_length=len(body)
        )
    else:
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"http://127.0.0.1:{quick_intake.port}/events", content=body, headers=head
            )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "BAD_REQUEST"
        assert await quick_intake.store.count_events() == 0
        return
    assert response.status == 400
    assert response.json()["error"]["code"] == "BAD_REQUEST"
    assert await quick_intake.store.count_events() == 0


async def counting_intake(store: Store, outcomes: list[tuple[str, str]]) -> EventIntake:
    """An intake on a free port whose metrics outcomes (source, outcome) go to ``outcomes``."""
    server = EventIntake(
        store=store,
        secret=SECRET,
        on_stored=lambda event_id, event: None,
        health=Health(),
        on_outcome=lambda source, outcome: outcomes.append((source, outcome)),
    )
    await server.start("127.0.0.1", 0)
    return server


async def test_an_event_the_store_cannot_write_is_503_with_retry_after_and_counted(
    database_url: str,
) -> None:
    """A disk full or a database down: the factory is told to send it again (the contract's
    envelope, ``SERVICE_UNAVAILABLE``, ``Retry-After``), and the metrics count it."""
    store = Store(database_url)
    await store.create_schema()

    async def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    store.record_event = disk_full  # type: ignore[method-assign]
    outcomes: list[tuple[str, str]] = []
    server = await counting_intake(store, outcomes)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            response = await post(client, task_event())
    finally:
        await server.stop()
        await store.close()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert outcomes == [("webhook", "unavailable")]


async def test_an_ignored_event_type_is_counted_ignored_not_accepted(database_url: str) -> None:
    """A signed ``agent.heartbeat`` (a type the bridge does not handle) is answered 202
    ``ignored`` and counted ``ignored``, as the WebSocket and Redis intakes count it: it must
    not inflate the accepted events (README "Metrics")."""
    store = Store(database_url)
    await store.create_schema()
    outcomes: list[tuple[str, str]] = []
    server = await counting_intake(store, outcomes)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            heartbeat = {"type": "agent.heartbeat", "timestamp": "2026-11-21T10:00:00Z", "data": {}}
            ignored = await post(client, heartbeat)
            accepted = await post(client, task_event())
    finally:
        await server.stop()
        await store.close()
    assert (ignored.status_code, accepted.status_code) == (202, 202)
    assert outcomes == [("webhook", "ignored"), ("webhook", "accepted")]


async def test_a_chunked_body_that_never_ends_is_408(quick_intake: EventIntake) -> None:
    body = json.dumps(task_event()).encode()
    head = signed(body)
    head["Transfer-Encoding"] = "chunked"
    unfinished = f"{len(body):x}\r\n".encode() + body + b"\r\n"  # no last chunk
    response = await send_segmented(
        "127.0.0.1", quick_intake.port or 0, "/events", unfinished, head
    )
    assert response.status == 408
    assert await quick_intake.store.count_events() == 0


async def test_healthz_shows_the_event_counters(quick_intake: EventIntake) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{quick_intake.port}") as client:
        body = (await client.get("/healthz")).json()
    assert body["events_failed"] == 2
    assert body["events_retrying"] == 1
    assert body["checks"] == {"discord": "up", "database": "up"}


# ---------------------------------------------------------------- input the bridge cannot take


def deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def raw_task(**fragments: str) -> bytes:
    """A task.created body with some task fields given as raw JSON text."""
    fields = {"id": '"t-1"', "title": '"Review"', "createdAt": '"2026-11-21T10:00:00Z"'}
    fields.update(fragments)
    task = ", ".join(f'"{name}": {value}' for name, value in fields.items())
    return (
        '{"type": "task.created", "timestamp": "2026-11-21T10:00:00Z", '
        f'"channel": "tasks:pending", "data": {{"task": {{{task}}}}}}}'
    ).encode()


@pytest.mark.parametrize(
    ("body", "reason", "field"),
    [
        ("[" * 5000 + "]" * 5000, "nested deeper than 64 levels", None),
        (
            raw_task(decisionData=deep(900)),
            "nested deeper than 64 levels",
            "data.task.decisionData",
        ),
        (raw_task(escalationLevel="9" * 5000), "5000 digits is too long", None),
        (raw_task(slaWarningsSent="-" + "1" * 31), "31 digits is too long", None),
        (raw_task(context='{"metrics": {"risk": NaN}}'), "NaN is not a JSON number", None),
        (raw_task(context='{"metrics": {"risk": Infinity}}'), "Infinity is not a JSON", None),
        (raw_task(context='{"metrics": {"risk": -1e999}}'), "out of range", None),
        (raw_task(title='"a\\ud800b"'), "lone surrogate", "data.task.title"),
        (raw_task(decisionData='{"\\udfff": 1}'), "lone surrogate", "data.task.decisionData."),
        (
            raw_task(decisionData='{"k": ["\\ud83d"]}'),
            "lone surrogate",
            "data.task.decisionData.k.0",
        ),
        (raw_task(title='"x"').replace(b'"x"', b'"\xff"'), "not UTF-8", None),
    ],
    ids=[
        "nested-5000",
        "nested-900",
        "int-5000-digits",
        "int-31-digits",
        "nan",
        "infinity",
        "overflowing-float",
        "surrogate-in-title",
        "surrogate-in-key",
        "surrogate-in-list",
        "not-utf8",
    ],
)
async def test_input_the_bridge_cannot_take_is_400_with_the_reason(
    intake: Any, body: bytes | str, reason: str, field: str | None
) -> None:
    server, client, _ = intake
    raw = body if isinstance(body, bytes) else body.encode()
    response = await post(client, None, raw=raw)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert reason in error["message"]
    if field is not None:
        assert error["field"].startswith(field)
    assert await server.store.count_events() == 0


async def test_surrogates_in_an_unknown_event_type_are_400_not_ignored(intake: Any) -> None:
    server, client, _ = intake
    raw = b'{"type": "agent.\\ud800", "timestamp": "2026-11-21T10:00:00Z", "data": {}}'
    response = await post(client, None, raw=raw)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "type"
    assert await server.store.count_events() == 0


@pytest.mark.parametrize(
    "event_id",
    ["", "x" * 201, "evt 1", "évt-1", "evt\t1"],
    ids=["empty", "201-chars", "space", "non-ascii", "tab"],
)
async def test_event_id_header_must_be_printable_ascii(intake: Any, event_id: str) -> None:
    server, _, _ = intake
    body = json.dumps(task_event()).encode()
    headers = signed(body)
    headers["X-Factory-Event-Id"] = event_id
    response = await send_segmented("127.0.0.1", server.port, "/events", body, headers)
    assert response.status == 400
    assert response.json()["error"]["field"] == "X-Factory-Event-Id"
    assert await server.store.count_events() == 0


def approval_event(task_id: str) -> dict[str, Any]:
    return {
        "type": "approval.pending",
        "timestamp": "2026-11-21T10:00:00Z",
        "data": {"approval": {"id": "apr-1", "taskId": task_id}},
    }


def sla_event(task_id: str) -> dict[str, Any]:
    return {
        "type": "task.sla_warning",
        "timestamp": "2026-11-21T10:00:00Z",
        "data": {
            "taskId": task_id,
            "taskTitle": "Review",
            "slaDeadline": "2026-11-21T11:00:00Z",
            "minutesRemaining": 12,
        },
    }


@pytest.mark.parametrize("task_id", ["..", ".", "a/b", "a b", "t-1?x", "tâche", "x" * 65, "fb:t:1"])
@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda task_id: task_event(id=task_id), "data.task.id"),
        (approval_event, "data.approval.taskId"),
        (sla_event, "data.taskId"),
    ],
    ids=["task", "approval", "sla"],
)
async def test_task_ids_outside_the_safe_alphabet_are_400_naming_the_field(
    intake: Any, task_id: str, make: Any, field: str
) -> None:
    server, client, _ = intake
    response = await post(client, make(task_id))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["field"] == field
    assert await server.store.count_events() == 0


async def test_a_task_id_of_the_safe_alphabet_is_accepted(intake: Any) -> None:
    _, client, _ = intake
    response = await post(client, task_event(id="Task_01-ab" + "c" * 54))
    assert response.status_code == 202


def _buffered_request(intake: EventIntake, body: bytes, headers: dict[str, str]) -> Any:
    """A request whose whole body the server has buffered already (its end was parsed)."""
    from unittest import mock

    from aiohttp import streams
    from aiohttp.test_utils import make_mocked_request

    protocol = mock.Mock(_reading_paused=False)
    stream = streams.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    stream.feed_data(body)
    stream.feed_eof()
    return make_mocked_request("POST", "/events", headers=headers, payload=stream)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_buffered_body_is_taken_whole_and_over_the_limit_refused(
    intake: Any, framing: str
) -> None:
    """The path taken when the body arrived with the headers: same answers as when it trickles."""
    server, _, _ = intake
    body = json.dumps(task_event()).encode()
    length = {"Content-Length": str(len(body))} if framing == "content-length" else {}
    request = _buffered_request(server, body, {**signed(body), **length})
    assert await server._read_body(request) == body

    big = b"x" * (MAX_BODY_BYTES + 1)
    chunked = {"Transfer-Encoding": "chunked"}
    with pytest.raises(Exception, match="larger than") as refused:
        await server._read_body(_buffered_request(server, big, {**signed(big), **chunked}))
    assert getattr(refused.value, "status", None) == 413

    short = {"Content-Length": str(len(body) + 10)}
    with pytest.raises(Exception, match="shorter than its Content-Length") as refused:
        await server._read_body(_buffered_request(server, body, {**signed(body), **short}))
    assert getattr(refused.value, "status", None) == 400


async def test_a_gzipped_body_with_its_content_length_is_accepted(intake: Any) -> None:
    """RFC 9110: Content-Length counts the encoded bytes; the signature is over the event
    (the decoded body), as when the same body comes chunked."""
    import gzip

    server, client, _ = intake
    body = json.dumps(task_event()).encode()
    headers = signed_headers(SECRET, body, event_id="evt-gz", timestamp=int(time.time()))
    compressed = gzip.compress(body)
    headers = {**headers, "Content-Encoding": "gzip", "Content-Length": str(len(compressed))}
    response = await client.post("/events", content=compressed, headers=headers)
    assert response.status_code == 202, response.text
    assert [e.event_id for e in await server.store.unprocessed_events()] == ["evt-gz"]
