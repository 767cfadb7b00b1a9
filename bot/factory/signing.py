"""Signed webhook format for factory events delivered to the bridge.

The factory's design documents ask for HMAC-SHA256 webhook signatures but leave the wire format
open, so the bridge defines it here. The factory POSTs one ``WsEvent`` JSON document (contract
§1.6) to the bridge's ``POST /events`` with three headers:

``X-Factory-Event-Id``
    Unique per event; receivers use it to drop duplicate deliveries.
``X-Factory-Timestamp``
    When the delivery was signed, in integer Unix seconds (UTC).
``X-Factory-Signature``
    ``sha256=<hex>`` where ``<hex>`` is the lowercase hex HMAC-SHA256 of
    ``"<timestamp>.<raw body>"`` keyed with the shared secret (UTF-8). The timestamp is the exact
    header text, so a replayed body cannot be given a fresh timestamp without the secret.

Receivers call :func:`verify` with the raw request bytes before parsing them. Deliveries whose
timestamp is more than ``tolerance_seconds`` (default 300 s) away from the receiver's clock are
rejected to bound replays; together with the event id this makes a captured delivery useless.

Rotating the secret without downtime: while the receiver knows two secrets (the new current one
and the previous one), :func:`verify_rotating` accepts a signature made with either and says
which matched, so the operator can see when the sender has switched (README, "Rotating the
webhook secret").
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_PREFIX",
    "TIMESTAMP_HEADER",
    "SecretUsed",
    "SignatureError",
    "sign",
    "signed_headers",
    "verify",
    "verify_rotating",
]

EVENT_ID_HEADER = "X-Factory-Event-Id"
"""Header carrying the unique id of the delivered event."""

TIMESTAMP_HEADER = "X-Factory-Timestamp"
"""Header carrying the signing time in integer Unix seconds."""

SIGNATURE_HEADER = "X-Factory-Signature"
"""Header carrying ``sha256=<hex HMAC-SHA256>``."""

SIGNATURE_PREFIX = "sha256="
"""Scheme prefix of the signature header value."""

DEFAULT_TOLERANCE_SECONDS = 300.0
"""Largest accepted distance, in seconds, between the signed timestamp and the receiver's clock."""

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


class SecretUsed(enum.StrEnum):
    """Which of the receiver's secrets a genuine delivery was signed with."""

    CURRENT = "current"
    """``FACTORY_WEBHOOK_SECRET``."""
    PREVIOUS = "previous"
    """``FACTORY_WEBHOOK_SECRET_PREVIOUS`` (only while a rotation is under way)."""


class SignatureError(ValueError):
    """A webhook delivery failed signature verification.

    The message never contains the secret or the expected signature, only the reason.

    Parameters
    ----------
    reason
        Short machine-friendly reason, one of ``"missing signature"``, ``"missing timestamp"``,
        ``"malformed signature"``, ``"malformed timestamp"``, ``"timestamp outside tolerance"`` or
        ``"signature mismatch"``.

    Attributes
    ----------
    reason : str
        The reason given at construction.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"webhook signature rejected: {reason}")
        self.reason = reason


def _require_secret(secret: str) -> bytes:
    if not secret:
        raise ValueError("webhook secret must not be empty")
    return secret.encode("utf-8")


def _digest(key: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Compute the signature header value for one delivery.

    Parameters
    ----------
    secret
        The shared webhook secret (non-empty).
    timestamp
        Signing time in integer Unix seconds (UTC); the same value goes in ``X-Factory-Timestamp``.
    body
        The exact bytes of the request body.

    Returns
    -------
    str
        ``"sha256=<64 lowercase hex digits>"``.

    Raises
    ------
    ValueError
        If ``secret`` is empty or ``timestamp`` is negative.
    """
    if timestamp < 0:
        raise ValueError("timestamp must be non-negative Unix seconds")
    return SIGNATURE_PREFIX + _digest(_require_secret(secret), str(int(timestamp)), body)


def signed_headers(secret: str, body: bytes, *, event_id: str, timestamp: int) -> dict[str, str]:
    """Build the three webhook headers for one delivery.

    Parameters
    ----------
    secret
        The shared webhook secret (non-empty).
    body
        The exact bytes that will be sent as the request body.
    event_id
        Unique id of the event (``X-Factory-Event-Id``).
    timestamp
        Signing time in integer Unix seconds (UTC).

    Returns
    -------
    dict[str, str]
        ``{EVENT_ID_HEADER: ..., TIMESTAMP_HEADER: ..., SIGNATURE_HEADER: ...}``; the caller adds
        ``Content-Type: application/json`` itself.

    Raises
    ------
    ValueError
        If ``secret`` is empty or ``timestamp`` is negative.
    """
    return {
        EVENT_ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(int(timestamp)),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def verify(
    secret: str,
    *,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Check one delivery's signature and freshness; return quietly if it is genuine.

    The comparison is constant-time (:func:`hmac.compare_digest`). A timestamp exactly
    ``tolerance_seconds`` away from ``now`` is still accepted.

    Parameters
    ----------
    secret
        The shared webhook secret (non-empty).
    timestamp
        Value of ``X-Factory-Timestamp`` as received (integer Unix seconds), or ``None``.
    signature
        Value of ``X-Factory-Signature`` as received (``sha256=<hex>``), or ``None``.
    body
        The exact raw bytes of the request body, before any parsing.
    now
        The receiver's current time in Unix seconds (from its injected clock).
    tolerance_seconds
        Largest accepted ``abs(now - timestamp)`` in seconds (default 300).

    Raises
    ------
    SignatureError
        If a header is missing or malformed, the timestamp is outside the tolerance, or the
        signature does not match; ``reason`` says which.
    ValueError
        If ``secret`` is empty (a configuration error, deliberately not a ``SignatureError``).
    """
    key = _require_secret(secret)
    if not signature:
        raise SignatureError("missing signature")
    if not timestamp:
        raise SignatureError("missing timestamp")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureError("malformed timestamp")
    scheme, sep, given_hex = signature.strip().partition("=")
    if not sep or scheme.lower() != SIGNATURE_PREFIX[:-1] or not _HEX_SHA256.fullmatch(given_hex):
        raise SignatureError("malformed signature")
    if abs(now - int(timestamp)) > tolerance_seconds:
        raise SignatureError("timestamp outside tolerance")
    expected = _digest(key, timestamp, body)
    if not hmac.compare_digest(expected.encode("ascii"), given_hex.lower().encode("ascii")):
        raise SignatureError("signature mismatch")


def verify_rotating(
    secret: str,
    previous_secret: str | None,
    *,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> SecretUsed:
    """Like :func:`verify`, accepting a signature by the current or, when given, the previous secret.

    Both secrets are always tried (constant work whichever matched), each comparison
    constant-time. With ``previous_secret`` ``None`` or empty this is exactly :func:`verify`.

    Parameters
    ----------
    secret
        The current webhook secret (non-empty).
    previous_secret
        The secret being rotated out, or ``None`` when no rotation is under way.
    timestamp, signature, body, now, tolerance_seconds
        As for :func:`verify`.

    Returns
    -------
    SecretUsed
        Which secret the delivery was signed with.

    Raises
    ------
    SignatureError
        As for :func:`verify`; ``"signature mismatch"`` when neither secret matches.
    ValueError
        If ``secret`` is empty.
    """
    try:
        verify(
            secret,
            timestamp=timestamp,
            signature=signature,
            body=body,
            now=now,
            tolerance_seconds=tolerance_seconds,
        )
        current_ok = True
    except SignatureError as exc:
        if exc.reason != "signature mismatch" or not previous_secret:
            raise
        current_ok = False
    if previous_secret:
        try:
            verify(
                previous_secret,
                timestamp=timestamp,
                signature=signature,
                body=body,
                now=now,
                tolerance_seconds=tolerance_seconds,
            )
            previous_ok = True
        except SignatureError:
            previous_ok = False
        if not current_ok and previous_ok:
            return SecretUsed.PREVIOUS
        if not current_ok:
            raise SignatureError("signature mismatch")
    return SecretUsed.CURRENT
