"""Timing and size of batch messages (the values the rules of :mod:`batching.batcher` use)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["BatchingPolicy"]


@dataclass(frozen=True)
class BatchingPolicy:
    """Timing and size of batch messages.

    Attributes
    ----------
    group_wait_seconds : float
        How long the first routine task of a key waits for company, in seconds (setting
        ``BATCH_GROUP_WAIT_SECONDS``, default 30). ``0`` posts on the next tick.
    group_interval_seconds : float
        How long a posted batch message accepts additions, in seconds from its post (setting
        ``BATCH_GROUP_INTERVAL_SECONDS``, default 300 = contract §5.3
        ``batch_interval_seconds``).
    max_items : int
        Most items on one message (default 20, at least 2). The Discord adapter needs one button
        per item plus two bulk buttons within Discord's 25 buttons per message.
    edit_coalesce_seconds : float
        Minimum spacing of two edits of one message, in seconds (default 2).

    Raises
    ------
    ValueError
        If a duration is negative or not finite, or ``max_items`` is not an int ≥ 2.
    """

    group_wait_seconds: float = 30.0
    group_interval_seconds: float = 300.0
    max_items: int = 20
    edit_coalesce_seconds: float = 2.0

    def __post_init__(self) -> None:
        for name in ("group_wait_seconds", "group_interval_seconds", "edit_coalesce_seconds"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if isinstance(self.max_items, bool) or not isinstance(self.max_items, int):
            raise ValueError(f"max_items must be an int, got {self.max_items!r}")
        if self.max_items < 2:
            raise ValueError(f"max_items must be at least 2, got {self.max_items}")

    @property
    def group_wait(self) -> timedelta:
        """``group_wait_seconds`` as a :class:`~datetime.timedelta`."""
        return timedelta(seconds=self.group_wait_seconds)

    @property
    def group_interval(self) -> timedelta:
        """``group_interval_seconds`` as a :class:`~datetime.timedelta`."""
        return timedelta(seconds=self.group_interval_seconds)

    @property
    def edit_coalesce(self) -> timedelta:
        """``edit_coalesce_seconds`` as a :class:`~datetime.timedelta`."""
        return timedelta(seconds=self.edit_coalesce_seconds)
