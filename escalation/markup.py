"""Factory text made inert for chat markup: no pings, no markdown, bounded length.

Titles, descriptions, notes, names and reasons come from the factory (or from people typing
into a form) and are shown in Discord messages the bridge writes. Pure functions (no I/O, no
Discord import) so that every module that builds such a message can use them, the core included:

* :func:`neutralise_mentions` — ``@everyone``, ``@here``, ``<@id>``, ``<@!id>`` and ``<@&id>``
  get a zero-width space after the ``@`` (the approach of ``discord.utils.escape_mentions``,
  for ids of any length): they read the same and never ping (Discord pings on those exact
  tokens; a message's ``allowed_mentions`` is a second, independent guard).
* :func:`escape_markdown` — ``\\ * _ ~ | `` ` and ``[ ]`` are backslash-escaped anywhere, and
  ``>``, ``#`` and ``-`` at the start of a line (quotes, headings, lists, subtext); URLs are
  left untouched so that they stay clickable (the rules of ``discord.utils.escape_markdown``).
* :func:`escape_text` — both; :func:`inline_text` — one line, cut to a length, then escaped
  (a title inside a sentence); :func:`code_span` — an id or a version as inline code.

Discord renders a backslash before ASCII punctuation as the punctuation alone, so escaped text
reads exactly like the original.
"""

from __future__ import annotations

import re

__all__ = [
    "ZWSP",
    "code_span",
    "escape_markdown",
    "escape_text",
    "inline_text",
    "neutralise_mentions",
    "truncate",
]

#: Zero-width space: placed after an ``@`` it breaks a mention without changing how it reads.
ZWSP = "\u200b"

_MENTION = re.compile(r"@(?=(?:everyone|here)|[!&]?\d)", re.IGNORECASE)
_URL = re.compile(r"<[^:>\s\\]+:/[^>\s\\]+>|https?://[^\s<>\\]+[^\s<>\\.,:;\"'\])]")
_MARKDOWN = re.compile(r"[\\*_~|`\[\]]|^[ \t]*(?:>|#|-)", re.MULTILINE)


def neutralise_mentions(text: str) -> str:
    """``text`` with every ping token broken by a zero-width space after its ``@``.

    ``@everyone`` / ``@here`` (any case) and user/role mentions (``<@123>``, ``<@!123>``,
    ``<@&456>``) become ``@\\u200beveryone``, ``<@\\u200b123>``…; other ``@`` (e-mail
    addresses) are left alone.
    """
    return _MENTION.sub("@" + ZWSP, text)


def _escape_piece(piece: str) -> str:
    return _MARKDOWN.sub(lambda m: m.group(0)[:-1] + "\\" + m.group(0)[-1], piece)


def escape_markdown(text: str) -> str:
    """``text`` with Discord markdown backslash-escaped, URLs left as they are.

    Escaped anywhere: ``\\ * _ ~ | `` ` ``[ ]`` (bold, italics, strike, spoilers, code,
    masked links); at the start of a line (after blanks): ``>`` (quote), ``#`` (heading,
    ``-#`` subtext) and ``-`` (list).
    """
    out: list[str] = []
    last = 0
    for match in _URL.finditer(text):
        out.append(_escape_piece(text[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_escape_piece(text[last:]))
    return "".join(out)


def escape_text(text: str) -> str:
    """:func:`escape_markdown` then :func:`neutralise_mentions`: factory text safe anywhere in
    a message's content or embeds."""
    return neutralise_mentions(escape_markdown(text))


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when cut.

    A cut never leaves a lone escaping backslash before the "…" (it would show).
    """
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    head = text[: limit - 1]
    trailing = len(head) - len(head.rstrip("\\"))
    if trailing % 2:
        head = head[:-1]
    return head + "…"


def inline_text(text: str, limit: int = 200) -> str:
    """Factory text for inside a sentence: blanks collapsed to one line, cut to ``limit``
    characters (before escaping, so the result may be a little longer), then escaped."""
    return escape_text(truncate(" ".join(text.split()), limit))


def code_span(text: str, limit: int = 100) -> str:
    """Factory text as inline code (an id, a version): one line, cut to ``limit`` characters,
    backticks replaced by ``ˋ`` so that nothing breaks out of the span (inside a code span
    backslashes show and nothing renders; mention tokens are broken all the same)."""
    flat = neutralise_mentions(truncate(" ".join(text.split()), limit).replace("`", "\u02cb"))
    return f"`{flat}`" if flat else "`—`"
