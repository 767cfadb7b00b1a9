"""The :class:`escalation.ports.Announcer` adapter: the ladder's Discord posts, worded.

The core says what to post (a reminder to these people, the SLA warning, the breach alert,
the incident report); this module says it in Discord's terms (``<@id>`` mentions, ``@here``,
``<t:…>`` timestamps, jump links) and posts it through an :class:`escalation.ports.Messenger`
(``bot.discord.ladder_output.DiscordMessenger``). Titles are factory text: shown with
:func:`escalation.markup.inline_text` (never pings, no markdown).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.keyed import BoundedMap, KeyedLocks
from bot.ladder.text import discord_timestamp, task_link
from bot.settings import Settings
from escalation.markup import inline_text
from escalation.notices import PRIORITY_LABELS, late_marker
from escalation.ports import LadderTask, Messenger
from escalation.recipients import Person

__all__ = ["DiscordAnnouncer"]


def _ids(people: Sequence[Person]) -> list[int]:
    return [p.discord_user_id for p in people if p.discord_user_id]


class DiscordAnnouncer:
    """Ladder posts in Discord.

    Parameters
    ----------
    messenger
        Discord as the ladder needs it.
    settings
        ``DISCORD_TASKS_CHANNEL_ID``, ``DISCORD_ALERTS_CHANNEL_ID``, ``DISCORD_GUILD_ID``.
    report
        The incident report's text of a task (``LadderRuntime.incident_text``).
    refresh
        Queues a re-render of a task message (never blocks).
    announced
        ``(task_id, step)`` → the message id of the factory's own announcement of that SLA
        step (``bot.sla_events.factory_announced``), or ``None``: the ladder then does not
        post the same news twice.
    clock
        Now (aware UTC).

    The items of a batch share its message, and their steps come due together (created
    within one group wait): one reminder, warning or breach alert per step speaks for the
    whole batch, and the other items' within ``ESCALATION_BUNDLE_SECONDS`` of it are
    ``skipped`` (covered), instead of one ping per item on the same message.
    """

    def __init__(
        self,
        messenger: Messenger,
        settings: Settings,
        *,
        report: Callable[[LadderTask], Awaitable[str]],
        refresh: Callable[[str], None],
        announced: Callable[[str, str], Awaitable[int | None]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.messenger = messenger
        self.settings = settings
        self._report = report
        self._refresh = refresh
        self._announced = announced
        self._clock = clock
        #: (batch message id, step) → (when it was posted, its message id, who it mentioned):
        #: the post that speaks for the batch's items whose step was due by then
        self._batch_posts: BoundedMap[tuple[int, str], tuple[datetime, int, frozenset[int]]]
        self._batch_posts = BoundedMap(4096)
        #: one post of a batch's step at a time: the items due together wait for the first
        self._batch_locks: KeyedLocks[tuple[int, str]] = KeyedLocks()

    def _batch_lock(self, task: LadderTask, step: str) -> AbstractAsyncContextManager[None]:
        key = _batch_key(task, step)
        return nullcontext() if key is None else self._batch_locks(key)

    def _cover(
        self, task: LadderTask, step: str, late_seconds: float
    ) -> tuple[int, frozenset[int]] | None:
        """The post of this batch's ``step`` that speaks for this item, as ``(message id, people
        it mentioned)``: made within ``ESCALATION_BUNDLE_SECONDS`` and once this item's step
        was due (an item that breached after the alert is not covered by it); else ``None``."""
        key = _batch_key(task, step)
        posted = None if key is None else self._batch_posts.get(key)
        if posted is None:
            return None
        at, message_id, mentioned = posted
        now = self._clock()
        due = now - timedelta(seconds=late_seconds)
        if (now - at).total_seconds() > self.settings.escalation_bundle_seconds or due > at:
            return None
        return message_id, mentioned

    def _posted_for_batch(
        self, task: LadderTask, step: str, at: datetime, message_id: int, ids: Sequence[int]
    ) -> None:
        key = _batch_key(task, step)
        if key is not None:
            earlier = self._batch_posts.get(key)
            mentioned = frozenset(ids) | (earlier[2] if earlier else frozenset())
            self._batch_posts[key] = (at, message_id, mentioned)

    async def _already(self, task: LadderTask, step: str, what: str) -> dict[str, Any] | None:
        """The skipped detail when the factory already announced ``step``, else ``None``."""
        if self._announced is None:
            return None
        posted = await self._announced(task.task_id, step)
        if posted is None:
            return None
        return {"message_id": posted, "note": f"the factory's {what} was posted", "skipped": True}

    def refresh(self, task_id: str) -> None:
        """Re-render the task message soon."""
        self._refresh(task_id)

    async def post_on_task(
        self, task: LadderTask, content: str, *, user_ids: Sequence[int], everyone: bool
    ) -> int:
        """Post ``content`` as a reply to the task message; the message id."""
        channel = task.channel_id or self.settings.discord_tasks_channel_id
        return await self.messenger.post(
            channel,
            content[:2000],
            reply_to=task.message_id,
            user_ids=user_ids,
            everyone=everyone,
        )

    async def reminder(
        self, task: LadderTask, targets: Sequence[Person], late_seconds: float
    ) -> dict[str, Any]:
        """ "⏰ @who reminder: … is still waiting for a decision" in a reply; for an item of a
        batch, one reply speaks for the batch, and a later item's mentions only whom it has not
        (another assignee)."""
        async with self._batch_lock(task, "reminder"):
            ids = _ids(targets)
            cover = self._cover(task, "reminder", late_seconds)
            if cover is not None:
                ids = [i for i in ids if i not in cover[1]]
                if not ids:
                    return _covered_by(cover[0])
            who = " ".join(f"<@{i}>" for i in ids) or "Nobody is on call in the roster:"
            content = (
                f"⏰ {who} reminder: {_what(task)} still waiting for a decision (SLA deadline "
                f"{discord_timestamp(task.deadline)}).{late_marker(late_seconds)}"
            )
            at = self._clock()
            message_id = await self.post_on_task(task, content, user_ids=ids, everyone=False)
            self._posted_for_batch(task, "reminder", at, message_id, ids)
        return {"message_id": message_id, "mentioned": ids}

    async def warning(
        self, task: LadderTask, on_call: Sequence[Person], late_seconds: float
    ) -> dict[str, Any]:
        """ "🔴 SLA breach imminent @here" in a reply (the on-call people without the
        MENTION_EVERYONE permission)."""
        if (skipped := await self._already(task, "sla_warning", "warning")) is not None:
            return skipped
        async with self._batch_lock(task, "sla_warning"):
            if (cover := self._cover(task, "sla_warning", late_seconds)) is not None:
                return _covered_by(cover[0])
            return await self._warning(task, on_call, late_seconds)

    async def _warning(
        self, task: LadderTask, on_call: Sequence[Person], late_seconds: float
    ) -> dict[str, Any]:
        channel = task.channel_id or self.settings.discord_tasks_channel_id
        everyone = self.messenger.may_mention_everyone(channel)
        ids = [] if everyone else _ids(on_call)
        ping = "@here" if everyone else (" ".join(f"<@{i}>" for i in ids) or "on-call")
        breaches = "breach their SLA from" if _batch_key(task, "") else "breaches its SLA"
        content = (
            f"🔴 SLA breach imminent {ping}: {_what(task, verb=False)} {breaches} "
            f"{discord_timestamp(task.deadline)}.{late_marker(late_seconds)}"
        )
        at = self._clock()
        message_id = await self.post_on_task(task, content, user_ids=ids, everyone=everyone)
        self._posted_for_batch(task, "sla_warning", at, message_id, ids)
        note = "@here" if everyone else "no MENTION_EVERYONE permission: on-call mentioned"
        return {"message_id": message_id, "mentioned": ids, "note": note}

    async def breach_alert(
        self, task: LadderTask, on_call: Sequence[Person], late_seconds: float
    ) -> dict[str, Any]:
        """ "🚨 SLA breached @here" in the alerts channel, with a link to the task."""
        if (skipped := await self._already(task, "sla_breach", "breach alert")) is not None:
            return skipped
        async with self._batch_lock(task, "sla_breach"):
            if (cover := self._cover(task, "sla_breach", late_seconds)) is not None:
                return _covered_by(cover[0])
            return await self._breach_alert(task, on_call, late_seconds)

    async def _breach_alert(
        self, task: LadderTask, on_call: Sequence[Person], late_seconds: float
    ) -> dict[str, Any]:
        channel = self.settings.alerts_channel_id
        everyone = self.messenger.may_mention_everyone(channel)
        ids = [] if everyone else _ids(on_call)
        ping = "@here" if everyone else (" ".join(f"<@{i}>" for i in ids) or "on-call")
        priority = PRIORITY_LABELS.get(task.task.priority, task.task.priority.value)
        passed = "passed their deadline from" if _batch_key(task, "") else "passed its deadline"
        content = (
            f"🚨 SLA breached {ping}: {_what(task, verb=False)} ({priority}) {passed} "
            f"{discord_timestamp(task.deadline)}{late_marker(late_seconds)}. "
            f"{task_link(task, self.settings.discord_guild_id)}"
        )
        at = self._clock()
        message_id = await self.messenger.post(
            channel, content[:2000], user_ids=ids, everyone=everyone
        )
        self._posted_for_batch(task, "sla_breach", at, message_id, ids)
        return {"message_id": message_id, "everyone": everyone}

    async def incident_report(self, task: LadderTask) -> dict[str, Any]:
        """The incident report in the alerts channel."""
        content = await self._report(task)
        message_id = await self.messenger.post(self.settings.alerts_channel_id, content)
        return {"message_id": message_id}


def _covered_by(message_id: int) -> dict[str, Any]:
    """A step an earlier post of the batch spoke for: ``skipped`` (nothing posted again)."""
    return {"message_id": message_id, "note": "covered by the batch's post", "skipped": True}


def _batch_key(task: LadderTask, step: str) -> tuple[int, str] | None:
    """``(batch message id, step)`` for an item of a batch message, else ``None``."""
    if getattr(task, "batch_id", None) is None or task.message_id is None:
        return None
    return (task.message_id, step)


def _what(task: LadderTask, *, verb: bool = True) -> str:
    """What a post is about: the task (``**title** is``), or, for an item of a batch message,
    the batch (the post speaks for every item of it due now: ``tasks of this batch are``)."""
    if _batch_key(task, "") is not None:
        return "tasks of this batch are" if verb else "tasks of a batch"
    return (
        f"**{inline_text(task.task.title)}** is" if verb else f"**{inline_text(task.task.title)}**"
    )
