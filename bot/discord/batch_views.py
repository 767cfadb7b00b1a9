"""Components of batch messages (smart batching, master plan §7) and their callbacks.

A batch group is ONE message however large, shown in pages of 20 items
(:data:`bot.discord.batch_embeds.PAGE_SIZE`), more than Discord's 5 rows × 5 buttons allow, so
per-item control goes through a string select (Discord: ≤ 25 options):

* row 1 — "Pick an item…" (``fb:b:pick:<batch id>``, the page's items): the chosen item's
  details, risk and state are answered ephemerally with that item's own Approve / Reject /
  Acknowledge buttons (:class:`bot.discord.views.TaskButton`: the same role checks,
  reject-reason modal and exactly-once decision as a single-task message);
* row 2 — ``Approve All Low-Risk (N)`` (``fb:b:approve-low:<batch id>``; N and the approval
  cover EVERY page) and ``Review All`` (``fb:b:review:<batch id>[:<page>]``, the page's items);
* row 3, when there are several pages — ``◀ Previous`` / ``Next ▶``
  (``fb:b:pg:<batch id>:<page>:<p|n>``): the message shows that page, re-read from the store
  (so paging works after a restart; the runtime re-renders later edits at the page shown).

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
    clamp_page,
    item_embed,
    item_state_plain,
    page_count,
    page_items,
    review_embeds,
)
from bot.discord.client import bridge_of
from bot.discord.decisions import actor_from
from bot.discord.embeds import truncate
from bot.discord.limits import fit_message
from bot.discord.replies import answer, answer_now, defer_update, follow_up, say
from bot.discord.views import TaskButton
from escalation.markup import code_span

if TYPE_CHECKING:
    from bot.discord.batch_port import BatchRuntime

__all__ = [
    "BATCH_DYNAMIC_ITEMS",
    "ApproveLowRiskButton",
    "BatchPageButton",
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
    """ "Review All": every item of the page with its context, ephemerally (several messages
    if needed)."""

    def __init__(self, batch_id: str, page: int = 0) -> None:
        super().__init__(
            discord.ui.Button(
                label="Review All",
                style=discord.ButtonStyle.secondary,
                emoji="🔎",
                custom_id=ids.batch_review(batch_id, page),
            )
        )
        self.batch_id = batch_id
        self.page = page

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ReviewAllButton:
        """Rebuild the button from its ``custom_id``."""
        return cls(match["batch_id"], int(match["page"] or 0))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Send the review embeds: the first chunk as the answer, the rest as follow-ups."""
        runtime = runtime_of(interaction)
        items = page_items(await runtime.items(self.batch_id), self.page)
        chunks = review_embeds(items, min_coverage_percent=runtime.min_coverage_percent)
        if not chunks:
            await say(interaction, "This batch has no items.")
            return
        await answer(interaction, embeds=chunks[0])
        for chunk in chunks[1:]:
            if not await follow_up(interaction, embeds=chunk):
                return  # the rest would fail alike


class BatchPageButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=ids.BATCH_PAGE_TEMPLATE,
):
    """◀ / ▶ on a batch message: ``fb:b:pg:<batch id>:<page>:<p|n>``; a click shows that page
    of the message, re-read from the store."""

    def __init__(self, batch_id: str, page: int, direction: str, *, disabled: bool = False):
        super().__init__(
            discord.ui.Button(
                label="◀ Previous" if direction == "p" else "Next ▶",
                style=discord.ButtonStyle.secondary,
                custom_id=ids.batch_page(batch_id, max(0, page), direction),
                disabled=disabled,
            )
        )
        self.batch_id = batch_id
        self.page = max(0, page)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> BatchPageButton:
        """Rebuild the button from its ``custom_id`` (the page is re-read at the click)."""
        return cls(match["batch_id"], int(match["page"]), match["dir"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Defer (3 s deadline), render the page from the store, show it on the message."""
        await defer_update(interaction)
        rendered = await runtime_of(interaction).show_page(self.batch_id, self.page)
        if rendered is None:
            await follow_up(interaction, content="This batch is not known to the bridge.")
            return
        await answer(interaction, content=None, **rendered)


def _option(item: BatchItem) -> discord.SelectOption:
    """The item's "Pick an item…" option: its title, then its risk and state as plain text
    (:func:`bot.discord.batch_embeds.item_state_plain`: Discord renders no markdown there),
    each at most :data:`OPTION_MAX` characters."""
    state = item_state_plain(item.tracked)
    description = f"{RISK_WORDS[item.risk.risk]} risk, {item.risk.reason}"
    if state:
        description += f" — {state}"
    return discord.SelectOption(
        label=truncate(item.tracked.task.title, OPTION_MAX),
        value=item.task_id,
        description=truncate(description, OPTION_MAX),
        emoji=RISK_ICONS[item.risk.risk],
    )


def batch_view(batch_id: str, items: Sequence[BatchItem], page: int = 0) -> discord.ui.View | None:
    """The batch message's components at ``page`` (0-based, clamped); ``None`` once every item
    of every page is decided.

    Row 1: the "Pick an item…" select with one option per item of the page (≤ 20); row 2:
    Approve All Low-Risk (N, over every page) — disabled when N is 0 — and Review All (the
    page); row 3 with several pages: ◀ Previous / Next ▶ (disabled at the ends).
    """
    if not items or all(i.tracked.is_decided for i in items):
        return None
    page = clamp_page(page, len(items))
    pages = page_count(len(items))
    view = discord.ui.View(timeout=None)
    pick = BatchPickSelect(batch_id, [_option(i) for i in page_items(items, page)])
    pick.item.row = 0
    view.add_item(pick)
    approve = ApproveLowRiskButton(batch_id, sum(1 for i in items if i.approvable_low))
    approve.item.row = 1
    view.add_item(approve)
    review = ReviewAllButton(batch_id, page)
    review.item.row = 1
    view.add_item(review)
    if pages > 1:
        back = BatchPageButton(batch_id, page - 1, "p", disabled=page <= 0)
        forward = BatchPageButton(batch_id, page + 1, "n", disabled=page >= pages - 1)
        for button in (back, forward):
            button.item.row = 2
            view.add_item(button)
    return view


def render_batch(batch_id: str, items: Sequence[BatchItem], page: int = 0) -> dict[str, Any]:
    """``embed`` and ``view`` keyword arguments for sending or editing a batch message showing
    ``page`` (0-based, clamped) of its items."""
    return fit_message(
        {"embed": batch_embed(batch_id, items, page), "view": batch_view(batch_id, items, page)}
    )


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
    BatchPageButton,
)
