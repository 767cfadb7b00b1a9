"""What the factory client raises: an error answer, an unreachable factory, an unreadable one.

Contract §1.3 (the error envelope) and §7.1 (error codes, which failures are retried).
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "FactoryBadResponse",
    "FactoryError",
    "FactoryUnavailable",
    "error_from_response",
    "final_error",
]


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
    """The factory could not be reached or kept failing after every retry (contract §7.1).

    Attributes
    ----------
    uncertain:
        ``True`` when an attempt may have reached the factory and been acted on: it timed out
        or lost its connection after the request was sent, or it was answered with something
        unreadable (see :class:`FactoryBadResponse`). The outcome of a mutating call is then
        unknown (read the entity back); ``False`` when every attempt was refused with a
        retryable status or never connected, so nothing was done.
    """

    def __init__(self, message: str, *, uncertain: bool = False) -> None:
        super().__init__(message)
        self.uncertain = uncertain


class FactoryBadResponse(FactoryUnavailable):
    """The factory kept answering with something that cannot be understood.

    A success status whose body is not JSON (an HTML page from a proxy), not the contract's
    envelope (``{"ok": true, "data": …}``, contract §1.3) or whose ``data`` has the wrong shape
    is a failed attempt, retried like a 503 (contract §7.1); after the last retry this is
    raised. The request may have been acted on (the status said success), so
    :attr:`~FactoryUnavailable.uncertain` is always ``True``. A subclass of
    :class:`FactoryUnavailable`, so code that handles "the factory could not be reached"
    handles it too.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, uncertain=True)


def error_from_response(response: httpx.Response) -> FactoryError:
    """The :class:`FactoryError` of a non-retryable error answer (contract §1.3 envelope).

    ``code``, ``message``, ``field`` and ``details`` come from the envelope's ``error``
    object; a body that is not the contract's envelope (not JSON, or no ``error`` object)
    gives ``HTTP_<status>`` and the reason phrase, so that nothing the factory says is lost
    to a parse error.
    """
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):  # not the contract's error envelope: use the status
        error = {}
    return FactoryError(
        response.status_code,
        str(error.get("code", f"HTTP_{response.status_code}")),
        str(error.get("message", response.reason_phrase)),
        field=error.get("field"),
        details=error.get("details") if isinstance(error.get("details"), dict) else None,
    )


#: Server errors after which the request certainly did nothing (RFC 9110 §15.6: 501 Not
#: Implemented, 505 HTTP Version Not Supported).
_NOTHING_DONE = frozenset({501, 505})


def final_error(response: httpx.Response, what: str) -> FactoryError | FactoryUnavailable:
    """The error to raise for an answer that is not retried (contract §7.1 retries only 408,
    429, 500, 502, 503 and 504).

    A 4xx (and 501, 505) is the factory's refusal: :func:`error_from_response`. Any other
    5xx — a proxy's 520–524 (524: the origin timed out *after* the request reached it), 507
    … — is no refusal: the request may have been acted on, so it is
    :class:`FactoryUnavailable` with ``uncertain`` set (a decision is then read back, never
    reported as refused).

    Parameters
    ----------
    response:
        The answer.
    what:
        ``<METHOD> <path>``, for the message.
    """
    status = response.status_code
    if status >= 500 and status not in _NOTHING_DONE:
        return FactoryUnavailable(f"{what} answered HTTP {status} (not retried)", uncertain=True)
    return error_from_response(response)
