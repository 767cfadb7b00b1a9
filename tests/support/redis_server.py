"""The Redis server the tests use (``TEST_REDIS_URL``), and stream names no other test shares.

The test machines and CI have Redis on 127.0.0.1:6379. ``TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/0``) names it; when it is set and Redis cannot be reached the tests
**fail** (CI must not pass without them), when it is unset they are skipped with a reason.
Every test uses its own stream names (:func:`unique_streams`) so that runs in parallel do not
collide, and deletes them at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["DEFAULT_TEST_REDIS_URL", "redis_or_skip", "redis_url_for_tests", "unique_streams"]

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url_for_tests() -> str:
    """``TEST_REDIS_URL`` or the default ``redis://127.0.0.1:6379/0``."""
    return os.environ.get("TEST_REDIS_URL") or DEFAULT_TEST_REDIS_URL


def unique_streams(*names: str) -> tuple[str, ...]:
    """``names`` prefixed with ``streams-test-<random>-`` (unique to the caller)."""
    prefix = f"streams-test-{uuid.uuid4().hex[:12]}-"
    return tuple(prefix + name for name in names)


async def redis_or_skip(streams: tuple[str, ...]) -> AsyncIterator[aioredis.Redis]:
    """A client of the test Redis; deletes ``streams`` at the end.

    Skips the test when ``TEST_REDIS_URL`` is unset and Redis does not answer; fails it when
    ``TEST_REDIS_URL`` is set (CI).
    """
    url = redis_url_for_tests()
    client = aioredis.from_url(url, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        if os.environ.get("TEST_REDIS_URL"):
            pytest.fail(f"TEST_REDIS_URL={url} does not answer: {exc}")
        pytest.skip(
            f"no Redis at {url} ({exc}): start one (redis-server) or set TEST_REDIS_URL "
            "to run the Redis Streams tests"
        )
    try:
        yield client
    finally:
        if streams:
            await client.delete(*streams)
        await client.aclose()
