"""What the batch message's components need from the batching runtime (a protocol).

The components (:mod:`bot.discord.batch_views`) are rendered by the runtime
(:mod:`bot.discord.batching_runtime`); they reach it back through this protocol, so the two
modules do not import each other.
"""

from __future__ import annotations

from typing import Any, Protocol

from bot.discord.batch_embeds import BatchItem
from bot.outcomes import Actor, Outcome

__all__ = ["BatchRuntime"]


class BatchRuntime(Protocol):
    """The batching runtime as the batch components see it (``bridge.batcher``)."""

    @property
    def min_coverage_percent(self) -> float:
        """``BATCH_MIN_COVERAGE_PERCENT``: below it an item is not low risk."""
        ...

    async def items(self, batch_id: str) -> list[BatchItem]:
        """The items of a batch message, with their current state and risk."""
        ...

    async def item(self, task_id: str) -> BatchItem | None:
        """One task as a batch item (risk, notice), or ``None`` when unknown."""
        ...

    async def show_page(self, batch_id: str, page: int) -> dict[str, Any] | None:
        """The batch message's ``embed`` / ``view`` at ``page`` (0-based), re-read from the
        store; the message keeps showing that page. ``None`` for an unknown batch."""
        ...

    async def approve_low_risk(
        self, batch_id: str, actor: Actor, *, idempotency_seed: str
    ) -> Outcome:
        """The "Approve All Low-Risk" click: one bulk approval of the items low risk now."""
        ...
