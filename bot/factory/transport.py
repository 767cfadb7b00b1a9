"""The wire side of one factory request: an id as one URL path segment, and an answer read
whole under a size cap (:data:`~bot.factory.answers.MAX_ANSWER_BYTES`)."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from .answers import MAX_ANSWER_BYTES, Unreadable

__all__ = ["read_capped", "segment"]


def segment(value: str) -> str:
    """``value`` as one URL path segment (RFC 3986 §3.3): every reserved character escaped.

    ``/``, ``?``, ``#`` and ``%`` are percent-encoded, and so are the dots of ``.`` and ``..``,
    which would otherwise be resolved as "this folder" / "the parent folder" (§5.2.4) and make
    ``tasks/..`` call ``GET /v1/`` instead of a task.
    """
    escaped = quote(value, safe="")
    return escaped.replace(".", "%2E") if escaped in (".", "..") else escaped


async def read_capped(http: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """Send ``request`` and read its answer, refusing a body over ``MAX_ANSWER_BYTES``
    before it is all in memory (the decoded bytes are counted, so a compressed body cannot
    expand past it: a factory answering nonsense must not exhaust the bridge's memory).

    Returns
    -------
    httpx.Response
        The answer read, holding the decoded body, without the ``Content-Encoding`` header
        that no longer applies to it, with its reason phrase (what an error is told by:
        :mod:`bot.factory.errors`).

    Raises
    ------
    Unreadable
        When the body is over the cap (declared by ``Content-Length`` or counted).
    httpx.RequestError
        When the request or the answer failed on the way (as ``AsyncClient.send``).
    """
    response = await http.send(request, stream=True)
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
            raise Unreadable(f"a body of {int(declared):,} bytes (at most {MAX_ANSWER_BYTES:,})")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise Unreadable(f"a body over {MAX_ANSWER_BYTES:,} bytes")
            chunks.append(chunk)
    finally:
        await response.aclose()
    kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"]
    extensions = {
        k: v for k, v in response.extensions.items() if k in ("reason_phrase", "http_version")
    }
    return httpx.Response(
        response.status_code,
        headers=kept,
        content=b"".join(chunks),
        request=request,
        extensions=extensions,
    )
