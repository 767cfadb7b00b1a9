"""Discord wording helpers of the ladder: timestamps, task links, fitting lines in a message."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from escalation.markup import code_span
from escalation.ports import LadderTask

__all__ = ["discord_timestamp", "fit_lines", "task_link"]


def fit_lines(head: str, lines: Sequence[str], *, limit: int, more: str) -> str:
    """``head`` and as many whole ``lines`` as fit in ``limit`` characters (Discord: 2000 per
    message), then ``more`` (with ``{n}`` = lines left out) instead of cutting a line.

    Lines are read in order and only until one does not fit: ``lines`` may be a lazy
    sequence that formats each line when read (a bundle of thousands of reminders)."""
    kept = [head]
    length = len(head)
    for index, line in enumerate(lines):
        tail = "\n" + more.format(n=len(lines) - index)
        if length + 1 + len(line) + (len(tail) if index < len(lines) - 1 else 0) > limit:
            kept.append(tail.lstrip("\n"))
            break
        kept.append(line)
        length += 1 + len(line)
    return "\n".join(kept)


def discord_timestamp(at: datetime, style: str = "R") -> str:
    """A Discord timestamp ``<t:unix:style>`` (Discord docs, "Message Formatting":
    ``R`` relative, ``T`` long time), shown in each reader's own time zone."""
    return f"<t:{int(at.timestamp())}:{style}>"


def task_link(task: LadderTask, guild_id: int) -> str:
    """A jump link to the task's message, or its id in a code span before it is posted."""
    if task.channel_id is None or task.message_id is None:
        return f"task {code_span(task.task_id)}"
    return f"https://discord.com/channels/{guild_id}/{task.channel_id}/{task.message_id}"
