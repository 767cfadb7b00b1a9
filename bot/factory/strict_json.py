"""JSON the bridge can take: decoded strictly, and checked before any model sees it.

RFC 8259 JSON has no ``NaN`` or ``Infinity`` and no limit on nesting or on the length of a
number; Python's :func:`json.loads` accepts the first, raises ``RecursionError`` on the second
(about 1,000 levels) and ``ValueError`` on integers of more than 4,300 digits, and keeps the
lone surrogates that ``\\ud800``-style escapes can produce (text that cannot be encoded as
UTF-8, so it cannot be stored or sent to Discord). The bridge refuses all of these up front with
a reason, so that a document it accepted can always be stored, rendered and processed:

=====================================  ==========================================================
refused                                why
=====================================  ==========================================================
invalid UTF-8, invalid JSON            not a JSON text (RFC 8259 §8.1: JSON text is UTF-8)
``NaN``, ``Infinity``, ``1e999``       not finite: no JSON number, no contract field takes one
integers longer than 30 digits         no contract field needs one (JavaScript numbers are
                                       doubles); Python parses long digit strings in quadratic time
nesting deeper than 64 levels          no contract entity is nested more than a few levels; the
                                       bridge's serialisers and renderers recurse
lone surrogates in keys or strings     not Unicode text: cannot be encoded as UTF-8
=====================================  ==========================================================

:func:`loads` decodes a request body; :func:`check_document` checks an already decoded value
(an event read back from the store, a WebSocket frame) and names the offending field.
:func:`document_needs_check` tells, from the text alone, when that walk cannot refuse what
:func:`loads` decoded (the decoder's hooks refuse numbers; only nesting and lone surrogates are
left), so the webhook and Redis Streams intakes walk only documents that could fail it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "UnacceptableJson",
    "check_document",
    "document_needs_check",
    "has_lone_surrogate",
    "loads",
]

#: Deepest nesting accepted (the root object is level 0).
MAX_DEPTH = 64
#: Longest integer literal accepted, in digits.
MAX_INT_DIGITS = 30


class UnacceptableJson(ValueError):
    """A document the bridge cannot take; ``field`` is its dotted path when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


def _constant(name: str) -> Any:
    raise UnacceptableJson(f"{name} is not a JSON number (numbers must be finite)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnacceptableJson(f"number {text[:40]} is out of range (numbers must be finite)")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise UnacceptableJson(
            f"integer of {len(text.lstrip('-'))} digits is too long (at most {MAX_INT_DIGITS})"
        )
    return int(text)


#: The strict decoder, built once (``json.loads`` with these hooks builds one per call).
_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)
#: A ``\\u`` escape of a UTF-16 surrogate (``\\ud800``–``\\udfff``): the only way a text
#: decoded from valid UTF-8 can hold a lone surrogate once :func:`json.loads` has read it.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def document_needs_check(text: bytes | str, *, level: int = 0, max_depth: int = MAX_DEPTH) -> bool:
    """Whether :func:`check_document` could refuse a value :func:`loads` decoded from ``text``.

    :func:`loads` already refuses what its number hooks see (``NaN``, ``Infinity``, numbers out
    of range, integers over :data:`MAX_INT_DIGITS` digits, which also keeps every integer within
    :func:`check_document`'s 100 bits), so of the module table only nesting and lone surrogates
    are left. This answers ``False`` — skip the walk, nothing in it can be refused — only when
    the text cannot hold either, judged from the text in one quick pass: fewer ``{``/``[``
    characters (wherever they are) than the nesting limit leaves room for, no ``\\u``
    escape of a surrogate, and (for text) no lone surrogate character. Anything else answers
    ``True`` and the caller runs :func:`check_document`, so its reasons are unchanged.

    Parameters
    ----------
    text:
        The JSON text :func:`loads` decoded (bytes that decoded as UTF-8, or text).
    level:
        How deep the decoded value is placed in the document that is checked (0: it is the
        root; 1: a Redis stream entry's ``data``, under the rebuilt ``WsEvent``).
    max_depth:
        :func:`check_document`'s limit.
    """
    if isinstance(text, bytes):
        if text.count(b"{") + text.count(b"[") + level > max_depth:
            return True
        # bytes that decoded as UTF-8 hold no surrogate themselves; only an escape can make one
        return b"\\u" in text and _SURROGATE_ESCAPE_BYTES.search(text) is not None
    if text.count("{") + text.count("[") + level > max_depth:
        return True
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None:
        return True
    return not text.isascii() and has_lone_surrogate(text)


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (text that cannot be encoded as UTF-8)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def loads(body: bytes | str, *, check: bool = True) -> Any:
    """Decode a JSON text strictly and check it with :func:`check_document`.

    Parameters
    ----------
    body:
        UTF-8 bytes (a request body) or text.
    check:
        Run :func:`check_document` too (``False`` when the caller checks the value next,
        e.g. :func:`bot.factory.events.parse_event` does).

    Returns
    -------
    Any
        The decoded value.

    Raises
    ------
    UnacceptableJson
        For invalid UTF-8, invalid JSON, or anything :func:`check_document` refuses; the
        message says what, the field where (when known).
    """
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as exc:
        raise UnacceptableJson(f"body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        if text.startswith("\ufeff"):  # what json.loads says (its decoder does not check)
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except UnacceptableJson:
        raise
    except RecursionError:
        raise UnacceptableJson(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # json.JSONDecodeError and Python's own number limits
        raise UnacceptableJson(f"body is not valid JSON: {exc}") from None
    if check and document_needs_check(text):
        check_document(value)
    return value


def _dotted(path: tuple[str | int, ...]) -> str:
    """``data.task.title``; odd keys are escaped and shortened (the path is echoed back)."""
    parts = []
    for part in path:
        text = str(part).encode("utf-8", "backslashreplace").decode("utf-8")
        parts.append(text if len(text) <= 64 else text[:61] + "...")
    dotted = ".".join(parts)
    return (dotted if len(dotted) <= 300 else "..." + dotted[-297:]) or "body"


def _check_text(text: str, path: tuple[str | int, ...]) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UnacceptableJson(
            "text contains a lone surrogate (not valid Unicode)", _dotted(path)
        ) from None


def _check_scalar(value: object, path: tuple[str | int, ...]) -> None:
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise UnacceptableJson("number is not finite", _dotted(path))
    elif isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 100:  # about 30 digits, without converting to text
            raise UnacceptableJson(
                f"integer is too long (at most {MAX_INT_DIGITS} digits)", _dotted(path)
            )


def check_document(value: object, *, max_depth: int = MAX_DEPTH) -> None:
    """Check a decoded JSON value: depth, finite numbers, integer length, valid Unicode.

    Iterative (no recursion), one pass over the document.

    Parameters
    ----------
    value:
        What :func:`json.loads` returned.
    max_depth:
        Deepest nesting accepted (root = level 0).

    Raises
    ------
    UnacceptableJson
        Naming the first offending field by its dotted path (``data.task.title``; list items
        by index), see the module table.
    """
    stack: list[tuple[object, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        children: Any
        if isinstance(node, dict):
            children = node.items()
        elif isinstance(node, list):
            children = enumerate(node)
        else:
            _check_scalar(node, path)
            continue
        if len(path) >= max_depth:
            raise UnacceptableJson(f"nested deeper than {max_depth} levels", _dotted(path))
        for key, child in children:
            if isinstance(key, str):
                _check_text(key, (*path, key))
            if isinstance(child, dict | list):
                stack.append((child, (*path, key)))
            elif child is not None:
                _check_scalar(child, (*path, key))
