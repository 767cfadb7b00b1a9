"""The strict JSON walk is skipped only where it could not refuse anything.

:func:`document_needs_check` lets the webhook and Redis Streams intakes skip
:func:`check_document` for text that cannot hold what it refuses. Whatever it answers, a body or
stream entry is refused exactly when, and with the same reason as, the full walk refuses it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.factory.events import EventValidationError, parse_event
from bot.factory.stream_entries import EntryKind, read_entry
from bot.factory.strict_json import (
    MAX_DEPTH,
    UnacceptableJson,
    check_document,
    document_needs_check,
    loads,
)


def nested(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def full_walk(text: str) -> str | None:
    """What the strict decoder followed by the whole walk says (``None``: accepted)."""
    try:
        check_document(loads(text, check=False))
    except UnacceptableJson as exc:
        return str(exc)
    return None


def with_shortcut(text: str) -> str | None:
    try:
        loads(text)
    except UnacceptableJson as exc:
        return str(exc)
    return None


HOSTILE = [
    nested(MAX_DEPTH),  # the deepest accepted
    nested(MAX_DEPTH + 1),
    '{"a": "\\ud800"}',
    '{"\\udfff": 1}',
    '{"a": "\\uD83D\\uDE00"}',  # a surrogate pair: valid text, walked and accepted
    '{"a": "\\\\ud800"}',  # an escaped backslash: no surrogate, walked and accepted
    '{"a": "[[[[{{{{"}',
    '{"a": NaN}',
    '{"a": 1e999}',
    '{"a": ' + "9" * 31 + "}",
    "\ufeff{}",
    '{"a": "é"}',
]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_body_is_refused_as_the_full_walk_refuses_it(text: str) -> None:
    assert with_shortcut(text) == full_walk(text)
    assert with_shortcut(text.encode()) == full_walk(text)


def test_the_shortcut_walks_whatever_could_be_refused() -> None:
    assert not document_needs_check('{"a": [1, 2.5, "x", null, true]}')
    assert document_needs_check(nested(MAX_DEPTH + 1))
    assert not document_needs_check(nested(MAX_DEPTH))
    assert document_needs_check(nested(MAX_DEPTH), level=1)  # a stream entry's data
    assert document_needs_check('{"a": "\\ud800"}')
    assert document_needs_check(b'{"a": "\\udc00"}')
    assert document_needs_check('{"a": "\ud800"}')  # a lone surrogate in text itself


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**35), 10**35)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=80,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, ascii_only=st.booleans(), level=st.sampled_from([0, 1]))
def test_whatever_the_shortcut_skips_the_walk_accepts(
    value: Any, ascii_only: bool, level: int
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        decoded = loads(text, check=False)
    except UnacceptableJson:
        return  # refused by the decoder, before any walk
    document = {"data": decoded} if level else decoded
    if not document_needs_check(text, level=level):
        check_document(document)  # must not raise


def stream_fields(data: str, **extra: str) -> dict[bytes, bytes]:
    fields = {
        "type": "pipeline.stage_changed",
        "timestamp": "2026-11-28T10:00:00Z",
        "data": data,
        **extra,
    }
    return {k.encode(): v.encode("utf-8", "surrogatepass") for k, v in fields.items()}


def walk_reason(body: dict[str, Any]) -> str:
    with pytest.raises(EventValidationError) as caught:
        parse_event(body)  # the full walk
    return f"malformed stream entry: {caught.value.field}: {caught.value.message}"


@pytest.mark.parametrize(
    "data",
    [
        nested(MAX_DEPTH - 1),  # 64 levels with the envelope: refused
        '{"pipelineId": "\\ud800"}',
        '{"\\udfff": 1}',
    ],
)
def test_a_stream_entry_is_refused_with_the_full_walks_reason(data: str) -> None:
    entry = read_entry("factory.pipelines", "1-0", stream_fields(data))
    body = {
        "type": "pipeline.stage_changed",
        "timestamp": "2026-11-28T10:00:00Z",
        "data": json.loads(data),
    }
    assert entry.kind is EntryKind.MALFORMED
    assert entry.error == walk_reason(body)


def test_a_stream_entry_just_within_the_nesting_limit_is_read() -> None:
    entry = read_entry("factory.pipelines", "1-0", stream_fields(nested(MAX_DEPTH - 2)))
    # the walk let it through; the payload model then refuses it for its own reasons
    assert entry.kind is EntryKind.MALFORMED
    assert "nested deeper" not in (entry.error or "")


def test_a_lone_surrogate_in_a_text_field_is_refused_as_by_the_walk() -> None:
    data = json.dumps(
        {
            "pipelineId": "p",
            "pipelineName": "n",
            "fromStage": "a",
            "toStage": "b",
            "triggeredBy": "c",
        }
    )
    fields: dict[str | bytes, str | bytes] = {
        "type": "pipeline.stage_changed",
        "timestamp": "2026-11-28T10:00:00Z",
        "data": data,
        "channel": "pipe\ud800",
    }
    entry = read_entry("factory.pipelines", "1-0", fields)
    body = {
        "type": "pipeline.stage_changed",
        "timestamp": "2026-11-28T10:00:00Z",
        "data": json.loads(data),
        "channel": "pipe\ud800",
    }
    assert entry.kind is EntryKind.MALFORMED
    assert entry.error == walk_reason(body)
