"""Factory URLs are built from escaped path segments: an id can never change the path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from bot.factory.client import FactoryClient, FactoryError


def recording_client() -> tuple[FactoryClient, list[bytes]]:
    """A client whose factory answers 404 to everything, recording the raw paths asked."""
    paths: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path)
        return httpx.Response(
            404, json={"ok": False, "error": {"code": "NOT_FOUND", "message": "no such task"}}
        )

    client = FactoryClient("http://factory.test/v1", "key", transport=httpx.MockTransport(handler))
    return client, paths


CALLS: dict[str, Callable[[FactoryClient, str], Awaitable[object]]] = {
    "get": lambda c, task_id: c.get_task(task_id),
    "claim": lambda c, task_id: c.claim_task(task_id, user_id=None, idempotency_key="k"),
    "complete": lambda c, task_id: c.complete_task(
        task_id, decision="approved", notes=None, decision_data={}, idempotency_key="k"
    ),
    "reassign": lambda c, task_id: c.reassign_task(
        task_id, assignee_id="u", reason="r", idempotency_key="k"
    ),
}
SUFFIX = {"get": b"", "claim": b"/claim", "complete": b"/complete", "reassign": b"/reassign"}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize(
    ("task_id", "segment"),
    [
        ("..", b"%2E%2E"),
        (".", b"%2E"),
        ("a/b", b"a%2Fb"),
        ("a?b#c", b"a%3Fb%23c"),
        ("%2e%2e", b"%252e%252e"),
        ("t x", b"t%20x"),
        ("t-1_A", b"t-1_A"),
    ],
)
async def test_every_task_url_escapes_the_id(call: str, task_id: str, segment: bytes) -> None:
    client, paths = recording_client()
    with pytest.raises(FactoryError):
        await CALLS[call](client, task_id)
    await client.aclose()
    assert paths == [b"/v1/tasks/" + segment + SUFFIX[call]]
