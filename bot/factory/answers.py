"""Reading the factory's success answers: the envelope (contract §1.3) and the shape of ``data``.

A success status whose body cannot be understood raises :class:`Unreadable`; the client
(:class:`bot.factory.client.FactoryClient`) counts it as a failed attempt and retries it like
a 503 (contract §7.1), then raises :class:`~bot.factory.errors.FactoryBadResponse`.
:func:`follow_pages` reads a paginated listing to its end without trusting it to end.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from escalation.models import Task

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_ITEMS",
    "MAX_PAGES",
    "BulkResult",
    "Page",
    "Unreadable",
    "bulk_result",
    "data_object",
    "envelope",
    "follow_pages",
    "page_of",
    "parsed",
    "readable_items",
    "task_data",
]


log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


#: The largest factory answer read, in bytes once decoded: a page of 100 tasks with their
#: diffs and test results is a few MB; a bigger body is refused as unreadable before it is
#: all in memory (a factory answering nonsense must not exhaust the bridge's memory).
MAX_ANSWER_BYTES = 32 * 1024 * 1024


class Unreadable(Exception):
    """A success answer that does not parse (one failed attempt, retried by the client)."""


@dataclass(frozen=True)
class Page:
    """One page of a list endpoint: the items and the contract's pagination meta."""

    items: list[dict[str, Any]]
    page: int
    total_pages: int
    has_next: bool
    #: items in the whole listing as this page counted them (``None``: not given)
    total: int | None


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
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError, OverflowError) as exc:
        # OverflowError: a count of 1e999 (int() of an infinite float)
        raise Unreadable(f"data of the wrong shape: {str(exc)[:300]}") from None


def task_data(body: dict[str, Any], task_id: str | None = None) -> Task:
    """The :class:`Task` in a success envelope's ``data``; with ``task_id``, a task with
    another id is refused (``ValueError``: an answer about another task is unreadable)."""
    task = Task.model_validate(body["data"])
    if task_id is not None and task.id != task_id:
        raise ValueError(f"the answer is task {task.id[:64]!r}, not {task_id[:64]!r}")
    return task


def data_object(body: dict[str, Any]) -> dict[str, Any]:
    """A success envelope's ``data`` when it is a JSON object."""
    data = body["data"]
    if not isinstance(data, dict):
        raise TypeError(f"data is {type(data).__name__}, not an object")
    return data


def page_of(body: dict[str, Any], page: int) -> Page:
    """One page of a list answer: ``data`` must be a list (its items are read by the caller);
    a missing or ``null`` ``data`` is refused too, not read as an empty listing (which would
    say nothing is waiting)."""
    data = body.get("data")
    if not isinstance(data, list):
        raise TypeError(
            f"data is {type(data).__name__ if 'data' in body else 'missing'}, not a list"
        )
    meta = body.get("meta") or {}
    pagination = (meta.get("pagination") if isinstance(meta, dict) else None) or {}
    return Page(
        items=list(data),
        page=int(pagination.get("page", page)),
        total_pages=int(pagination.get("totalPages", 1)),
        # only a JSON true: "false" (a string) or 1 must not keep the bridge paging
        has_next=pagination.get("hasNext") is True,
        total=int(pagination["total"]) if pagination.get("total") is not None else None,
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


#: Most pages one listing is followed for (100 items each: a million items).
MAX_PAGES = 10_000
#: Most items one listing is followed for, whatever the factory's page size: a factory that
#: ignores ``limit`` must not fill the bridge's memory with ids.
MAX_ITEMS = 1_000_000


@dataclass
class _Walk:
    """What one walk through a listing saw (:func:`follow_pages`)."""

    pages: int = 0
    #: ``meta.pagination.total`` of page 1 (``None``: not given)
    first_total: int | None = None
    #: items on page 1: the page size the factory answers with
    page_size: int = 0
    #: the listing shrank while it was walked: a later page gave a smaller total, or a page
    #: that says another follows came back shorter than page 1
    shifted: bool = False
    #: ended at a page saying none follows (not cut short as nonsense)
    complete: bool = False


async def follow_pages(
    what: str, fetch: Callable[[int], Awaitable[Page]]
) -> AsyncIterator[list[Any]]:
    """The items of a paginated listing (contract §1.3 ``meta.pagination``), page by page
    from page 1, each item once.

    It ends at the page whose ``hasNext`` is not ``true``. A factory that answers
    nonsense must not keep the bridge reading for ever, so it also ends — logged as a
    warning — at a page that brings no id not seen before (an empty page, a factory that
    ignores ``page`` and answers page 1 again, a page of items without a string id), and
    after :data:`MAX_PAGES` pages or :data:`MAX_ITEMS` items.
    An item listed again on a later page (the listing shifted while it was read) is left
    out there; items without an id are passed on (the caller's check refuses them).

    Pages are offsets (contract §1.3 ``PaginationParams``): when items leave the listing
    while it is read (tasks decided meanwhile), the items after them move forward onto a
    page already read and would be missed. So when the listing shrank during the walk — a
    later page gives a smaller ``total`` than page 1, or a page that says another follows
    comes back shorter than page 1 — it is walked once more from page 1 and only the items
    not seen yet are passed on. That second walk reads at most one page more than the
    first did, and is never repeated: what changes after it is for the caller's next
    listing (the reconciler lists every ``RECONCILE_INTERVAL_SECONDS``).

    Parameters
    ----------
    what:
        The listing's name, for the log (``tasks``, ``pipelines``).
    fetch:
        Reads page ``n`` (1-based); its errors propagate.
    """
    seen: set[str] = set()
    first = _Walk()
    async for fresh in _walk(what, fetch, seen, first, max_pages=MAX_PAGES):
        yield fresh
    if not (first.complete and first.shifted):
        return
    log.info(
        "factory %s list: it changed while it was read (%s items at first); reading it once "
        "more for the items that moved onto pages already read",
        what,
        first.first_total if first.first_total is not None else "?",
    )
    async for fresh in _walk(what, fetch, seen, _Walk(), max_pages=first.pages + 1):
        if fresh:
            yield fresh


async def _walk(
    what: str,
    fetch: Callable[[int], Awaitable[Page]],
    seen: set[str],
    walk: _Walk,
    *,
    max_pages: int,
) -> AsyncIterator[list[Any]]:
    """One walk of :func:`follow_pages` from page 1: the items not in ``seen`` (added to it),
    page by page; what it saw goes in ``walk``. The first walk (``seen`` empty) ends at a
    page that brings nothing new; a second one reads on, up to ``max_pages``."""
    again = bool(seen)
    for number in range(1, max_pages + 1):
        page = await fetch(number)
        walk.pages = number
        if number == 1:
            walk.first_total, walk.page_size = page.total, len(page.items)
        elif page.total is not None and walk.first_total is not None:
            # fewer items: those after the ones that left moved onto pages already read (a
            # listing that grew only repeats items, which are left out below)
            walk.shifted = walk.shifted or page.total < walk.first_total
        if page.has_next and len(page.items) < walk.page_size:
            walk.shifted = True
        fresh: list[Any] = []
        new_ids = 0  # items without a string id are passed on, but are never "new"
        for item in page.items:
            item_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(item_id, str):
                if item_id in seen:
                    continue
                seen.add(item_id)
                new_ids += 1
            fresh.append(item)
        yield fresh
        if not page.has_next:
            walk.complete = True
            return
        if len(seen) >= MAX_ITEMS:
            log.error(
                "factory %s list: %d items after %d pages; not following it further",
                what,
                len(seen),
                number,
            )
            return
        if not new_ids and not again:
            log.warning(
                "factory %s list: page %d says another follows but brought nothing new "
                "(%d items, no id not seen before); not following it further",
                what,
                number,
                len(page.items),
            )
            return
    if not again:
        log.error(
            "factory %s list: still 'hasNext' after %d pages; not following it further",
            what,
            max_pages,
        )


def readable_items(items: list[Any], model: type[M], what: str) -> tuple[list[M], int]:
    """The items of a listing that are ``model`` instances the bridge can read, and how many
    were not.

    An item that cannot be read (no id, a date that is not a date …) is logged and left out,
    so one odd item never hides the others (``what`` names them in the log: ``task`` …).
    """
    read: list[M] = []
    skipped = 0
    for item in items:
        try:
            read.append(model.model_validate(item))
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:
            skipped += 1
            log.warning(
                "factory %s list: item %r left out, it cannot be read: %s",
                what,
                str(item.get("id"))[:64] if isinstance(item, dict) else "?",
                str(exc)[:500],
            )
    return read, skipped
