"""Reading the factory's success answers: the envelope (contract §1.3) and the shape of ``data``.

A success status whose body cannot be understood raises :class:`Unreadable`; the client
(:class:`bot.factory.client.FactoryClient`) counts it as a failed attempt and retries it like
a 503 (contract §7.1), then raises :class:`~bot.factory.errors.FactoryBadResponse`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from escalation.models import Task

__all__ = [
    "BulkResult",
    "Page",
    "Unreadable",
    "bulk_result",
    "data_object",
    "envelope",
    "page_of",
    "parsed",
    "task_data",
]


class Unreadable(Exception):
    """A success answer that does not parse (one failed attempt, retried by the client)."""


@dataclass(frozen=True)
class Page:
    """One page of a list endpoint: the items and the contract's pagination meta."""

    items: list[dict[str, Any]]
    page: int
    total_pages: int
    has_next: bool
    total: int


@dataclass(frozen=True)
class BulkResult:
    """Answer of ``POST /v1/tasks/bulk``: ids that succeeded and per-item failures."""

    succeeded: list[str]
    failed: list[dict[str, str]]


def envelope(response: httpx.Response) -> dict[str, Any]:
    """The success envelope of ``response`` (contract §1.3 ``ApiResponse``).

    Raises ``Unreadable`` for an empty body, a body that is not JSON (an HTML page), JSON
    that is not an object, or ``"ok": false`` under a success status.
    """
    if not response.content:
        raise Unreadable("an empty body")
    try:
        body = response.json()
    except (ValueError, RecursionError) as exc:
        kind = response.headers.get("Content-Type", "no content type").split(";")[0]
        raise Unreadable(f"a body that is not JSON ({kind}): {exc}") from None
    if not isinstance(body, dict):
        raise Unreadable(f"JSON that is not an object ({type(body).__name__})")
    if body.get("ok") is False:
        raise Unreadable('"ok": false under a success status')
    return body


def parsed(parse: Callable[[dict[str, Any]], Any], body: dict[str, Any]) -> Any:
    """``parse(body)``; a body of the wrong shape raises ``Unreadable``."""
    try:
        return parse(body)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise Unreadable(f"data of the wrong shape: {str(exc)[:300]}") from None


def task_data(body: dict[str, Any]) -> Task:
    """The :class:`Task` in a success envelope's ``data``."""
    return Task.model_validate(body["data"])


def data_object(body: dict[str, Any]) -> dict[str, Any]:
    """A success envelope's ``data`` when it is a JSON object."""
    data = body["data"]
    if not isinstance(data, dict):
        raise TypeError(f"data is {type(data).__name__}, not an object")
    return data


def page_of(body: dict[str, Any], page: int) -> Page:
    """One page of a list answer: ``data`` must be a list (its items are read by the caller)."""
    data = body.get("data")
    if data is None:
        data = []
    if not isinstance(data, list):
        raise TypeError(f"data is {type(data).__name__}, not a list")
    meta = body.get("meta") or {}
    pagination = (meta.get("pagination") if isinstance(meta, dict) else None) or {}
    return Page(
        items=list(data),
        page=int(pagination.get("page", page)),
        total_pages=int(pagination.get("totalPages", 1)),
        # only a JSON true: "false" (a string) or 1 must not keep the bridge paging
        has_next=pagination.get("hasNext") is True,
        total=int(pagination.get("total", len(data))),
    )


def bulk_result(body: dict[str, Any]) -> BulkResult:
    """``BulkActionResult`` (contract §1.5): ``{"succeeded": [ids], "failed": [{taskId, error}]}``."""
    data = body.get("data") or {}
    succeeded = data.get("succeeded") or []
    failed = data.get("failed") or []
    if not isinstance(succeeded, list) or not isinstance(failed, list):
        raise TypeError("succeeded and failed must be lists")
    if not all(isinstance(f, dict) for f in failed):
        raise TypeError("each failed entry must be an object")
    return BulkResult(succeeded=[str(i) for i in succeeded], failed=list(failed))
