"""Entries of the factory's Redis streams (contract §7.7 ``RedisStreamEvent``) read as events.

An entry's fields are ``type``, ``timestamp``, ``data`` (the event payload as a JSON string) and
``source`` (the service that produced it); its stream entry id (``<ms>-<seq>``) is its id. An
entry is rebuilt as the ``WsEvent`` a webhook would carry, ``{"type", "timestamp", "data"}`` (plus
``channel`` when the entry has one), and goes through the same checks as a webhook body:
:func:`bot.factory.strict_json.loads` for the ``data`` text (UTF-8, no ``NaN``, nesting, long
integers …, at most 1 MiB like a webhook body) and :func:`bot.factory.events.parse_event`.

Which id the stored event gets (the de-duplication rule)
--------------------------------------------------------
A webhook's id is its ``X-Factory-Event-Id`` header, which a stream entry does not carry, and a
stream entry id is unique only within its stream (two streams may both hold ``…-0``). So:

1. when ``data`` carries the event's own id (``data.eventId``, 1–200 printable ASCII
   characters, the rule of ``X-Factory-Event-Id``) that is the event id: a webhook delivery of
   the same event with that id is a duplicate by id, whichever came first;
2. otherwise the id is ``redis:<stream>:<entry id>`` (an entry claimed again after a crash
   between store and ``XACK`` is a duplicate by id);
3. in both cases the store also de-duplicates by content (:func:`bot.store.fingerprint.
   event_fingerprint` of ``type``, ``timestamp`` and ``data``, not the channel): the same event
   delivered by webhook or WebSocket under another id is stored once more but acted on once.

An entry that fails the checks is *malformed*: it is stored already failed with the reason
(never acted on) so that it can be looked at, and acknowledged so that it never blocks the
stream. A well-formed entry of a type the bridge does not handle is *ignored* (acknowledged,
not stored), as a webhook of that type is.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.factory.events import EventValidationError, FactoryEvent, UnknownEventType, parse_event
from bot.factory.intake import MAX_BODY_BYTES
from bot.factory.strict_json import (
    UnacceptableJson,
    document_needs_check,
    has_lone_surrogate,
    loads,
)
from bot.store import NewEvent

__all__ = [
    "MAX_KEPT_FIELD_CHARS",
    "SOURCE",
    "EntryKind",
    "StreamEntry",
    "read_entry",
    "stream_event_id",
]

#: ``events.source`` of events read from Redis Streams.
SOURCE = "redis"
#: Longest text kept per field of a malformed entry (the rest is cut, marked with "…").
MAX_KEPT_FIELD_CHARS = 4096
#: An event id: 1–200 printable ASCII characters (the rule of ``X-Factory-Event-Id``).
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,200}")
#: Fields every entry must have (contract §7.7; ``source`` is informational only).
_REQUIRED = ("type", "timestamp", "data")
#: Longest ``events.type`` (bot.store.tables).
_MAX_TYPE_CHARS = 64


class EntryKind(enum.Enum):
    """What an entry turned out to be."""

    #: A valid event of a type the bridge handles: stored, then acted on.
    EVENT = "event"
    #: Fails the checks: stored as failed with the reason, never acted on.
    MALFORMED = "malformed"
    #: Valid, of a type the bridge does not handle: acknowledged, not stored.
    IGNORED = "ignored"
    #: Deleted from the stream (trimmed) while pending: acknowledged, nothing to store.
    GONE = "gone"


@dataclass(frozen=True)
class StreamEntry:
    """One stream entry, read.

    Attributes
    ----------
    stream, entry_id:
        Where it is: the stream's name and the entry id (``<ms>-<seq>``), for ``XACK``.
    kind:
        See :class:`EntryKind`.
    event_id:
        The id it is stored under (module docstring), ``""`` for ignored and gone entries.
    type:
        Its event type (for a malformed entry what it claimed, cut to 64 characters).
    body:
        The ``WsEvent`` to store; for a malformed entry ``{"stream", "entryId", "fields"}``.
    event:
        The validated event (``None`` unless :attr:`EntryKind.EVENT`).
    error:
        Why a malformed entry was refused (``None`` otherwise).
    source:
        The producing service (the entry's ``source`` field), for the log.
    """

    stream: str
    entry_id: str
    kind: EntryKind
    event_id: str = ""
    type: str = ""
    body: dict[str, Any] | None = None
    event: FactoryEvent | None = None
    error: str | None = None
    source: str = ""

    def to_store(self) -> NewEvent | None:
        """What :meth:`bot.store.Store.record_events` stores, or ``None`` (ignored, gone)."""
        if self.kind is EntryKind.EVENT or self.kind is EntryKind.MALFORMED:
            assert self.body is not None
            return NewEvent(self.event_id, self.type, self.body, SOURCE, self.error)
        return None


def stream_event_id(stream: str, entry_id: str, data: object) -> str:
    """The id an entry's event is stored under (rules 1 and 2 of the module docstring).

    Parameters
    ----------
    stream, entry_id:
        The stream's name and the entry's id.
    data:
        The decoded ``data`` field (any JSON value; only an object can carry ``eventId``).

    Returns
    -------
    str
        ``data["eventId"]`` when it is 1–200 printable ASCII characters, else
        ``redis:<stream>:<entry id>``, or ``redis:`` + SHA-256 hex of ``<stream>:<entry id>``
        when that would be longer than 200 characters (``events.event_id``).
    """
    own = data.get("eventId") if isinstance(data, dict) else None
    if isinstance(own, str) and _EVENT_ID.fullmatch(own):
        return own
    event_id = f"redis:{stream}:{entry_id}"
    if len(event_id) <= 200:
        return event_id
    return "redis:" + hashlib.sha256(f"{stream}:{entry_id}".encode()).hexdigest()


def _text(value: bytes | str) -> str:
    """A field as text for a malformed entry's record (never raises; long text cut)."""
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
    if len(text) > MAX_KEPT_FIELD_CHARS:
        return text[:MAX_KEPT_FIELD_CHARS] + "…"
    return text


def _malformed(
    stream: str, entry_id: str, fields: Mapping[bytes | str, bytes | str], reason: str
) -> StreamEntry:
    kept = {_text(key): _text(value) for key, value in fields.items()}
    claimed = kept.get("type", "")[:_MAX_TYPE_CHARS] or "(none)"
    return StreamEntry(
        stream=stream,
        entry_id=entry_id,
        kind=EntryKind.MALFORMED,
        event_id=stream_event_id(stream, entry_id, None),
        type=claimed,
        body={"stream": stream, "entryId": entry_id, "fields": kept},
        error=f"malformed stream entry: {reason}",
        source=kept.get("source", ""),
    )


def read_entry(
    stream: str, entry_id: str, fields: Mapping[bytes | str, bytes | str] | None
) -> StreamEntry:
    """Read one entry as ``XREADGROUP``/``XAUTOCLAIM`` return it; never raises.

    Parameters
    ----------
    stream, entry_id:
        The stream's name and the entry's id.
    fields:
        Its fields, raw bytes (or text); empty or ``None`` for an entry deleted (``XDEL``,
        trimmed) while pending.

    Returns
    -------
    StreamEntry
        :attr:`EntryKind.EVENT`, :attr:`~EntryKind.MALFORMED` with the reason (a missing
        field, a field that is not UTF-8, ``data`` that is not a JSON object the bridge can take
        or over 1 MiB, a payload that fails validation with its field, e.g.
        ``data.task.id: …``), :attr:`~EntryKind.IGNORED` or :attr:`~EntryKind.GONE`.
    """
    if not fields:  # XADD needs a field: no fields (or nil) means deleted while pending
        return StreamEntry(stream, entry_id, EntryKind.GONE)
    text: dict[str, str] = {}
    given_as_text = False  # bytes decoded strictly hold no lone surrogate; text may
    for key, value in fields.items():
        try:
            name = key.decode("utf-8") if isinstance(key, bytes) else key
            if isinstance(value, bytes):
                text[name] = value.decode("utf-8")
            else:
                text[name] = value
                given_as_text = True
        except UnicodeDecodeError:
            return _malformed(stream, entry_id, fields, f"field {_text(key)!r} is not UTF-8")
    missing = [name for name in _REQUIRED if name not in text]
    if missing:
        return _malformed(stream, entry_id, fields, f"missing field {missing[0]!r}")
    raw_data = fields.get(b"data", fields.get("data", b""))
    if len(raw_data) > MAX_BODY_BYTES:
        return _malformed(stream, entry_id, fields, f"data is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = loads(text["data"], check=False)  # parse_event checks the whole document
    except UnacceptableJson as exc:
        where = f"data.{exc.field}" if exc.field else "data"
        return _malformed(stream, entry_id, fields, f"{where}: {exc.message}")
    body: dict[str, Any] = {"type": text["type"], "timestamp": text["timestamp"], "data": data}
    if "channel" in text:
        body["channel"] = text["channel"]
    # the walk of the whole rebuilt document, unless nothing in it could be refused: the data
    # text one level down, the envelope's texts free of lone surrogates (strict_json)
    check = document_needs_check(text["data"], level=1) or (
        given_as_text
        and any(
            has_lone_surrogate(body[key]) for key in ("type", "timestamp", "channel") if key in body
        )
    )
    try:
        event = parse_event(body, check=check)
    except UnknownEventType:
        return StreamEntry(stream, entry_id, EntryKind.IGNORED, type=text["type"][:64])
    except EventValidationError as exc:
        return _malformed(stream, entry_id, fields, f"{exc.field}: {exc.message}")
    return StreamEntry(
        stream=stream,
        entry_id=entry_id,
        kind=EntryKind.EVENT,
        event_id=stream_event_id(stream, entry_id, data),
        type=event.type,
        body=body,
        event=event,
        source=text.get("source", ""),
    )
