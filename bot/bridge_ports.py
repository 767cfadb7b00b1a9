"""The protocols :class:`bot.bridge.Bridge` reaches Discord through, and its no-op ladder.

:class:`Notifier` is what the bridge needs from Discord (``bot.discord.notifier`` implements
it), so that the bridge never imports discord.py; :class:`NoEscalation` stands in for the
escalation ladder when none is attached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.factory.events import FactoryEvent
    from bot.store import TrackedTask

__all__ = ["NoEscalation", "Notifier"]


class Notifier(Protocol):
    """What the bridge needs from Discord (implemented by ``bot.discord.notifier``)."""

    async def post_task(self, tracked: TrackedTask) -> tuple[int, int]:
        """Post the task message; return (channel id, message id).

        An implementation may take a keyword ``note`` (text shown above the task, e.g.
        :data:`bot.message_faults.REPOSTED_NOTE`) and raise
        :class:`~bot.message_faults.ChannelUnavailable`.
        """
        ...

    async def edit_task(self, tracked: TrackedTask, *, wait: bool = True) -> None:
        """Bring the task's message up to date with ``tracked`` (may raise
        :class:`~bot.message_faults.MessageGone` or
        :class:`~bot.message_faults.ChannelUnavailable`); without ``wait``, return once the
        edit is queued (its failure is reported later, as for an edit that waited too long)."""
        ...

    async def post_event(self, event: FactoryEvent) -> None:
        """Post an informational event (alerts, deploys, feed) to its channel."""
        ...


class NoEscalation:
    """The :class:`~bot.decision_context.Escalation` of a bridge without a ladder: does
    nothing (until the composition root attaches the ladder runtime)."""

    async def task_opened(self, tracked: TrackedTask) -> None:
        """Nothing to arm."""
        return None

    async def task_changed(self, task_id: str) -> None:
        """Nothing to re-plan."""
        return None
