"""A stable content fingerprint of a factory event (``WsEvent``, contract §1.6).

A WebSocket frame carries no event id, and the same event may reach the bridge twice: once as a
signed webhook (id ``X-Factory-Event-Id``) and once on the WebSocket. The fingerprint — the
SHA-256 of the event's canonical JSON (keys sorted, no insignificant whitespace, UTF-8) — is the
same for both deliveries, so the WebSocket intake uses it as the event id and the bridge uses it
to act on an event once whichever intake delivered it first.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "event_fingerprint"]


def canonical_json(raw: dict[str, Any]) -> str:
    """The canonical text of a decoded ``WsEvent``: sorted keys, compact separators."""
    return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_fingerprint(raw: dict[str, Any]) -> str:
    """64 lowercase hex digits: SHA-256 of :func:`canonical_json` of ``raw``.

    Parameters
    ----------
    raw:
        The decoded ``WsEvent`` ``{"type", "timestamp", "channel", "data"}`` as received.

    Returns
    -------
    str
        Equal for two deliveries of the same event (same type, timestamp, channel and data),
        whatever their key order or whitespace.
    """
    return hashlib.sha256(canonical_json(raw).encode("utf-8")).hexdigest()
