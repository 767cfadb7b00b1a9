"""Which tasks a message of the bot shows, read back from the message itself.

Used by :meth:`bot.reconcile.rebuild.ChannelRebuild.rebuild` when the store lost the
task → message map: a task message's buttons carry ``custom_id`` ``fb:t:<action>:<task id>``
(or ``fb:snooze:<task id>``) and its embed footer reads ``task <task id>`` (a decided message
has no buttons left); a batch message has ``fb:b:…`` components, a footer ending in
``batch <batch id>`` and lists its items in its ``fb:b:pick:<batch id>`` select. These are the
ids :mod:`bot.discord.views`, :mod:`bot.discord.embeds` and :mod:`bot.discord.batch_views`
write; the messages come as Discord JSON (components and ``discord.Embed.to_dict()``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MessageRefs", "message_refs"]

_TASK_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_SINGLE_ID = re.compile(r"^fb:(?:t:[a-z]+|snooze):(?P<task_id>[A-Za-z0-9_.\-]{1,64})$")
_FOOTER_TASK = re.compile(r"^task (?P<task_id>[A-Za-z0-9_.\-]{1,64})(?:\s|$)")
_FOOTER_BATCH = re.compile(r"(?:^|\s)batch (?P<batch_id>[A-Za-z0-9_.\-]{1,64})\s*$")


@dataclass(frozen=True)
class MessageRefs:
    """The tasks one of the bot's messages shows.

    ``batch_id`` is set for a batch message (``None`` for a single-task message).
    """

    task_ids: tuple[str, ...]
    batch_id: str | None = None


def message_refs(
    components: Sequence[dict[str, Any]],
    embeds: Sequence[dict[str, Any]],
    *,
    known_ids: Collection[str] = (),
) -> MessageRefs | None:
    """Which tasks a message of the bot shows, from its components and embeds.

    Parameters
    ----------
    components:
        The message's components as Discord JSON (action rows and their children).
    embeds:
        The message's embeds as Discord JSON (``discord.Embed.to_dict()``).
    known_ids:
        Task ids (the factory's open ones) to look for in a batch message whose pick
        select does not list its items.

    Returns
    -------
    MessageRefs or None
        ``None`` when the message is not a task or batch message (alerts, reminders …). For a
        batch message the ids are the values of its ``fb:b:pick:<batch id>`` select (every
        item, in display order), else the ``known_ids`` found anywhere in it.
    """
    items = _walk(components)
    custom_ids = [str(c["custom_id"]) for c in items if isinstance(c.get("custom_id"), str)]
    batch_ids = [cid for cid in custom_ids if cid.startswith("fb:b:")]
    if batch_ids or _batch_footer(embeds):
        batch_id = _batch_footer(embeds) or (batch_ids[0].rsplit(":", 1)[-1] if batch_ids else None)
        found: list[str] = []
        for c in items:
            if str(c.get("custom_id") or "").startswith("fb:b:pick:"):
                found.extend(str(o.get("value")) for o in c.get("options") or [])
        if not found:
            text = json.dumps([list(components), list(embeds)], ensure_ascii=False)
            found = sorted((i for i in known_ids if i in text), key=text.index)
        ids = tuple(dict.fromkeys(i for i in found if _TASK_ID.fullmatch(i)))
        return MessageRefs(ids, batch_id) if ids else None
    for cid in custom_ids:
        match = _SINGLE_ID.match(cid)
        if match:
            return MessageRefs((match["task_id"],))
    for embed in embeds:
        footer = str((embed.get("footer") or {}).get("text") or "")
        names = {str(f.get("name")) for f in embed.get("fields") or []}
        match = _FOOTER_TASK.match(footer)
        if match and "SLA Deadline" in names:  # a task embed (buttons gone once decided)
            return MessageRefs((match["task_id"],))
    return None


def _batch_footer(embeds: Sequence[dict[str, Any]]) -> str | None:
    for embed in embeds:
        footer = str((embed.get("footer") or {}).get("text") or "")
        match = _FOOTER_BATCH.search(footer)
        if match:
            return match["batch_id"]
    return None


def _walk(components: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every component in a message's component JSON (rows and their children), in order."""
    found: list[dict[str, Any]] = []
    for item in components or []:
        if isinstance(item, dict):
            found.append(item)
            found.extend(_walk(item.get("components") or []))
    return found
