"""The factory client's retry policy (contract §7.1): which answers are retried and how long
to wait before the next try.

At most 3 retries on 408, 429, 500, 502, 503, 504 and on timeouts / connection errors;
exponential backoff doubling up to 30 s plus up to 0.5 s of jitter; a ``Retry-After`` header
on 429/503 is honoured. :class:`bot.factory.client.FactoryClient` applies it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

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

        ``Retry-After`` (seconds) wins when the factory sent one; otherwise exponential
        backoff with jitter.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay_seconds)
        backoff = self.base_delay_seconds * (2 ** (attempt - 1))
        jitter = random.uniform(0, self.jitter_seconds) if self.base_delay_seconds > 0 else 0.0
        return min(backoff, self.max_delay_seconds) + jitter


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (RFC 9110 §10.2.3, the delay-seconds form), or
    ``None`` when absent or not a number."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


#: Request errors raised before anything reached the factory (the request was not sent).
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)

#: Retryable statuses a gateway answers when the factory behind it may have acted (502, 504).
GATEWAY_STATUS = frozenset({502, 504})
