"""Factory text made inert: no ping survives escaping, and escaped text reads the same."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from escalation.markup import (
    ZWSP,
    code_span,
    escape_markdown,
    escape_text,
    inline_text,
    neutralise_mentions,
    truncate,
)

PING = re.compile(r"@(?:everyone|here)|<@[!&]?\d", re.IGNORECASE)
#: Discord (CommonMark): a backslash before ASCII punctuation shows the punctuation alone.
UNESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")

hostile = st.text(
    alphabet=st.sampled_from(list("@everyonhr<>&!0123456789*_~|`[]()#-\\ \n:/.abcé")), max_size=80
)


def shown(text: str) -> str:
    """What Discord displays for ``text`` once markdown escapes are resolved (ZWSP invisible)."""
    return UNESCAPE.sub(r"\1", text).replace(ZWSP, "")


@given(hostile | st.text(max_size=80))
def test_no_ping_token_survives(text: str) -> None:
    assert PING.search(escape_text(text)) is None


@given(hostile | st.text(max_size=80))
def test_escaped_text_reads_like_the_original(text: str) -> None:
    assert shown(escape_text(text)) == text.replace(ZWSP, "")


@given(st.text(max_size=300), st.integers(min_value=1, max_value=120))
def test_inline_text_is_one_line_and_bounded(text: str, limit: int) -> None:
    out = inline_text(text, limit)
    assert "\n" not in out
    assert PING.search(out) is None
    assert len(shown(out)) <= limit


def test_pings_are_broken_but_email_addresses_kept() -> None:
    assert neutralise_mentions("@everyone @Here <@123> <@!9> <@&456>") == (
        f"@{ZWSP}everyone @{ZWSP}Here <@{ZWSP}123> <@{ZWSP}!9> <@{ZWSP}&456>"
    )
    assert neutralise_mentions("ops@example.com") == "ops@example.com"


def test_markdown_is_escaped_and_urls_kept() -> None:
    assert escape_markdown("**bold** _it_ ~~s~~ ||sp|| `c` [x](y)") == (
        r"\*\*bold\*\* \_it\_ \~\~s\~\~ \|\|sp\|\| \`c\` \[x\](y)"
    )
    assert escape_markdown("# head\n> quote\n - item") == "\\# head\n\\> quote\n \\- item"
    assert escape_markdown("see https://x.io/a_b_c*d now") == "see https://x.io/a_b_c*d now"


def test_truncate_never_leaves_a_lone_escape() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcdef", 4) == "abc…"
    assert truncate("ab\\*cd", 4) == "ab…"
    assert truncate("x", 0) == ""


def test_code_span_cannot_be_broken_out_of() -> None:
    assert code_span("v1`@everyone`") == f"`v1ˋ@{ZWSP}everyoneˋ`"
    assert code_span("") == "`—`"
