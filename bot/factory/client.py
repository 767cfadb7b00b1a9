"""httpx client for the factory REST API (contract §1.3–§1.5) with the contract's retry policy.

Retry policy (contract §7.1): at most 3 retries on 408, 429, 500, 502, 503, 504 and on
timeouts / connection errors; exponential backoff from ``retry_base_seconds`` (1 s by default)
doubling up to 30 s, plus up to 0.5 s of random jitter; a ``Retry-After`` header on 429/503
is honoured. 400, 401, 403, 404, 409 and 410 are never retried. Every mutating call carries an
``Idempotency-Key`` so that a retry cannot decide a task twice.

This module is the transport (requests, retries, idempotency keys); success answers are read
by :mod:`bot.factory.answers`, and errors are :mod:`bot.factory.errors` (re-exported here).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from pydantic import ValidationError

from escalation.models import Approval, Pipeline, Task

from .answers import (
    BulkResult,
    Page,
    Unreadable,
    bulk_result,
    data_object,
    envelope,
    follow_pages,
    page_of,
    parsed,
    readable_items,
    task_data,
)
from .errors import FactoryBadResponse, FactoryError, FactoryUnavailable, final_error
from .retries import GATEWAY_STATUS, NOT_SENT, RETRYABLE_STATUS, RetryPolicy, retry_after_seconds
from .transport import read_capped, segment

__all__ = [
    "BulkResult",
    "FactoryBadResponse",
    "FactoryClient",
    "FactoryError",
    "FactoryUnavailable",
    "Page",
    "RetryPolicy",
]

log = logging.getLogger(__name__)


class FactoryClient:
    """Async client of the factory API.

    Parameters
    ----------
    base_url:
        ``FACTORY_API_URL``, e.g. ``http://localhost:3100/v1``.
    api_key:
        ``FACTORY_API_KEY``, sent as ``X-API-Key`` (contract §1.2).
    timeout_seconds:
        One attempt's deadline, seconds: the request and its whole answer (httpx's own
        timeout bounds each read within it); a timeout counts as retryable.
    retry:
        The retry policy (contract §7.1 by default).
    sleep:
        Injected by tests; ``asyncio.sleep`` by default.
    transport:
        Optional httpx transport (tests).
    max_concurrent_requests:
        Requests in flight at once (``FACTORY_MAX_CONCURRENT_REQUESTS``); the others wait for
        a slot, which the per-request timeout does not count. A bounded pool also keeps
        httpcore fast: its pool re-scans every queued request against every connection on
        each change, which under a few hundred slow decisions at once (a factory taking 2 s)
        stalled the event loop for hundreds of milliseconds and delayed click answers.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_seconds: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
        max_concurrent_requests: int = 16,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers={"X-API-Key": api_key, "Accept": "application/json"},
            # no connection (or pool slot) within half the attempt's deadline: httpx's
            # ConnectTimeout / PoolTimeout, "not sent", which the deadline cannot tell
            timeout=httpx.Timeout(
                timeout_seconds, connect=timeout_seconds / 2, pool=timeout_seconds / 2
            ),
            transport=transport,
            limits=httpx.Limits(
                max_connections=max_concurrent_requests,
                max_keepalive_connections=max_concurrent_requests,
            ),
        )
        self._slots = asyncio.Semaphore(max_concurrent_requests)
        self._timeout = timeout_seconds
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        #: Items of task lists left out because they could not be read (see iter_tasks).
        self.skipped_items = 0

    def add_response_hook(self, hook: Callable[[httpx.Response], Awaitable[None]]) -> None:
        """Call ``hook`` with every response the factory sends (httpx ``event_hooks``;
        metrics). It must not read the body or raise."""
        self._http.event_hooks["response"].append(hook)

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self._http.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        on_retry: Callable[[int, str], Awaitable[None]] | None = None,
        parse: Callable[[dict[str, Any]], Any] | None = None,
    ) -> Any:
        """Send one request with retries; return the success envelope, or ``parse(envelope)``.

        An answer that cannot be understood — a success status with a body that is not a
        JSON object (an HTML error page, invalid JSON), ``"ok": false``, or an envelope that
        ``parse`` rejects (``KeyError``, ``TypeError``, ``ValueError`` including pydantic's
        ``ValidationError``) — is a failed attempt, retried like a 503 (contract §7.1).

        Raises
        ------
        FactoryError
            For a refusal (4xx other than 408/429; 501, 505).
        FactoryBadResponse
            When the last attempt was answered with something unreadable.
        FactoryUnavailable
            When every attempt failed with a retryable status, a timeout or a network error,
            or at once for another 5xx (:func:`~bot.factory.errors.final_error`);
            ``uncertain`` tells whether any attempt may have been acted on.
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        request = self._http.build_request(
            method, path.lstrip("/"), json=json, params=params, headers=headers
        )
        attempt = 0
        last_problem = ""
        uncertain = False
        unreadable = False
        while True:
            retry_after: float | None = None
            unreadable = False
            try:
                async with self._slots:
                    # one deadline for the whole attempt: httpx's timeout bounds each read, so
                    # an answer trickled a byte at a time would otherwise never time out
                    async with asyncio.timeout(self._timeout):
                        response = await read_capped(self._http, request)
                if response.status_code == 204 and parse is None:  # e.g. DELETE (§1.5)
                    return None
                if response.status_code < 400:
                    body = envelope(response)
                    return body if parse is None else parsed(parse, body)
                if response.status_code not in RETRYABLE_STATUS:
                    raise final_error(response, f"{method} {path}")
                retry_after = retry_after_seconds(response)
                last_problem = f"HTTP {response.status_code}"
                uncertain = uncertain or response.status_code in GATEWAY_STATUS
            except httpx.RequestError as exc:
                last_problem = f"{type(exc).__name__}"
                uncertain = uncertain or not isinstance(exc, NOT_SENT)
            except TimeoutError:
                last_problem = f"no whole answer within {self._timeout:g}s"
                uncertain = True  # the request may have reached the factory
            except Unreadable as exc:  # a success answer that does not parse, or too big
                last_problem = f"unreadable answer: {exc}"
                uncertain = unreadable = True
                log.warning("factory %s %s answered with %s", method, path, exc)
            attempt += 1
            if attempt > self.retry.max_retries:
                message = f"{method} {path} failed after {self.retry.max_retries} retries ({last_problem})"
                if unreadable:
                    raise FactoryBadResponse(message)
                raise FactoryUnavailable(message, uncertain=uncertain)
            delay = self.retry.delay(attempt, retry_after)
            log.warning(
                "factory %s %s failed (%s); retry %d/%d in %.2fs",
                method,
                path,
                last_problem,
                attempt,
                self.retry.max_retries,
                delay,
            )
            if on_retry is not None:
                await on_retry(attempt, last_problem)
            await self._sleep(delay)

    # ------------------------------------------------------------------ tasks
    async def list_tasks(
        self,
        *,
        status: str | None = None,
        priority: str | None = None,
        pipeline_id: str | None = None,
        page: int = 1,
        limit: int = 100,
    ) -> Page:
        """``GET /v1/tasks`` — one page (``limit`` ≤ 100, contract §1.3)."""
        params: dict[str, Any] = {"page": page, "limit": limit}
        for name, value in (
            ("status", status),
            ("priority", priority),
            ("pipelineId", pipeline_id),
        ):
            if value is not None:
                params[name] = value
        result: Page = await self._request(
            "GET", "tasks", params=params, parse=lambda body: page_of(body, page)
        )
        return result

    async def iter_tasks(
        self, *, status: str | None = None, priority: str | None = None
    ) -> list[Task]:
        """Every task matching the filters, following pagination to the last page.

        Items are validated one by one: an item the bridge cannot read (no id, a date that
        is not a date …) is logged and left out, so one odd task never hides the others.
        Values the bridge merely does not know (e.g. a new priority) are mapped to a safe
        default by :class:`~escalation.models.Task`. :attr:`skipped_items` counts those left
        out.
        """
        tasks: list[Task] = []
        async for page in self.iter_task_pages(status=status, priority=priority):
            tasks.extend(page)
        return tasks

    async def iter_task_pages(
        self, *, status: str | None = None, priority: str | None = None
    ) -> AsyncIterator[list[Task]]:
        """:meth:`iter_tasks` a page at a time (what the factory answers per page), for a
        caller that keeps less than every task (100,000 pending at start: bench/ladders.py);
        pages are followed as :func:`~bot.factory.answers.follow_pages` does (each task once)."""

        async def fetch(number: int) -> Page:
            return await self.list_tasks(status=status, priority=priority, page=number)

        async for items in follow_pages("tasks", fetch):
            tasks, skipped = readable_items(items, Task, "task")
            self.skipped_items += skipped
            yield tasks

    async def get_task(self, task_id: str) -> Task:
        """``GET /v1/tasks/{id}``. Raises :class:`FactoryError` 404 when unknown, and
        :class:`FactoryBadResponse` when the factory keeps answering with another task (a
        record of task Y says nothing about task X: a read-back must not confirm X by it)."""
        task: Task = await self._request(
            "GET", f"tasks/{segment(task_id)}", parse=lambda body: task_data(body, task_id)
        )
        return task

    async def claim_task(self, task_id: str, *, user_id: str | None, idempotency_key: str) -> Task:
        """``POST /v1/tasks/{id}/claim`` (the Acknowledge button); an answer about another
        task is unreadable (retried, then :class:`FactoryBadResponse`), as for :meth:`get_task`."""
        payload = {"userId": user_id} if user_id else {}
        task: Task = await self._request(
            "POST",
            f"tasks/{segment(task_id)}/claim",
            json=payload,
            idempotency_key=idempotency_key,
            parse=lambda body: task_data(body, task_id),
        )
        return task

    async def complete_task(
        self,
        task_id: str,
        *,
        decision: str,
        notes: str | None,
        decision_data: dict[str, Any],
        idempotency_key: str,
        on_retry: Callable[[int, str], Awaitable[None]] | None = None,
    ) -> Task:
        """``POST /v1/tasks/{id}/complete`` with ``CompleteTaskBody`` (contract §1.5).

        Raises
        ------
        FactoryError
            409 CONFLICT when the task was already decided; 400/404 for bad input.
        FactoryUnavailable
            When the factory kept failing. With ``uncertain`` false every attempt was refused
            or never sent, so the decision is *not* recorded; with ``uncertain`` true (a
            timeout, a dropped connection, :class:`FactoryBadResponse`) it may have been:
            read the task back.
        """
        payload: dict[str, Any] = {"decision": decision, "decisionData": decision_data}
        if notes:
            payload["notes"] = notes
        task: Task = await self._request(
            "POST",
            f"tasks/{segment(task_id)}/complete",
            json=payload,
            idempotency_key=idempotency_key,
            on_retry=on_retry,
            parse=task_data,
        )
        return task

    async def reassign_task(
        self, task_id: str, *, assignee_id: str, reason: str, idempotency_key: str
    ) -> Task:
        """``POST /v1/tasks/{id}/reassign`` (escalation to an admin)."""
        task: Task = await self._request(
            "POST",
            f"tasks/{segment(task_id)}/reassign",
            json={"assigneeId": assignee_id, "reason": reason},
            idempotency_key=idempotency_key,
            parse=task_data,
        )
        return task

    async def escalate_approval(
        self,
        approval_id: str,
        *,
        reason: str,
        escalate_to: str | None = None,
        idempotency_key: str,
    ) -> dict[str, Any]:
        """``POST /v1/approvals/{id}/escalate`` ``{reason, escalateTo?}`` (contract §1.5
        ``EscalateBody``; ``escalate_to`` is a factory user id) → the ``Approval`` object.

        Raises :class:`FactoryError` (404 unknown approval, 409 already decided) or
        :class:`FactoryUnavailable` like every call (contract §7.1).
        """
        payload: dict[str, Any] = {"reason": reason}
        if escalate_to:
            payload["escalateTo"] = escalate_to
        approval: dict[str, Any] = await self._request(
            "POST",
            f"approvals/{segment(approval_id)}/escalate",
            json=payload,
            idempotency_key=idempotency_key,
            parse=data_object,
        )
        return approval

    async def bulk(
        self,
        *,
        action: str,
        task_ids: list[str],
        notes: str | None,
        idempotency_key: str,
        decision_data: dict[str, Any] | None = None,
        on_retry: Callable[[int, str], Awaitable[None]] | None = None,
    ) -> BulkResult:
        """``POST /v1/tasks/bulk`` (``action``: approve, reject or defer).

        ``decision_data`` (who decided, as for :meth:`complete_task`) is sent as
        ``decisionData`` when given. Per-item failures are in :attr:`BulkResult.failed`
        (``{"taskId", "error"}``); the call itself raises like :meth:`complete_task`.
        """
        payload: dict[str, Any] = {"action": action, "taskIds": task_ids}
        if notes:
            payload["notes"] = notes
        if decision_data is not None:
            payload["decisionData"] = decision_data
        result: BulkResult = await self._request(
            "POST",
            "tasks/bulk",
            json=payload,
            idempotency_key=idempotency_key,
            on_retry=on_retry,
            parse=bulk_result,
        )
        return result

    async def task_stats(self) -> dict[str, Any]:
        """``GET /v1/tasks/stats`` → ``TaskStats``."""
        stats: dict[str, Any] = await self._request("GET", "tasks/stats", parse=data_object)
        return stats

    async def dashboard_summary(self) -> dict[str, Any]:
        """``GET /v1/dashboard/summary`` → ``DashboardSummary``."""
        summary: dict[str, Any] = await self._request("GET", "dashboard/summary", parse=data_object)
        return summary

    async def list_pipelines(self, *, status: str | None = None) -> list[Pipeline]:
        """``GET /v1/pipelines``, every page (:func:`~bot.factory.answers.follow_pages`); a
        pipeline that cannot be read is logged and left out (the others are listed)."""

        async def fetch(number: int) -> Page:
            params: dict[str, Any] = {"page": number, "limit": 100}
            if status:
                params["status"] = status
            result: Page = await self._request(
                "GET", "pipelines", params=params, parse=lambda body: page_of(body, number)
            )
            return result

        pipelines: list[Pipeline] = []
        async for items in follow_pages("pipelines", fetch):
            pipelines.extend(readable_items(items, Pipeline, "pipeline")[0])
        return pipelines

    async def get_pipeline(self, pipeline_id: str) -> Pipeline:
        """``GET /v1/pipelines/{id}`` (contract §1.5). Raises :class:`FactoryError` 404 when unknown."""
        pipeline: Pipeline = await self._request(
            "GET",
            f"pipelines/{segment(pipeline_id)}",
            parse=lambda body: Pipeline.model_validate(data_object(body)),
        )
        return pipeline

    async def list_webhooks(self) -> list[dict[str, Any]]:
        """``GET /v1/webhooks`` (contract §1.5) → the registered ``Webhook`` objects."""
        body = await self._request("GET", "webhooks")
        data = body.get("data")
        return [w for w in data if isinstance(w, dict)] if isinstance(data, list) else []

    async def create_webhook(
        self, *, url: str, events: list[str], secret: str, idempotency_key: str
    ) -> dict[str, Any]:
        """``POST /v1/webhooks`` ``{url, events, secret}`` (contract §1.5) → the ``Webhook``."""
        hook: dict[str, Any] = await self._request(
            "POST",
            "webhooks",
            json={"url": url, "events": events, "secret": secret},
            idempotency_key=idempotency_key,
            parse=data_object,
        )
        return hook

    async def delete_webhook(self, webhook_id: str) -> None:
        """``DELETE /v1/webhooks/{id}`` (contract §1.5); 404 raises :class:`FactoryError`."""
        await self._request("DELETE", f"webhooks/{segment(webhook_id)}")

    async def find_approval(
        self, task_id: str, *, pipeline_id: str | None = None, max_pages: int = 10
    ) -> Approval | None:
        """The pending ``Approval`` behind ``task_id`` (contract §1.5 ``GET /v1/approvals``).

        Reads ``GET /v1/approvals?status=pending`` (and ``pipelineId`` when known), following
        pagination for at most ``max_pages`` pages of 100, and returns the approval whose
        ``taskId`` is ``task_id``; ``None`` when the factory lists none for it. An entry that
        does not validate is skipped (it cannot be the one asked for unless its ``taskId``
        matches, and then it counts as unreadable).

        Raises
        ------
        FactoryError
            The factory refused the request (e.g. 404 for a factory without approvals).
        FactoryUnavailable
            The factory could not be reached after the retry policy (contract §7.1).
        ValueError
            The approval listed for ``task_id`` does not validate.
        """
        page = 1
        while page <= max_pages:
            params: dict[str, Any] = {"status": "pending", "page": page, "limit": 100}
            if pipeline_id:
                params["pipelineId"] = pipeline_id
            body = await self._request("GET", "approvals", params=params)
            data = body.get("data")
            for entry in data if isinstance(data, list) else []:
                if isinstance(entry, dict) and entry.get("taskId") == task_id:
                    try:
                        return Approval.model_validate(entry)
                    except ValidationError as exc:
                        raise ValueError(f"approval of task {task_id} is malformed: {exc}") from exc
            meta = (body.get("meta") or {}).get("pagination") or {}
            if not meta.get("hasNext"):
                return None
            page += 1
        return None

    @staticmethod
    def new_idempotency_key(seed: str | None = None) -> str:
        """A UUID for ``Idempotency-Key``; the same ``seed`` always gives the same key."""
        if seed is None:
            return str(uuid.uuid4())
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"factory-bridge:{seed}"))
