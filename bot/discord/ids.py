"""The ``custom_id`` grammar of every component and modal the bridge sends, in one place.

Discord gives a clicked button, a chosen select option or a submitted modal back to the bot
with the ``custom_id`` it was sent with (Discord: "Component Reference", a custom_id is at most
100 characters). The bridge keeps no component state in memory: everything it needs is in the
id, and discord.py's :class:`discord.ui.DynamicItem` rebuilds the component from it with a
regular expression (its ``template``). This module builds every id, parses it back, and holds
the templates, so that the builders and the parsers cannot drift apart:

========================  ==============================================  ======================
component                 custom_id                                       built by
========================  ==============================================  ======================
task button               ``fb:t:<action>:<task id>``                     :func:`task_button`
snooze select             ``fb:snooze:<task id>``                         :func:`snooze_select`
decision option select    ``fb:t:pick:<task id>``                         :func:`option_select`
batch "Pick an item…"     ``fb:b:pick:<batch id>``                        :func:`batch_pick`
batch Approve Low-Risk    ``fb:b:approve-low:<batch id>``                 :func:`batch_approve_low`
batch Review All          ``fb:b:review:<batch id>[:<page>]``             :func:`batch_review`
batch ◀ / ▶               ``fb:b:pg:<batch id>:<page>:<p|n>``             :func:`batch_page`
listing ◀ / ▶             ``fb:pg:<kind>:<arg>:<page>:<p|n>``             :func:`page_button`
modal                     ``fb:m:<kind>:<task id>:<opening id>``          :func:`modal_custom_id`
========================  ==============================================  ======================

``<action>`` is ``approve``, ``reject``, ``details``, ``ack`` or ``done``; ``<kind>`` of a listing is
``pending``, ``pipelines``, ``blockers`` or ``history``; ``<page>`` of a batch message is the
0-based page of 20 items the click shows (a batch message of any size is ONE message: its
pages are re-read from the store at each click); the opening id of a modal is the id of
the interaction that opened it (one id per opening: see :mod:`bot.discord.modals`).

``bot/reconcile.py`` reads task ids back from posted messages with its own expression (it sits
below the Discord layer and may not import it); ``tests/discord`` checks both agree.
"""

from __future__ import annotations

import re

__all__ = [
    "BATCH_APPROVE_LOW_TEMPLATE",
    "BATCH_ID",
    "BATCH_PAGE_TEMPLATE",
    "BATCH_PICK_TEMPLATE",
    "BATCH_PREFIX",
    "BATCH_REVIEW_TEMPLATE",
    "CUSTOM_ID_MAX",
    "LISTING_KINDS",
    "MODAL_PREFIX",
    "OPTION_SELECT_TEMPLATE",
    "PAGE_TEMPLATE",
    "SNOOZE_TEMPLATE",
    "TASK_ACTIONS",
    "TASK_BUTTON_TEMPLATE",
    "TASK_ID",
    "batch_approve_low",
    "batch_page",
    "batch_pick",
    "batch_review",
    "is_task_id",
    "modal_custom_id",
    "option_select",
    "page_button",
    "parse_modal_id",
    "parse_task_component",
    "snooze_select",
    "task_button",
]

#: Discord: a component or modal custom_id is at most 100 characters.
CUSTOM_ID_MAX = 100

#: What a factory task id looks like to the bridge (contract: ids are short slugs).
TASK_ID = r"[A-Za-z0-9_.\-]{1,64}"
#: What a batch id looks like (``batching``: ``b<seq>-<first task id>``, ≤ 80).
BATCH_ID = r"[A-Za-z0-9_.\-]{1,80}"

#: Actions of the buttons on a task message.
TASK_ACTIONS = ("approve", "reject", "details", "ack", "done")
#: Listings of ``/factory`` that page with ◀ / ▶.
LISTING_KINDS = ("pending", "pipelines", "blockers", "history")

BATCH_PREFIX = "fb:b:"
MODAL_PREFIX = "fb:m:"

#: DynamicItem templates (discord.py matches them against the whole custom_id).
TASK_BUTTON_TEMPLATE = rf"fb:t:(?P<action>{'|'.join(TASK_ACTIONS)}):(?P<task_id>{TASK_ID})"
SNOOZE_TEMPLATE = rf"fb:snooze:(?P<task_id>{TASK_ID})"
#: The option select of a ``decision`` task (``fb:t:…`` so reconciliation finds its task).
OPTION_SELECT_TEMPLATE = rf"fb:t:pick:(?P<task_id>{TASK_ID})"
BATCH_PICK_TEMPLATE = rf"fb:b:pick:(?P<batch_id>{BATCH_ID})"
BATCH_APPROVE_LOW_TEMPLATE = rf"fb:b:approve-low:(?P<batch_id>{BATCH_ID})"
#: Review All: the page's items (``:<page>`` absent on messages from before pages: page 0).
BATCH_REVIEW_TEMPLATE = rf"fb:b:review:(?P<batch_id>{BATCH_ID})(?::(?P<page>\d{{1,5}}))?"
BATCH_PAGE_TEMPLATE = rf"fb:b:pg:(?P<batch_id>{BATCH_ID}):(?P<page>\d{{1,5}}):(?P<dir>[pn])"
PAGE_TEMPLATE = (
    rf"fb:pg:(?P<kind>{'|'.join(LISTING_KINDS)})"
    rf":(?P<arg>{TASK_ID}|):(?P<page>-?\d{{1,4}}):(?P<dir>[pn])"
)

_TASK_ID_RE = re.compile(rf"^{TASK_ID}$")
_TASK_COMPONENT_RE = re.compile(
    rf"^(?:{TASK_BUTTON_TEMPLATE}|fb:snooze:(?P<snoozed>{TASK_ID})|fb:t:pick:(?P<picked>{TASK_ID}))$"
)
_MODAL_ID_RE = re.compile(
    r"^fb:m:(?P<kind>[a-z]{1,16}):(?P<task_id>[^:]{1,64})(?::(?P<nonce>\d{1,20}))?$"
)


def is_task_id(text: str) -> bool:
    """Whether ``text`` is shaped like a task id (:data:`TASK_ID`, 1–64 characters)."""
    return _TASK_ID_RE.match(text) is not None


def task_button(action: str, task_id: str) -> str:
    """``fb:t:<action>:<task id>`` (``action`` one of :data:`TASK_ACTIONS`)."""
    return f"fb:t:{action}:{task_id}"


def snooze_select(task_id: str) -> str:
    """``fb:snooze:<task id>``."""
    return f"fb:snooze:{task_id}"


def option_select(task_id: str) -> str:
    """``fb:t:pick:<task id>``: the option select of a ``decision`` task (contract §1.4)."""
    return f"fb:t:pick:{task_id}"


def parse_task_component(custom_id: str) -> str | None:
    """The task id of a task message's button or snooze select, else ``None``."""
    match = _TASK_COMPONENT_RE.match(custom_id)
    if match is None:
        return None
    return match["task_id"] or match["snoozed"] or match["picked"]


def batch_pick(batch_id: str) -> str:
    """``fb:b:pick:<batch id>``: the "Pick an item…" select of a batch message."""
    return f"{BATCH_PREFIX}pick:{batch_id}"


def batch_approve_low(batch_id: str) -> str:
    """``fb:b:approve-low:<batch id>``: "Approve All Low-Risk (N)"."""
    return f"{BATCH_PREFIX}approve-low:{batch_id}"


def batch_review(batch_id: str, page: int = 0) -> str:
    """``fb:b:review:<batch id>[:<page>]``: "Review All" of one page of a batch message (the
    first page keeps the id of messages from before pages)."""
    return f"{BATCH_PREFIX}review:{batch_id}" + (f":{page}" if page else "")


def batch_page(batch_id: str, page: int, direction: str) -> str:
    """``fb:b:pg:<batch id>:<page>:<p|n>``: a batch message's ◀ (``p``) or ▶ (``n``) button.

    ``page`` is the 0-based page the click shows (≤ 99,999; a batch id is ≤ 80 characters, so
    the id stays within Discord's 100).
    """
    return f"{BATCH_PREFIX}pg:{batch_id}:{page}:{direction}"


def page_button(kind: str, arg: str, page: int, direction: str) -> str:
    """``fb:pg:<kind>:<arg>:<page>:<p|n>``: a listing's ◀ (``p``) or ▶ (``n``) button.

    ``page`` is the 0-based page the click shows; ``arg`` the listing's filter ("" for none).
    """
    return f"fb:pg:{kind}:{arg}:{page}:{direction}"


def modal_custom_id(kind: str, task_id: str, nonce: int | str) -> str:
    """``fb:m:<kind>:<task id>:<nonce>``: unique per opening when ``nonce`` is the opening
    interaction's id.

    Raises
    ------
    ValueError
        When the id would exceed Discord's 100 characters or does not parse back.
    """
    custom_id = f"{MODAL_PREFIX}{kind}:{task_id}:{nonce}"
    if len(custom_id) > CUSTOM_ID_MAX or parse_modal_id(custom_id) != (kind, task_id):
        raise ValueError(f"cannot build a modal id for {kind!r} / {task_id!r}")
    return custom_id


def parse_modal_id(custom_id: str) -> tuple[str, str] | None:
    """``(kind, task id)`` of a bridge modal's custom_id (with or without the opening's id, so
    forms opened before per-opening ids were introduced are answered too), else ``None``."""
    match = _MODAL_ID_RE.match(custom_id)
    if match is None:
        return None
    return match["kind"], match["task_id"]
