"""A stable content fingerprint of a factory event (``WsEvent``, contract §1.6).

A WebSocket frame carries no event id, and the same event may reach the bridge two or three
times: as a signed webhook (id ``X-Factory-Event-Id``), on the WebSocket, and as a Redis Streams
entry (contract §7.7 ``RedisStreamEvent``: ``type``, ``timestamp`` and ``data``, but no channel).
The fingerprint — the SHA-256 of the canonical JSON (keys sorted, no insignificant whitespace,
UTF-8) of the event's ``type``, ``timestamp`` and ``data`` — is the same for every delivery, so
the WebSocket intake uses it as the event id and the bridge uses it to act on an event once
whichever intake delivered it first. The ``channel`` (where the event was published, absent from
a stream entry) and any other envelope key are not part of it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["FINGERPRINT_KEYS", "canonical_json", "encode_event", "event_fingerprint"]

#: The keys of a ``WsEvent`` that make up its content (contract §1.6 and §7.7).
FINGERPRINT_KEYS = ("type", "timestamp", "data")


#: The canonical encoder, built once (``json.dumps`` with options builds one per call).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(raw: dict[str, Any]) -> str:
    """The canonical text of a decoded ``WsEvent``: sorted keys, compact separators."""
    return _CANONICAL.encode(raw)


def event_fingerprint(raw: dict[str, Any]) -> str:
    """64 lowercase hex digits: SHA-256 of :func:`canonical_json` of ``raw``.

    Parameters
    ----------
    raw:
        The decoded ``WsEvent`` ``{"type", "timestamp", "channel", "data"}`` as received (or a
        stream entry rebuilt as one, without ``channel``).

    Returns
    -------
    str
        Equal for two deliveries of the same event (same type, timestamp and data), whatever
        their key order, whitespace, channel or intake.
    """
    content = {key: raw[key] for key in FINGERPRINT_KEYS if key in raw}
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


def encode_event(raw: dict[str, Any]) -> tuple[str, str]:
    """The text to store for a decoded ``WsEvent`` and its fingerprint, from one encoding.

    The stored text is :func:`canonical_json` of the whole event (envelope keys included), and
    the fingerprint is taken from that same text when it can be: when the event has no key
    beside :data:`FINGERPRINT_KEYS` the two texts are one; when the only other key is a text
    ``channel`` (a webhook), it sorts first and the fingerprint's text is the stored one
    without it. Otherwise the content is encoded a second time (:func:`event_fingerprint`).

    Parameters
    ----------
    raw:
        The decoded event; its strings must be valid Unicode (no lone surrogate: the intakes
        refuse those, :mod:`bot.factory.strict_json`).

    Returns
    -------
    tuple[str, str]
        (JSON text to store, 64 lowercase hex digits equal to ``event_fingerprint(raw)``).

    Raises
    ------
    UnicodeEncodeError
        When a string holds a lone surrogate.
    """
    text = canonical_json(raw)
    extra = raw.keys() - FINGERPRINT_KEYS
    if not extra:
        content = text
    else:
        channel = raw.get("channel")
        prefix = '{"channel":' + json.dumps(channel, ensure_ascii=False) + ","
        if extra == {"channel"} and isinstance(channel, str) and text.startswith(prefix):
            content = "{" + text[len(prefix) :]
        else:
            return text, event_fingerprint(raw)
    return text, hashlib.sha256(content.encode("utf-8")).hexdigest()
