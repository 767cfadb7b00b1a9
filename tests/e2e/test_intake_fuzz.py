"""Fuzz ``POST /events`` of the bridge process: bodies and headers from hypothesis, in segments.

Whatever arrives — well-formed events with hostile text (``@everyone``, user and role mentions,
markdown, lone surrogates, 2,000-character titles), odd ids, numbers and dates, mutated
structures, broken JSON, random bytes, bad or random headers — and however it is segmented
(``Content-Length`` or chunked), the bridge:

- never answers 5xx;
- stores nothing unless it answered 202;
- handles what it accepted without any Discord message pinging anyone (the escalation ladder,
  whose ``@here`` is deliberate, is off here; so is the ``@here`` of the factory's own SLA
  warning / breach, which must then be the bridge's one token and nothing else).

One bridge serves every example (started once); each example waits until the bridge has
processed what it accepted before looking at Discord, so a failure points at its input.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.factory.signing import signed_headers
from bot.store import Store
from bot.store import tables as t
from sandbox.discord_emulator import RecordedMessage
from sandbox.segmented import send_segmented
from sandbox.world import WEBHOOK_SECRET, World
from tests.support.harness import BridgeProcess, wait_until

# ------------------------------------------------------------------ strategies

HOSTILE_TEXT = [
    "@everyone",
    "@here",
    "@everyone please look",
    "<@1000000000000000001>",
    "<@!1000000000000000002>",
    "<@&900000000000000201>",
    "**@everyone**",
    "`@here`",
    "@\u200beveryone",
    "||spoiler|| __under__ ~~gone~~ [link](https://example.com)",
    "\ud800",
    "a\udfffb",
    "\u202eevil",
    "\x00\x07",
    "",
    " ",
    "x" * 2100,
    "🚀" * 50,
]

text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(HOSTILE_TEXT),
    st.tuples(st.text(max_size=10), st.sampled_from(HOSTILE_TEXT)).map("".join),
)
ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    st.sampled_from(["..", ".", "a/b", "", "x" * 65, "fb:t:approve:1", "t 1", "ü"]),
    st.text(max_size=8),
)
numbers = st.one_of(
    st.integers(min_value=-5, max_value=10),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    st.sampled_from([0.5, 1e308, -1e308, 2**53 + 1]),
)
dates = st.one_of(
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(
        [
            "2026-11-21T10:00:00Z",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-21T10:00:00+14:00",
            "not a date",
            "",
        ]
    ),
    st.just(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
nested = st.integers(min_value=1, max_value=200).map(
    lambda depth: json.loads('{"a":' * depth + "1" + "}" * depth)
)
enum_values = {
    "priority": ["critical", "high", "medium", "low", "urgent", ""],
    "status": ["pending", "claimed", "in_progress", "completed", "expired", "escalated", "x"],
    "type": ["approval", "review", "decision", "manual_action", "fix_required", "other"],
}

task = st.fixed_dictionaries(
    {"id": ids, "title": text, "createdAt": dates},
    optional={
        "description": text,
        "priority": st.sampled_from(enum_values["priority"]),
        "status": st.sampled_from(enum_values["status"]),
        "type": st.sampled_from(enum_values["type"]),
        "pipelineId": st.one_of(st.none(), ids),
        "stageName": st.sampled_from(["review", "staging", "production", "nowhere"]),
        "context": st.fixed_dictionaries(
            {},
            optional={
                "summary": text,
                "details": text,
                "metrics": st.dictionaries(text, numbers, max_size=3),
                "modalConfig": st.dictionaries(text, json_values, max_size=2),
                "relatedAssets": st.lists(text, max_size=2),
            },
        ),
        "decisionData": st.one_of(st.dictionaries(text, json_values, max_size=3), nested),
        "slaDeadline": st.one_of(st.none(), dates),
        "escalationLevel": numbers,
        "claimedBy": text,
        "decisionNotes": text,
    },
)


# well-formed events whose only hostility is their free text
free_text = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from(
        [h for h in HOSTILE_TEXT if h.strip() and h.isprintable() and "\\ud" not in ascii(h)]
    ),
    st.tuples(st.text(max_size=10), st.sampled_from(HOSTILE_TEXT[:10])).map("".join),
)
safe_ids = st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)
recent = st.integers(min_value=-3 * 86400, max_value=3 * 86400).map(
    lambda offset: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))
)
good_task = st.fixed_dictionaries(
    {"id": safe_ids, "title": free_text, "createdAt": recent},
    optional={
        "description": free_text,
        "priority": st.sampled_from(["critical", "high", "medium", "low"]),
        "status": st.sampled_from(["pending", "claimed"]),
        "claimedBy": free_text,
        "decisionNotes": free_text,
        "slaDeadline": recent,
        "context": st.fixed_dictionaries(
            {"summary": free_text},
            optional={
                "details": free_text,
                "metrics": st.dictionaries(
                    st.sampled_from(["risk", "coverage", "deploysToProduction"]),
                    st.floats(min_value=0, max_value=2),
                ),
            },
        ),
    },
)


@st.composite
def good_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A valid ``WsEvent`` of a handled type, hostile only in its free text."""
    kind = draw(st.sampled_from(["task", "task", "completed", "sla", "pipeline", "deploy"]))
    data: dict[str, Any]
    if kind == "task":
        event_type = draw(st.sampled_from(["task.created", "task.escalated", "task.claimed"]))
        data = {"task": draw(good_task)}
    elif kind == "completed":
        decided = draw(good_task)
        decision = draw(st.sampled_from(["approved", "rejected", "deferred"]))
        who = draw(free_text)
        decided.update(status="completed", decision=decision, decidedBy=who)
        event_type = "task.completed"
        data = {"task": decided, "decision": decision, "decidedBy": who}
    elif kind == "sla":
        event_type = draw(st.sampled_from(["task.sla_warning", "task.sla_breached"]))
        data = {
            "taskId": draw(safe_ids),
            "taskTitle": draw(free_text),
            "slaDeadline": draw(recent),
            "minutesRemaining": draw(st.integers(min_value=-600, max_value=600)),
        }
    elif kind == "pipeline":
        event_type = "pipeline.blocked"
        data = {
            "pipelineId": draw(safe_ids),
            "pipelineName": draw(free_text),
            "blockedAt": draw(free_text),
            "reason": draw(free_text),
            "taskId": draw(safe_ids),
        }
    else:
        event_type = draw(st.sampled_from(["deploy.started", "deploy.succeeded", "deploy.failed"]))
        data = {
            "pipelineId": draw(safe_ids),
            "pipelineName": draw(free_text),
            "target": draw(st.sampled_from(["staging", "production"])),
            "version": draw(free_text),
            "status": "started",
            "error": draw(free_text),
        }
    return {"type": event_type, "timestamp": draw(recent), "channel": "tasks:*", "data": data}


def payload_for(event_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """A (mostly well-formed) ``data`` of the given type, with fuzzed values."""
    if event_type in ("task.created", "task.claimed", "task.escalated"):
        return st.fixed_dictionaries({"task": task})
    if event_type == "task.completed":
        return st.fixed_dictionaries(
            {
                "task": task,
                "decision": st.sampled_from(["approved", "rejected", "deferred", "maybe"]),
                "decidedBy": text,
            }
        )
    if event_type.startswith("approval."):
        return st.fixed_dictionaries(
            {"approval": st.fixed_dictionaries({"id": text, "taskId": ids})},
            optional={"task": task},
        )
    if event_type.startswith("task.sla_"):
        return st.fixed_dictionaries(
            {
                "taskId": ids,
                "taskTitle": text,
                "slaDeadline": dates,
                "minutesRemaining": numbers,
            },
            optional={"escalationLevel": numbers, "pipelineId": ids},
        )
    if event_type in ("pipeline.created", "pipeline.completed", "pipeline.failed"):
        return st.fixed_dictionaries(
            {"pipeline": st.fixed_dictionaries({"id": ids, "name": text})},
            optional={"reason": text},
        )
    if event_type == "pipeline.blocked":
        return st.fixed_dictionaries(
            {
                "pipelineId": ids,
                "pipelineName": text,
                "blockedAt": text,
                "reason": text,
                "taskId": ids,
            }
        )
    if event_type == "pipeline.stage_changed":
        return st.fixed_dictionaries(
            {
                "pipelineId": ids,
                "pipelineName": text,
                "fromStage": text,
                "toStage": text,
                "triggeredBy": text,
            }
        )
    if event_type.startswith("deploy."):
        return st.fixed_dictionaries(
            {
                "pipelineId": ids,
                "pipelineName": text,
                "target": text,
                "version": text,
                "status": text,
            },
            optional={"url": text, "error": text},
        )
    return st.dictionaries(text, json_values, max_size=3)


EVENT_TYPES = [
    "task.created",
    "task.claimed",
    "task.escalated",
    "task.completed",
    "task.sla_warning",
    "task.sla_breached",
    "approval.pending",
    "approval.approved",
    "approval.rejected",
    "pipeline.created",
    "pipeline.completed",
    "pipeline.failed",
    "pipeline.blocked",
    "pipeline.stage_changed",
    "deploy.started",
    "deploy.succeeded",
    "deploy.failed",
    "agent.heartbeat",
]


@st.composite
def envelopes(draw: st.DrawFn) -> Any:
    """A ``WsEvent``, sometimes with a key dropped or a value replaced."""
    event_type = draw(st.one_of(st.sampled_from(EVENT_TYPES), text))
    data = draw(payload_for(event_type))
    event: Any = {
        "type": event_type,
        "timestamp": draw(dates),
        "channel": draw(st.sampled_from(["tasks:pending", "tasks:*", "deploys:*", ""])),
        "data": data,
    }
    mutation = draw(st.sampled_from(["none", "none", "drop", "replace", "root"]))
    if mutation == "drop" and data:
        data.pop(draw(st.sampled_from(sorted(data))))
    elif mutation == "replace":
        target = data if data and draw(st.booleans()) else event
        target[draw(st.sampled_from(sorted(target)))] = draw(json_values)
    elif mutation == "root":
        event = draw(json_values)
    return event


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Request bytes: JSON of an envelope (encoded several ways), or broken bytes."""
    kind = draw(
        st.sampled_from(
            ["json", "json", "json", "surrogatepass", "truncated", "bytes", "deep", "long-int"]
        )
    )
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "deep":  # nesting thousands deep (Python's parser recurses)
        depth = draw(st.integers(min_value=60, max_value=6000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        inner = opener * depth + "1" + closer * depth
        return f'{{"type": "task.created", "data": {{"task": {inner}}}}}'.encode()
    if kind == "long-int":  # Python refuses to parse integers of more than 4,300 digits
        digits = draw(st.integers(min_value=25, max_value=6000))
        return (
            '{"type": "task.sla_warning", "timestamp": "2026-11-21T10:00:00Z", "data": '
            '{"taskId": "t-1", "taskTitle": "x", "slaDeadline": "2026-11-21T10:00:00Z", '
            f'"minutesRemaining": {"7" * digits}}}}}'
        ).encode()
    event = draw(envelopes())
    if kind == "surrogatepass":  # lone surrogates as (invalid) UTF-8 bytes
        return json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")
    body = json.dumps(event).encode()  # NaN / Infinity written as such by json.dumps
    if kind == "truncated":
        return body[: draw(st.integers(min_value=0, max_value=max(len(body) - 1, 0)))]
    return body


header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str], dict[str, Any]]:
    """``(body, headers, delivery options)``.

    Two in three are validly signed, well-formed events hostile only in their text; the rest
    are anything: mutated or broken bodies, random or missing header values.
    """
    options = {
        "segment_bytes": draw(
            st.one_of(st.integers(min_value=16, max_value=2048), st.just(1 << 20))
        ),
        "chunked": draw(st.booleans()),
        "chunk_bytes": draw(st.integers(min_value=1, max_value=512)),
        "pause_seconds": 0,
    }
    event_id = f"evt_{uuid.uuid4().hex}"
    if draw(st.sampled_from([True, True, False])):
        body = json.dumps(draw(good_envelopes())).encode()
        headers = signed_headers(
            WEBHOOK_SECRET, body, event_id=event_id, timestamp=int(time.time())
        )
        return body, headers, options
    body = draw(bodies())
    event_id = draw(st.one_of(st.just(event_id), header_text))
    headers = signed_headers(WEBHOOK_SECRET, body, event_id=event_id, timestamp=int(time.time()))
    for name in draw(
        st.sets(
            st.sampled_from(["X-Factory-Timestamp", "X-Factory-Signature", "Content-Type"]),
            max_size=2,
        )
    ):
        headers[name] = draw(header_text)
    headers.update(draw(st.dictionaries(st.sampled_from(["X-Extra", "Accept"]), header_text)))
    return body, headers, options


# ------------------------------------------------------------------ checks


#: The factory's SLA events, announced with the bridge's own ``@here`` (bot.sla_events).
SLA_ANNOUNCEMENTS = ("🚨 SLA breached @here: ", "🔴 SLA breach imminent @here: ")


def pings(message: RecordedMessage) -> list[str]:
    """What ``message`` pings: @everyone/@here, users, roles (Discord ``allowed_mentions``)."""
    found = []
    if message.mentions_everyone:
        found.append("@everyone/@here")
    if message.mentioned_user_ids:
        found.append(f"users {message.mentioned_user_ids}")
    if "<@&" in message.content:
        allowed = message.allowed_mentions
        if allowed is None or "roles" in (allowed.get("parse") or []) or allowed.get("roles"):
            found.append("roles")
    return found


@pytest.fixture
async def fuzz_bridge(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> AsyncIterator[Store]:
    """A running bridge (escalation ladder off) and a store reading its database.

    Discord's per-channel pacing (5 messages per 5 s) is lifted on both sides: every example
    waits for its messages, and pacing is not what this test is about.
    """
    world.discord.channel_rate_limit = 10_000
    process = make_bridge(
        escalation_enabled="false",
        bridge_http_body_timeout_seconds=2,
        discord_channel_rate_limit=10_000,
        discord_channel_rate_window_seconds=1,
    )
    await process.start()
    store = Store(world.database_url)
    try:
        yield store
    finally:
        await store.close()


async def all_processed(store: Store) -> bool:
    """True when the bridge has handled (or parked) every event it stored."""

    def work(conn: Any) -> int:
        query = select(func.count()).select_from(t.events).where(t.events.c.processed_at.is_(None))
        return int(conn.execute(query).scalar_one())

    return await store.db.read(work) == 0


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
async def test_post_events_never_5xx_stores_only_on_202_and_never_pings(
    world: World, fuzz_bridge: Store, request: tuple[bytes, dict[str, str], dict[str, Any]]
) -> None:
    body, headers, options = request
    store = fuzz_bridge
    before = await store.count_events()
    response = await send_segmented(
        "127.0.0.1", world.bridge_port, "/events", body, headers, timeout=20, **options
    )
    assert response.status < 500, (response.status, response.body[:300])
    after = await store.count_events()
    if response.status != 202:
        assert after == before, f"stored on a {response.status}"
    await wait_until(
        lambda: all_processed(store), timeout=20, what="the bridge to process what it accepted"
    )
    for channel in world.guild.channels:
        for message in world.discord.messages(channel.id):
            expected: list[str] = []
            if message.content.startswith(SLA_ANNOUNCEMENTS):  # deliberate, bot/sla_events.py
                expected = ["@everyone/@here"]
                assert message.content.count("@here") == 1
                assert "@everyone" not in message.content
            assert pings(message) == expected, (message.content, message.allowed_mentions)
