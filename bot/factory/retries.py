"""The factory client's retry policy (contract §7.1): which answers are retried and how long
to wait before the next try.

At most 3 retries on 408, 429, 500, 502, 503, 504 and on timeouts / connection errors;
exponential backoff doubling up to 30 s plus up to 0.5 s of jitter; a ``Retry-After`` header
on 429/503 (in seconds or as an HTTP-date) is honoured, up to 30 s. :class:`bot.factory.client.FactoryClient` applies it.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

__all__ = [
    "GATEWAY_STATUS",
    "NOT_SENT",
    "RETRYABLE_STATUS",
    "RetryPolicy",
    "retry_after_seconds",
]

#: Statuses worth another try (contract §7.1).
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Client retry policy of contract §7.1 (seconds)."""

    max_retries: int = 3
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 30.0
    jitter_seconds: float = 0.5

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based).

        ``Retry-After`` (seconds) wins when the factory sent a finite one, bounded to
        0–``max_delay_seconds``; otherwise exponential backoff with jitter.
        """
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), self.max_delay_seconds)
        backoff = self.base_delay_seconds * (2 ** (attempt - 1))
        jitter = random.uniform(0, self.jitter_seconds) if self.base_delay_seconds > 0 else 0.0
        return min(backoff, self.max_delay_seconds) + jitter

    def longest_seconds(self, timeout_seconds: float) -> float:
        """How long one call can go on, seconds: every attempt taking its whole
        ``timeout_seconds`` and the longest backoff between them (a ``Retry-After`` aside)."""
        jitter = self.jitter_seconds if self.base_delay_seconds > 0 else 0.0
        waits = sum(
            min(self.base_delay_seconds * 2 ** (n - 1), self.max_delay_seconds) + jitter
            for n in range(1, self.max_retries + 1)
        )
        return timeout_seconds * (self.max_retries + 1) + waits


def retry_after_seconds(
    response: httpx.Response, *, now: Callable[[], datetime] | None = None
) -> float | None:
    """The ``Retry-After`` header in seconds, or ``None`` when absent or unreadable.

    RFC 9110 §10.2.3 allows delay-seconds (``"7"``) or an HTTP-date (``"Wed, 21 Oct 2026
    07:28:00 GMT"``, then the seconds from ``now``, a UTC clock, to it; a date in the past
    is 0). A value that is neither — or not finite (``"nan"``, ``"inf"``, which ``float``
    reads and ``asyncio.sleep`` would wait on for ever) — is ``None``: the caller falls back
    to its backoff.
    """
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110: an HTTP-date is always GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or _utc_now)()).total_seconds()
    return seconds if math.isfinite(seconds) else None


def _utc_now() -> datetime:
    return datetime.now(UTC)


#: Request errors raised before anything reached the factory (the request was not sent).
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)

#: Retryable statuses a gateway answers when the factory behind it may have acted (502, 504).
GATEWAY_STATUS = frozenset({502, 504})
