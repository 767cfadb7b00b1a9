"""Components of batch messages (smart batching, master plan §7) and their callbacks.

A batch message holds up to 20 items, more than Discord's 5 rows × 5 buttons allow with one row
of bulk buttons, so per-item control goes through a string select (Discord: ≤ 25 options):

* row 1 — "Pick an item…" (``fb:b:pick:<batch id>``): the chosen item's details, risk and state
  are answered ephemerally with that item's own Approve / Reject / Acknowledge buttons
  (:class:`bot.discord.views.TaskButton`: the same role checks, reject-reason modal and
  exactly-once decision as a single-task message);
* row 2 — ``Approve All Low-Risk (N)`` (``fb:b:approve-low:<batch id>``) and ``Review All``
  (``fb:b:review:<batch id>``).

Every component is a :class:`discord.ui.DynamicItem` that rebuilds itself from its
``custom_id`` (registered by :class:`bot.discord.cogs.BatchingCog` when it loads), so a batch message keeps
working across restarts. Discord: an interaction must be answered within 3 s, so callbacks answer
first and do slow work afterwards.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot.discord import ids
from bot.discord.batch_embeds import (
    RISK_ICONS,
    RISK_WORDS,
    BatchItem,
    batch_embed,
    item_embed,
    item_state,
    review_embeds,
)
from bot.discord.client import bridge_of
from bot.discord.decisions import actor_from
from bot.discord.embeds import truncate
from bot.discord.limits import fit_message
from bot.discord.replies import answer, answer_now, follow_up, say
from bot.discord.views import TaskButton
from escalation.markup import code_span

if TYPE_CHECKING:
    from bot.discord.batch_port import BatchRuntime

__all__ = [
    "BATCH_DYNAMIC_ITEMS",
    "ApproveLowRiskButton",
    "BatchPickSelect",
    "ReviewAllButton",
    "batch_view",
    "item_view",
    "render_batch",
    "runtime_of",
]

log = logging.getLogger(__name__)

PICK_PLACEHOLDER = "Pick an item…"
OPTION_MAX = 100  # Discord: select option label/description ≤ 100


def runtime_of(interaction: discord.Interaction[Any]) -> BatchRuntime:
    """The batching runtime attached to the bridge (``bridge.batcher``)."""
    runtime = bridge_of(interaction).batcher
    if runtime is None:
        raise RuntimeError("smart batching is not enabled")
    return runtime


class BatchPickSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=ids.BATCH_PICK_TEMPLATE,
):
    """ "Pick an item…": answers with the item's details and its own decision buttons."""

    def __init__(self, batch_id: str, options: Sequence[discord.SelectOption] = ()) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=ids.batch_pick(batch_id),
                placeholder=PICK_PLACEHOLDER,
                options=list(options),
                min_values=1,
                max_values=1,
            )
        )
        self.batch_id = batch_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> BatchPickSelect:
        """Rebuild the select from its ``custom_id`` (the chosen value comes with the click)."""
        return cls(match["batch_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Answer ephemerally with the picked item (details, risk, state, its buttons)."""
        if not self.item.values:
            await say(interaction, "Pick an item first.")
            return
        task_id = str(self.item.values[0])
        item = await runtime_of(interaction).item(task_id)
        if item is None:
            await say(interaction, f"Task {code_span(task_id)} is not known to the bridge.")
            return
        view = item_view(item)
        kwargs: dict[str, Any] = {"embed": item_embed(item)}
        if view is not None:
            kwargs["view"] = view
        await answer(interaction, **kwargs)


class ApproveLowRiskButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=ids.BATCH_APPROVE_LOW_TEMPLATE,
):
    """ "Approve All Low-Risk (N)": one bulk call with the items low-risk and pending now."""

    def __init__(self, batch_id: str, count: int = 0) -> None:
        super().__init__(
            discord.ui.Button(
                label=f"Approve All Low-Risk ({count})",
                style=discord.ButtonStyle.success,
                emoji="✅",
                custom_id=ids.batch_approve_low(batch_id),
                disabled=count == 0,
            )
        )
        self.batch_id = batch_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ApproveLowRiskButton:
        """Rebuild the button from its ``custom_id`` (the items are re-read at the click)."""
        return cls(match["batch_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Answer at once, send the bulk approval, then report per item."""
        runtime = runtime_of(interaction)
        await answer_now(interaction, "⏳ Approving the low-risk items still pending…")
        outcome = await runtime.approve_low_risk(
            self.batch_id,
            actor_from(interaction, "button"),
            idempotency_seed=f"interaction:{interaction.id}",
        )
        await say(interaction, outcome)


class ReviewAllButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=ids.BATCH_REVIEW_TEMPLATE,
):
    """ "Review All": every item with its context, ephemerally (several messages if needed)."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Review All",
                style=discord.ButtonStyle.secondary,
                emoji="🔎",
                custom_id=ids.batch_review(batch_id),
            )
        )
        self.batch_id = batch_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ReviewAllButton:
        """Rebuild the button from its ``custom_id``."""
        return cls(match["batch_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Send the review embeds: the first chunk as the answer, the rest as follow-ups."""
        runtime = runtime_of(interaction)
        items = await runtime.items(self.batch_id)
        chunks = review_embeds(items, min_coverage_percent=runtime.min_coverage_percent)
        if not chunks:
            await say(interaction, "This batch has no items.")
            return
        await answer(interaction, embeds=chunks[0])
        for chunk in chunks[1:]:
            if not await follow_up(interaction, embeds=chunk):
                return  # the rest would fail alike


def _option(item: BatchItem) -> discord.SelectOption:
    state = item_state(item.tracked)
    description = f"{RISK_WORDS[item.risk.risk]} risk, {item.risk.reason}"
    if state:
        description += f" — {state}"
    return discord.SelectOption(
        label=truncate(item.tracked.task.title, OPTION_MAX),
        value=item.task_id,
        description=truncate(description, OPTION_MAX),
        emoji=RISK_ICONS[item.risk.risk],
    )


def batch_view(batch_id: str, items: Sequence[BatchItem]) -> discord.ui.View | None:
    """The batch message's components; ``None`` once every item is decided.

    Row 1: the "Pick an item…" select with one option per item (≤ 25); row 2: Approve All
    Low-Risk (N) — disabled when N is 0 — and Review All.
    """
    if not items or all(i.tracked.is_decided for i in items):
        return None
    view = discord.ui.View(timeout=None)
    pick = BatchPickSelect(batch_id, [_option(i) for i in items[:25]])
    pick.item.row = 0
    view.add_item(pick)
    approve = ApproveLowRiskButton(batch_id, sum(1 for i in items if i.approvable_low))
    approve.item.row = 1
    view.add_item(approve)
    review = ReviewAllButton(batch_id)
    review.item.row = 1
    view.add_item(review)
    return view


def render_batch(batch_id: str, items: Sequence[BatchItem]) -> dict[str, Any]:
    """``embed`` and ``view`` keyword arguments for sending or editing a batch message."""
    return fit_message({"embed": batch_embed(batch_id, items), "view": batch_view(batch_id, items)})


def item_view(item: BatchItem) -> discord.ui.View | None:
    """The picked item's own buttons (Approve, Reject, Acknowledge); ``None`` once decided."""
    if item.tracked.is_decided:
        return None
    view = discord.ui.View(timeout=None)
    for action in ("approve", "reject", "ack"):
        view.add_item(TaskButton(action, item.task_id))
    return view


#: The batch message's DynamicItem classes (registered by :class:`bot.discord.cogs.BatchingCog`).
BATCH_DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    BatchPickSelect,
    ApproveLowRiskButton,
    ReviewAllButton,
)
