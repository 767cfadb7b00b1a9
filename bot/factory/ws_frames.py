"""The factory WebSocket's frames as text, and what the log shows of them (contract §1.6).

Helpers of :mod:`bot.factory.ws_intake`: the text of a frame, text or binary
(:func:`frame_text`, :class:`FrameRejected`); a value a server sent, shortened and made printable
(:func:`short`, :func:`printable`); the ``error`` of an ``error`` frame whatever its shape
(:func:`describe_error`, :func:`refusal_code`); and the URL and token kept out of the log
(:func:`url_for_log`, :func:`token_secrets`, :func:`redactor`): the token may come from ``FACTORY_WS_TOKEN`` or be
written in ``FACTORY_WS_URL`` as ``?token=<jwt>`` (§1.6 "Connect: wss://…/v1/ws?token=<jwt>"),
and aiohttp's errors quote the request URL percent-encoded.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import aiohttp
from yarl import URL

from bot.logs import redact, url_secrets

__all__ = [
    "REFUSAL_ERROR_CODES",
    "FrameRejected",
    "describe_error",
    "frame_text",
    "printable",
    "redactor",
    "refusal_code",
    "short",
    "token_secrets",
    "url_for_log",
]

#: ``error`` frame codes that refuse the bridge (contract §1.6 "On connect error", §1.3).
REFUSAL_ERROR_CODES = frozenset({"UNAUTHORIZED", "FORBIDDEN"})


class FrameRejected(Exception):
    """A frame the intake cannot take; ``str()`` says why (printable, short).

    Parameters
    ----------
    reason:
        Why, for the log and ``/healthz``.
    closed:
        True when aiohttp closed the connection for it (a protocol error, RFC 6455 §7.4.1).
    """

    def __init__(self, reason: str, *, closed: bool = False) -> None:
        super().__init__(reason)
        self.closed = closed


def frame_text(message: aiohttp.WSMessage) -> str | None:
    """The text of a data frame; ``None`` for a message that is no frame of the factory.

    §1.6 frames are JSON text: a text frame is taken as it is, a binary frame decoded as
    UTF-8.

    Raises
    ------
    FrameRejected
        For a binary frame that is not UTF-8; and, with ``closed``, for the protocol error
        aiohttp closed the connection for (an ``ERROR`` holding a ``WebSocketError``: a frame
        over ``max_msg_size``, 1009; a text frame that is not UTF-8, 1007).
    """
    if message.type is aiohttp.WSMsgType.TEXT:
        return str(message.data)
    if message.type is aiohttp.WSMsgType.BINARY:
        try:
            return bytes(message.data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameRejected(f"a binary frame not in UTF-8: {exc}") from None
    error = message.data
    if message.type is aiohttp.WSMsgType.ERROR and isinstance(error, aiohttp.WebSocketError):
        raise FrameRejected(f"code {error.code}: {short(str(error))}", closed=True)
    return None


#: Bounded ``repr`` for values a server sent: short, and safe however deep they are nested.
_REPR = reprlib.Repr()
_REPR.maxstring = 200
_REPR.maxother = 200


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (a lone surrogate from JSON) escaped.

    A lone surrogate such as ``"\\ud800"`` is valid JSON, but a log handler writing it as
    UTF-8 fails ("--- Logging error ---") and the line is lost; it is written ``\\ud800``.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def short(value: object) -> str:
    """``value`` for a log line: at most a few hundred characters, never recursing deeply.

    A string is given as it is (shortened, made :func:`printable`); anything else as its
    bounded ``repr``.
    """
    if isinstance(value, str):
        return printable(value if len(value) <= 200 else value[:197] + "...")
    return _REPR.repr(value)


def refusal_code(error: object) -> str | None:
    """``UNAUTHORIZED`` or ``FORBIDDEN`` when an error frame's ``error`` refuses the bridge.

    Contract §1.6: ``{"type": "error", "error": {"code": "UNAUTHORIZED", "message": "..."}}``
    on a connect error; codes as in §1.3. Any other shape is ``None``.
    """
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and code in REFUSAL_ERROR_CODES else None


def describe_error(error: object) -> str:
    """The ``error`` of an error frame for the log, whatever its shape.

    Contract §1.6: ``{"type": "error", "error": {"code": "UNAUTHORIZED", "message": "..."}}``
    gives ``UNAUTHORIZED: ...``; a string is logged as it is (shortened), anything else
    (missing, ``null``, a list, a number, an object without those keys) as its bounded repr.
    """
    if isinstance(error, dict) and ("code" in error or "message" in error):
        return f"{short(error.get('code'))}: {short(error.get('message'))}"
    return short(error)


def url_for_log(url: str) -> str:
    """``FACTORY_WS_URL`` without its query, fragment and user info (§1.6 puts the token there).

    A URL yarl cannot parse is cut at the first ``?`` or ``#`` and its user info dropped.
    """
    try:
        return str(URL(url).with_user(None).with_query(None).with_fragment(None))
    except ValueError:
        head = url.partition("?")[0].partition("#")[0]
        scheme, sep, rest = head.rpartition("://")
        return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else head.rpartition("@")[2]


def token_secrets(url: str, token: str | None) -> list[str]:
    """Every spelling of the WebSocket's secrets that may show in an error text (§1.6).

    Parameters
    ----------
    url:
        ``FACTORY_WS_URL``: its password and secret query values (``?token=<jwt>``), as
        :func:`bot.logs.url_secrets` finds them.
    token:
        ``FACTORY_WS_TOKEN``, or ``None``.

    Returns
    -------
    list[str]
        Each secret as it is and percent-encoded the ways a client may quote it in a URL
        (``quote`` with and without ``/`` kept, ``quote_plus``, and yarl's query encoding,
        which aiohttp's errors show), for :func:`bot.logs.redact`.
    """
    found: list[str] = []
    for secret in [*([token] if token else []), *url_secrets(url)]:
        found += [secret, quote(secret, safe=""), quote(secret), quote_plus(secret)]
        found.append(URL("ws://h/").with_query({"t": secret}).raw_query_string[2:])
    return [value for value in dict.fromkeys(found) if value]


def redactor(url: str, token: str | None) -> Callable[[object], str]:
    """A function giving ``str(value)`` without the WebSocket's secrets, made printable.

    The secrets are :func:`token_secrets` of ``url`` and ``token`` (contract §1.6), masked by
    :func:`bot.logs.redact`: an aiohttp error quoting the request URL shows no token.
    """
    secrets = token_secrets(url, token)

    def redacted(value: object) -> str:
        return printable(redact(str(value), secrets))

    return redacted
