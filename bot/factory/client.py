"""httpx client for the factory REST API (contract §1.3–§1.5) with the contract's retry policy.

Retry policy (contract §7.1): at most 3 retries on 408, 429, 500, 502, 503, 504 and on
timeouts / connection errors; exponential backoff from ``retry_base_seconds`` (1 s by default)
doubling up to 30 s, plus up to 0.5 s of random jitter; a ``Retry-After`` header on 429/503
is honoured. 400, 401, 403, 404, 409 and 410 are never retried. Every mutating call carries an
``Idempotency-Key`` so that a retry cannot decide a task twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from escalation.models import Pipeline, Task

__all__ = [
    "BulkResult",
    "FactoryClient",
    "FactoryError",
    "FactoryUnavailable",
    "Page",
    "RetryPolicy",
]

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class FactoryError(Exception):
    """The factory answered with a non-retryable error envelope (contract §1.3).

    Attributes
    ----------
    status:
        HTTP status (e.g. 404, 409).
    code:
        The contract's ``ErrorCode`` (``NOT_FOUND``, ``CONFLICT``, ``VALIDATION_ERROR`` …).
    details:
        The envelope's machine-readable ``details`` (for CONFLICT: ``currentState``,
        ``decision``, ``decidedBy``, ``decidedAt`` when the factory gives them).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"factory answered {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details or {}

    @property
    def is_conflict(self) -> bool:
        """True for 409 CONFLICT (e.g. the task was already decided)."""
        return self.status == 409


class FactoryUnavailable(Exception):
    """The factory could not be reached or kept failing after every retry (contract §7.1)."""


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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


class FactoryClient:
    """Async client of the factory API.

    Parameters
    ----------
    base_url:
        ``FACTORY_API_URL``, e.g. ``http://localhost:3100/v1``.
    api_key:
        ``FACTORY_API_KEY``, sent as ``X-API-Key`` (contract §1.2).
    timeout_seconds:
        Per-request timeout; a timeout counts as retryable.
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
            timeout=timeout_seconds,
            transport=transport,
            limits=httpx.Limits(
                max_connections=max_concurrent_requests,
                max_keepalive_connections=max_concurrent_requests,
            ),
        )
        self._slots = asyncio.Semaphore(max_concurrent_requests)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

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
    ) -> dict[str, Any]:
        """Send one request with retries; return the whole success envelope.

        Raises
        ------
        FactoryError
            For a non-retryable error answer (4xx other than 408/429).
        FactoryUnavailable
            When every attempt failed with a retryable status, a timeout or a network error.
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        attempt = 0
        last_problem = ""
        while True:
            retry_after: float | None = None
            try:
                async with self._slots:
                    response = await self._http.request(
                        method, path.lstrip("/"), json=json, params=params, headers=headers
                    )
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last_problem = f"{type(exc).__name__}"
            else:
                if response.status_code < 400:
                    body: dict[str, Any] = response.json() if response.content else {}
                    return body
                if response.status_code not in RETRYABLE_STATUS:
                    raise self._error(response)
                retry_after = _retry_after(response)
                last_problem = f"HTTP {response.status_code}"
            attempt += 1
            if attempt > self.retry.max_retries:
                raise FactoryUnavailable(
                    f"{method} {path} failed after {self.retry.max_retries} retries ({last_problem})"
                )
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

    @staticmethod
    def _error(response: httpx.Response) -> FactoryError:
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {}
        return FactoryError(
            response.status_code,
            str(error.get("code", f"HTTP_{response.status_code}")),
            str(error.get("message", response.reason_phrase)),
            field=error.get("field"),
            details=error.get("details") if isinstance(error.get("details"), dict) else None,
        )

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
        body = await self._request("GET", "tasks", params=params)
        meta = (body.get("meta") or {}).get("pagination") or {}
        return Page(
            items=list(body.get("data") or []),
            page=int(meta.get("page", page)),
            total_pages=int(meta.get("totalPages", 1)),
            has_next=bool(meta.get("hasNext", False)),
            total=int(meta.get("total", len(body.get("data") or []))),
        )

    async def iter_tasks(
        self, *, status: str | None = None, priority: str | None = None
    ) -> list[Task]:
        """Every task matching the filters, following pagination to the last page."""
        tasks: list[Task] = []
        page = 1
        while True:
            result = await self.list_tasks(status=status, priority=priority, page=page)
            tasks.extend(Task.model_validate(item) for item in result.items)
            if not result.has_next:
                return tasks
            page += 1

    async def get_task(self, task_id: str) -> Task:
        """``GET /v1/tasks/{id}``. Raises :class:`FactoryError` 404 when unknown."""
        body = await self._request("GET", f"tasks/{task_id}")
        return Task.model_validate(body["data"])

    async def claim_task(self, task_id: str, *, user_id: str | None, idempotency_key: str) -> Task:
        """``POST /v1/tasks/{id}/claim`` (the Acknowledge button)."""
        payload = {"userId": user_id} if user_id else {}
        body = await self._request(
            "POST", f"tasks/{task_id}/claim", json=payload, idempotency_key=idempotency_key
        )
        return Task.model_validate(body["data"])

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
            When the factory kept failing; the decision is then *not* recorded.
        """
        payload: dict[str, Any] = {"decision": decision, "decisionData": decision_data}
        if notes:
            payload["notes"] = notes
        body = await self._request(
            "POST",
            f"tasks/{task_id}/complete",
            json=payload,
            idempotency_key=idempotency_key,
            on_retry=on_retry,
        )
        return Task.model_validate(body["data"])

    async def reassign_task(
        self, task_id: str, *, assignee_id: str, reason: str, idempotency_key: str
    ) -> Task:
        """``POST /v1/tasks/{id}/reassign`` (escalation to an admin)."""
        body = await self._request(
            "POST",
            f"tasks/{task_id}/reassign",
            json={"assigneeId": assignee_id, "reason": reason},
            idempotency_key=idempotency_key,
        )
        return Task.model_validate(body["data"])

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
        body = await self._request(
            "POST",
            "tasks/bulk",
            json=payload,
            idempotency_key=idempotency_key,
            on_retry=on_retry,
        )
        data = body.get("data") or {}
        return BulkResult(
            succeeded=list(data.get("succeeded") or []), failed=list(data.get("failed") or [])
        )

    async def task_stats(self) -> dict[str, Any]:
        """``GET /v1/tasks/stats`` → ``TaskStats``."""
        return dict((await self._request("GET", "tasks/stats"))["data"])

    async def dashboard_summary(self) -> dict[str, Any]:
        """``GET /v1/dashboard/summary`` → ``DashboardSummary``."""
        return dict((await self._request("GET", "dashboard/summary"))["data"])

    async def list_pipelines(self, *, status: str | None = None) -> list[Pipeline]:
        """``GET /v1/pipelines`` following pagination."""
        pipelines: list[Pipeline] = []
        page = 1
        while True:
            params: dict[str, Any] = {"page": page, "limit": 100}
            if status:
                params["status"] = status
            body = await self._request("GET", "pipelines", params=params)
            pipelines.extend(Pipeline.model_validate(p) for p in body.get("data") or [])
            meta = (body.get("meta") or {}).get("pagination") or {}
            if not meta.get("hasNext"):
                return pipelines
            page += 1

    @staticmethod
    def new_idempotency_key(seed: str | None = None) -> str:
        """A UUID for ``Idempotency-Key``; the same ``seed`` always gives the same key."""
        if seed is None:
            return str(uuid.uuid4())
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"factory-bridge:{seed}"))
