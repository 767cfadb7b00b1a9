"""The bridge's logs: levels as the contract spells them, JSON lines, no secrets.

``LOG_FORMAT=json`` writes one JSON object per line in the factory contract's ``LogEntry``
shape (factory contract §7.2): ``timestamp`` (ISO 8601, UTC), ``level``
(``debug|info|warn|error|fatal``), ``message``, ``service`` (``"discord-bridge"``), and where
known ``data`` (the record's extra fields and its logger), ``error`` (``name``, ``message``,
``stack``), ``durationMs``, ``taskId``, ``eventId``. ``LOG_FORMAT=text`` writes the classic
``time LEVEL logger: message`` line. Without ``LOG_FORMAT`` the format is text on a terminal
and JSON otherwise (a container's stdout goes to a log collector).

``taskId`` and ``eventId`` are also filled in from the context a line is logged in: the event
processor handles each event inside :func:`log_context` and the decision protocol's entry points
are wrapped by :func:`task_log_context`, so every line logged while handling them carries the ids
without each call site passing ``extra=``.

Every configured secret (bot token, webhook secrets, API key, Twilio auth token, WebSocket
token, the user info and password-like query parameters of URL settings: :func:`url_secrets`)
is replaced by ``[redacted]`` in every line, whatever logged it, message, arguments or
traceback alike, and whatever characters it holds: the JSON format masks each text before it
is encoded (encoding escapes ``"``, ``\\``, control characters), and both formats also mask a
secret's escaped spellings (as ``repr`` and JSON write it) where a message quotes it so.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import re
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, ParamSpec, TextIO, TypeVar
from urllib.parse import unquote

__all__ = [
    "CONTRACT_LEVELS",
    "JsonFormatter",
    "RedactingFormatter",
    "configure_logging",
    "log_context",
    "parse_log_level",
    "redact",
    "task_log_context",
    "url_secrets",
]

#: The service name in every JSON line (contract §7.2 ``LogEntry.service``).
SERVICE = "discord-bridge"

#: ``LOG_LEVEL`` spellings (any case) → the standard library's level names. ``warn`` and
#: ``fatal`` are the contract's (§7.2); ``warning`` and ``critical`` are Python's.
CONTRACT_LEVELS: dict[str, str] = {
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "fatal": "CRITICAL",
    "critical": "CRITICAL",
}

#: Standard library level → the contract's ``LogEntry.level``.
_CONTRACT_NAME = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}

#: Attributes every ``LogRecord`` has: whatever else a record carries came from ``extra=``.
_RECORD_FIELDS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)

#: ``extra=`` keys that have their own ``LogEntry`` field.
_PROMOTED = {"task_id": "taskId", "event_id": "eventId", "duration_ms": "durationMs"}

REDACTED = "[redacted]"

#: Secrets shorter than this are not redacted: masking them would garble ordinary text.
MIN_SECRET_LENGTH = 4

#: Query parameters of a URL whose values are secrets (any case; also ``<prefix>_<name>``).
SECRET_QUERY_PARAMETERS = ("password", "passwd", "pwd", "token", "secret")

#: The ids of what the current task (asyncio) is handling; see :func:`log_context`.
_CONTEXT: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("bridge_log_context", default=())

_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextmanager
def log_context(*, task_id: str | None = None, event_id: str | None = None) -> Iterator[None]:
    """Lines logged inside carry ``taskId`` / ``eventId`` (those given; inner blocks win).

    The ids live in a :class:`contextvars.ContextVar`, so they follow the current asyncio
    task (and tasks it starts) and are restored on exit.
    """
    added = tuple((k, v) for k, v in (("task_id", task_id), ("event_id", event_id)) if v)
    token = _CONTEXT.set(_CONTEXT.get() + added)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def task_log_context(
    method: Callable[_P, Awaitable[_R]],
) -> Callable[_P, Awaitable[_R]]:
    """Decorate a coroutine method whose ``task_id`` argument names the task it works on:
    its lines carry ``taskId`` (:func:`log_context`)."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            task_id = signature.bind_partial(*args, **kwargs).arguments.get("task_id")
        except TypeError:
            task_id = None
        with log_context(task_id=task_id if isinstance(task_id, str) else None):
            return await method(*args, **kwargs)

    return wrapper


class _ContextFilter(logging.Filter):
    """Copies :func:`log_context`'s ids onto each record (``extra=`` given ones win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in reversed(_CONTEXT.get()):
            record.__dict__.setdefault(key, value)
        return True


def parse_log_level(value: str) -> str:
    """The standard library level name for a ``LOG_LEVEL`` value.

    Parameters
    ----------
    value:
        Any case, surrounding spaces ignored: ``debug``, ``info``, ``warn``/``warning``,
        ``error``, ``fatal``/``critical`` (contract §7.2 spells ``warn`` and ``fatal``).

    Raises
    ------
    ValueError
        For any other value, naming the accepted ones.
    """
    name = CONTRACT_LEVELS.get(value.strip().lower())
    if name is None:
        raise ValueError(
            f"unknown log level {value!r}: use debug, info, warn, error or fatal (any case)"
        )
    return name


def _spellings(secret: str) -> list[str]:
    """``secret`` as it is, and as ``repr`` and JSON (both ASCII settings) escape it."""
    forms = [
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    ]
    return list(dict.fromkeys(forms))


def _masks(secrets: Iterable[str]) -> tuple[str, ...]:
    """Every spelling of every secret long enough to mask, longest first."""
    forms = {
        form
        for secret in secrets
        if secret and len(secret) >= MIN_SECRET_LENGTH
        for form in _spellings(secret)
    }
    return tuple(sorted(forms, key=lambda form: (-len(form), form)))


def _mask(text: str, masks: Iterable[str]) -> str:
    for form in masks:
        text = text.replace(form, REDACTED)
    return text


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``[redacted]``.

    Parameters
    ----------
    text:
        Any text: a log line, an exception's message, a reason shown in ``/healthz``.
    secrets:
        Values never to show; each is masked as it is and as ``repr`` and JSON escape it
        (values shorter than four characters are left alone: masking those would garble
        ordinary text).

    Returns
    -------
    str
        The text, masked.
    """
    return _mask(text, _masks(secrets))


#: ``scheme://``: what a URL starts with (RFC 3986 scheme).
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: The characters a URL parser cuts at (RFC 3986 gen-delims): a password holding one that is
#: not percent-encoded is split there, and a parser may quote any piece (as a port, a host).
_DELIMITERS = re.compile(r"[:/?#\[\]@]")


def url_secrets(url: str) -> list[str]:
    """The secrets a URL carries, whether it can be parsed or not.

    Parameters
    ----------
    url:
        A URL setting's value (``DATABASE_URL``, ``FACTORY_REDIS_URL``, …).

    Returns
    -------
    list[str]
        When the URL carries a password: the whole user info (everything between
        ``scheme://`` and the last ``@``: a password holding ``/``, ``?``, ``#`` or ``@`` not
        percent-encoded is still all of it), the password after its first ``:``, each piece of that password between URL delimiters
        (what a confused parser may quote, as a port for instance), each percent-decoded too;
        and the value of every password-like query parameter (:data:`SECRET_QUERY_PARAMETERS`).
        Empty values are left out.
    """
    found: list[str] = []
    scheme = _SCHEME.match(url)
    rest = url[scheme.end() :] if scheme else url
    userinfo, at, _ = rest.rpartition("@")
    _, colon, password = userinfo.partition(":")
    if at and colon and password:  # a user name alone (postgres@…) is no secret
        found.append(userinfo)
        found.append(password)
        found.extend(_DELIMITERS.split(password))
    query = url.partition("?")[2].partition("#")[0]
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        key = unquote(name).strip().lower()
        if (
            equals
            and value
            and (
                key in SECRET_QUERY_PARAMETERS
                or key.endswith(tuple(f"_{word}" for word in SECRET_QUERY_PARAMETERS))
            )
        ):
            found.append(value)
            found.append(unquote(value.replace("+", " ")))
    found.extend([unquote(value) for value in found])
    return [value for value in dict.fromkeys(found) if value]


class RedactingFormatter(logging.Formatter):
    """The text format with every secret replaced by ``[redacted]``.

    Parameters
    ----------
    secrets:
        Values never to print, whatever characters they hold (empty strings and values
        shorter than 4 characters are ignored: redacting those would garble ordinary text);
        each is masked as it is and as ``repr`` and JSON escape it.
    fmt:
        The line's ``%``-style format; the default is ``time LEVEL logger: message``.
    """

    def __init__(self, secrets: Iterable[str] = (), fmt: str | None = None) -> None:
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.secrets = tuple(
            sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len)[::-1]
        )
        self._masks = _masks(self.secrets)

    def format(self, record: logging.LogRecord) -> str:
        """The line, redacted."""
        return _mask(super().format(record), self._masks)


class JsonFormatter(RedactingFormatter):
    """One JSON object per record in the contract's ``LogEntry`` shape (§7.2), redacted.

    Every text (key or value, at any depth; any other object as ``str`` gives it) is masked
    *before* the entry is encoded: encoding escapes ``"``, ``\\`` and control characters, so a
    secret holding one would no longer match in the encoded line.
    """

    def _masked(self, value: Any) -> Any:
        """``value`` made JSON-ready with every secret in it masked."""
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            text = str(value)
            masked = _mask(text, self._masks)
            return value if masked == text else masked
        if isinstance(value, dict):
            return {self._masked(str(key)): self._masked(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._masked(item) for item in value]
        return _mask(value if isinstance(value, str) else str(value), self._masks)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line (no newline inside)."""
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": _CONTRACT_NAME.get(record.levelno, record.levelname.lower()),
            "message": record.getMessage(),
            "service": SERVICE,
        }
        data: dict[str, Any] = {"logger": record.name}
        for key, value in record.__dict__.items():
            if key in _RECORD_FIELDS or key.startswith("_"):
                continue
            if key in _PROMOTED:
                entry[_PROMOTED[key]] = value
            else:
                data[key] = value
        entry["data"] = data
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["error"] = {
                "name": type(exc).__name__,
                "message": str(exc),
                "stack": "".join(traceback.format_exception(exc)),
            }
        return json.dumps(self._masked(entry), ensure_ascii=False)


def configure_logging(
    level: str,
    *,
    fmt: str | None = None,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Set up the root logger for the bridge (replacing earlier handlers).

    Parameters
    ----------
    level:
        A ``LOG_LEVEL`` value (see :func:`parse_log_level`).
    fmt:
        ``"json"``, ``"text"``, or ``None``: text when ``stream`` is a terminal, else JSON.
    secrets:
        Values redacted from every line.
    stream:
        Where lines go (standard error by default).

    Raises
    ------
    ValueError
        For an unknown level or format.
    """
    stream = stream or sys.stderr
    if fmt is None:
        fmt = "text" if stream.isatty() else "json"
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}: use json or text")
    handler = logging.StreamHandler(stream)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else RedactingFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(parse_log_level(level))
    # discord.py logs every gateway frame at DEBUG; keep it at INFO unless asked.
    logging.getLogger("discord").setLevel(max(logging.INFO, root.level))
    # APScheduler logs four INFO lines every time the ladder re-arms its one job (hundreds a
    # minute in a storm) and httpx one per request: per-operation noise, kept for DEBUG
    quiet = logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    for name in ("apscheduler", "httpx"):
        logging.getLogger(name).setLevel(quiet)
    # the bridge has no voice features: discord.py's "PyNaCl is not installed" is noise
    logging.getLogger("discord.client").addFilter(
        lambda record: "voice will NOT be supported" not in record.getMessage()
    )
