"""Pure renderers of batch messages (smart batching, master plan §7).

A batch message lists several routine tasks of one kind, one line per item with its risk
(:mod:`escalation.risk`) and its state::

    📋 5 tasks ready for review
    ✅ **freshdesk** (low risk, tests pass) — ✅ approved by @alice
    ⚠️ **stripe** (med risk, 1 warning)
    ❌ **ghl** (high risk, 42 failures)

A batch message of any size is ONE message shown in pages of :data:`PAGE_SIZE` items
(:func:`page_count`, :func:`clamp_page`); the title and the counts cover every page.

Nothing here talks to Discord; every function returns ``discord.Embed`` objects or text that fit
Discord's limits (title 256, description 4096, field value 1024, 10 embeds and 6000 characters
per message); long values are truncated with "…", never rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import discord

from batching.keys import batch_key
from bot.discord.embeds import (
    DECISION_LABELS,
    DESCRIPTION_MAX,
    FIELD_VALUE_MAX,
    FOOTER_MAX,
    TITLE_MAX,
    details_embed,
    fit_embed,
    format_coverage,
    format_test_results,
    truncate,
)
from bot.store import GONE, TrackedTask
from escalation.markup import escape_text, inline_text, neutralise_mentions
from escalation.risk import Risk, RiskAssessment, assess_risk

__all__ = [
    "EMBEDS_PER_MESSAGE",
    "EMBED_TOTAL_MAX",
    "PAGE_SIZE",
    "RISK_ICONS",
    "RISK_WORDS",
    "UNCONFIRMED_NOTICE",
    "BatchItem",
    "batch_embed",
    "batch_items",
    "clamp_page",
    "item_embed",
    "item_line",
    "item_state",
    "item_state_plain",
    "page_count",
    "page_items",
    "review_embeds",
]

#: Icon per risk level (master plan §7: ✅ low, ⚠️ medium, ❌ high).
RISK_ICONS: dict[Risk, str] = {Risk.LOW: "✅", Risk.MEDIUM: "⚠️", Risk.HIGH: "❌"}

#: Word per risk level as the plan writes it ("med risk").
RISK_WORDS: dict[Risk, str] = {Risk.LOW: "low", Risk.MEDIUM: "med", Risk.HIGH: "high"}

#: Items per page of a batch message (one "Pick an item…" option each; Discord: ≤ 25 options).
PAGE_SIZE = 20

#: Discord: at most 10 embeds per message.
EMBEDS_PER_MESSAGE = 10

#: Discord: at most 6000 characters over all embeds of a message (kept with a margin).
EMBED_TOTAL_MAX = 5800

_TITLE_IN_LINE_MAX = 80
_REVIEW_SUMMARY_MAX = 300
_COLOUR_PENDING = 0xF1C40F
_COLOUR_HIGH_PENDING = 0xFFA500
_COLOUR_DONE = 0x2ECC71


@dataclass(frozen=True)
class BatchItem:
    """One item of a batch message: the tracked task, its risk and an optional notice.

    Attributes
    ----------
    tracked : TrackedTask
        The task as the store has it (decision, in-flight decision, acknowledgement).
    risk : RiskAssessment
        From :func:`escalation.risk.assess_risk`.
    notice : str or None
        A short line shown after the item, e.g. why the last bulk approval failed for it.
    breached : bool
        Undecided past its SLA deadline when the message was rendered (the ladder's "SLA
        breached" alert links to the batch message: the item says so there).
    """

    tracked: TrackedTask
    risk: RiskAssessment
    notice: str | None = None
    breached: bool = False

    @property
    def task_id(self) -> str:
        """The factory task id."""
        return self.tracked.task_id

    @property
    def pending(self) -> bool:
        """No decision confirmed and none being recorded."""
        return not self.tracked.is_decided and self.tracked.inflight_decision is None

    @property
    def routine(self) -> bool:
        """Whether the task would still be batched now (:func:`batching.keys.batch_key`): a
        task escalated to high or critical since it joined the batch, or found to be a
        production deploy, is not, and needs its own decision."""
        return batch_key(self.tracked.task, guarded=self.tracked.guarded) is not None

    @property
    def approvable_low(self) -> bool:
        """Pending, low risk and still routine (:attr:`routine`: not high or critical, not a
        possible production deploy): what "Approve All Low-Risk" takes (such a task always
        needs its own decision, see :mod:`escalation.deploy_guard`, master plan §7)."""
        return self.pending and self.risk.risk is Risk.LOW and self.routine


def batch_items(
    tracked: Sequence[TrackedTask],
    *,
    min_coverage_percent: float = 80.0,
    notices: dict[str, str] | None = None,
    now: datetime | None = None,
) -> list[BatchItem]:
    """Wrap tracked tasks as :class:`BatchItem` with their risk, keeping the order.

    Parameters
    ----------
    tracked : sequence of TrackedTask
        The items in display order.
    min_coverage_percent : float
        Setting ``BATCH_MIN_COVERAGE_PERCENT`` (0..100), passed to :func:`assess_risk`.
    notices : dict, optional
        Task id → notice line (ignored for decided items).
    now : datetime, optional
        The time of the render (aware UTC): an undecided item past its SLA deadline is
        :attr:`BatchItem.breached`.
    """
    notices = notices or {}
    return [
        BatchItem(
            t,
            assess_risk(t.task, min_coverage_percent=min_coverage_percent),
            _notice(t, notices),
            breached=now is not None and not t.is_decided and t.deadline <= now,
        )
        for t in tracked
    ]


#: An item's approval still in flight (re-sent in the background, contract §7.1).
UNCONFIRMED_NOTICE = "⏳ approval not confirmed yet"


def _notice(tracked: TrackedTask, notices: dict[str, str]) -> str | None:
    """The item's notice: none once it is decided, and "not confirmed yet" only while its
    decision is still in flight (a re-send that ended "not recorded" leaves it pending)."""
    notice = None if tracked.is_decided else notices.get(tracked.task_id)
    if notice == UNCONFIRMED_NOTICE and tracked.inflight_decision is None:
        return None
    return notice


#: Who did something: (Discord id, name, fallback) → text, "" when it is not to be said.
_Who = Callable[[int | None, str | None, str], str]


def _who(discord_id: int | None, name: str | None, fallback: str) -> str:
    return f"<@{discord_id}>" if discord_id else inline_text(name or fallback, 100)


def _plain(text: str, limit: int) -> str:
    """Factory text for plain text: one line, cut to ``limit``, pings broken, not escaped."""
    return neutralise_mentions(truncate(" ".join(text.split()), limit))


def _plain_who(discord_id: int | None, name: str | None, fallback: str) -> str:
    if name:
        return _plain(name, 100)
    return "" if discord_id else fallback


def _state(tracked: TrackedTask, who_of: _Who, text_of: Callable[[str, int], str]) -> str | None:
    if tracked.is_decided:
        decision = tracked.decision or "decided"
        label = DECISION_LABELS.get(decision, (f"☑️ {decision}", 0))[0]
        emoji, _, word = label.partition(" ")
        who = who_of(tracked.decided_by_discord_id, tracked.decided_by, "the factory")
        text = f"{emoji} {word.lower()}" + ("" if decision == GONE or not who else f" by {who}")
        if tracked.decision_notes:
            text += f": {text_of(tracked.decision_notes, 120)}"
        return text
    if tracked.inflight_decision is not None:
        who = who_of(tracked.inflight_by_discord_id, tracked.inflight_by_name, "someone")
        return f"⏳ {tracked.inflight_decision} being recorded" + (f" ({who})" if who else "")
    if tracked.acknowledged_at is not None:
        who = who_of(tracked.acknowledged_by_discord_id, tracked.acknowledged_by_name, "someone")
        return "👀 acknowledged" + (f" by {who}" if who else "")
    return None


def item_state(tracked: TrackedTask) -> str | None:
    """The state shown after an item: decision, decision being recorded, acknowledgement.

    Returns ``None`` for an item nobody touched yet. Only a decision the factory confirmed is
    shown as a decision (a decision in flight says "being recorded"). For an embed: members
    are ``<@id>`` mentions and factory text is escaped.
    """
    return _state(tracked, _who, inline_text)


def item_state_plain(tracked: TrackedTask) -> str | None:
    """:func:`item_state` for plain text, such as a select option's description.

    A select option's description is plain text of at most 100 characters (Discord, "Select
    Option Structure":
    https://discord.com/developers/docs/components/reference#string-select-select-option-structure):
    markdown is not rendered there, so names and notes are not escaped (a backslash would
    show), and neither is a mention (``<@id>`` would show as digits): a member is named when
    the store knows the name, otherwise not named at all, and ping tokens in factory text are
    broken (:func:`escalation.markup.neutralise_mentions`).
    """
    return _state(tracked, _plain_who, _plain)


def item_line(item: BatchItem, limit: int = 400) -> str:
    """``✅ **freshdesk** (low risk, tests pass)`` plus `` — <state>`` and a notice, ≤ ``limit``."""
    risk = item.risk
    title = inline_text(item.tracked.task.title, _TITLE_IN_LINE_MAX)
    reason = inline_text(risk.reason, 200)
    line = f"{RISK_ICONS[risk.risk]} **{title}** ({RISK_WORDS[risk.risk]} risk, {reason})"
    if item.tracked.guarded and not item.tracked.is_decided:
        line += " — 🚀 production deploy: needs its own decision"
    elif not item.tracked.is_decided and not item.routine:
        priority = item.tracked.task.priority.value
        line += f" — 🔺 now {priority} priority: needs its own decision"
    if item.breached:
        line += " — 🚨 SLA breached"
    state = item_state(item.tracked)
    if state:
        line += f" — {state}"
    if item.notice:
        line += f" — {item.notice}"
    return truncate(line, limit)


def _colour(items: Sequence[BatchItem]) -> int:
    pending = [i for i in items if not i.tracked.is_decided]
    if not pending:
        return _COLOUR_DONE
    if any(i.risk.risk is Risk.HIGH for i in pending):
        return _COLOUR_HIGH_PENDING
    return _COLOUR_PENDING


def page_count(n: int) -> int:
    """Pages of :data:`PAGE_SIZE` items that ``n`` items take (at least 1)."""
    return max(1, -(-n // PAGE_SIZE))


def clamp_page(page: int, n: int) -> int:
    """``page`` (0-based) brought within the pages of ``n`` items (a page asked for by an old
    button whose batch has fewer pages now shows the last one)."""
    return min(max(0, page), page_count(n) - 1)


def page_items(items: Sequence[BatchItem], page: int) -> Sequence[BatchItem]:
    """The items of page ``page`` (0-based, clamped) in display order."""
    page = clamp_page(page, len(items))
    return items[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]


def batch_embed(batch_id: str, items: Sequence[BatchItem], page: int = 0) -> discord.Embed:
    """The batch message's embed: a title, one line per item of the page, counts in the footer.

    Parameters
    ----------
    batch_id : str
        The batch's id (shown at the end of the footer; the reconciler reads it there).
    items : sequence of BatchItem
        Every item of the batch in display order; the title and the counts cover them all.
    page : int
        0-based page shown (clamped); ``Page p/P`` leads the footer when there are several.
    """
    n = len(items)
    page = clamp_page(page, n)
    shown = page_items(items, page)
    per_line = max(60, (DESCRIPTION_MAX - len(shown)) // max(1, len(shown)))
    description = "\n".join(item_line(i, per_line) for i in shown)
    embed = discord.Embed(
        title=truncate(f"📋 {n} task{'s' if n != 1 else ''} ready for review", TITLE_MAX),
        description=truncate(description, DESCRIPTION_MAX) or None,
        colour=_colour(items),
    )
    decided: dict[str, int] = {}
    for item in items:
        if item.tracked.decision:
            decided[item.tracked.decision] = decided.get(item.tracked.decision, 0) + 1
    pending = sum(1 for i in items if not i.tracked.is_decided)
    counts = [f"{count} {decision}" for decision, count in sorted(decided.items())]
    counts.append(f"{pending} pending")
    pages = page_count(n)
    where = (f"Page {page + 1}/{pages}",) if pages > 1 else ()
    footer = " · ".join((*where, *counts, f"batch {batch_id}"))
    embed.set_footer(text=truncate(footer, FOOTER_MAX))
    return fit_embed(embed)


def item_embed(item: BatchItem) -> discord.Embed:
    """The ephemeral view of one item picked from a batch: its details, risk and state."""
    embed = details_embed(item.tracked.task)
    risk = item.risk
    embed.add_field(
        name="Risk",
        value=f"{RISK_ICONS[risk.risk]} {RISK_WORDS[risk.risk]} ({inline_text(risk.reason, 500)})",
        inline=False,
    )
    state = item_state(item.tracked)
    if state:
        embed.add_field(name="State", value=truncate(state, FIELD_VALUE_MAX), inline=False)
    if item.notice:
        embed.add_field(name="Notice", value=truncate(item.notice, FIELD_VALUE_MAX), inline=False)
    return fit_embed(embed)


def _review_embed(item: BatchItem, min_coverage_percent: float) -> discord.Embed:
    task = item.tracked.task
    results = task.context.test_results
    embed = discord.Embed(
        title=truncate(f"{RISK_ICONS[item.risk.risk]} {escape_text(task.title)}", TITLE_MAX),
        description=truncate(
            escape_text(task.context.summary or task.description or "No summary given."),
            _REVIEW_SUMMARY_MAX,
        ),
    )
    embed.add_field(
        name="Risk", value=f"{RISK_WORDS[item.risk.risk]} ({inline_text(item.risk.reason, 100)})"
    )
    embed.add_field(name="Tests", value=format_test_results(results))
    embed.add_field(name="Coverage", value=format_coverage(results, min_coverage_percent))
    state = item_state(item.tracked)
    if state or item.notice:
        value = " — ".join(p for p in (state, item.notice) if p)
        embed.add_field(name="State", value=truncate(value, 300), inline=False)
    embed.set_footer(text=f"task {task.id}")
    return embed


def _embed_size(embed: discord.Embed) -> int:
    return len(embed)


def review_embeds(
    items: Sequence[BatchItem], *, min_coverage_percent: float = 80.0
) -> list[list[discord.Embed]]:
    """ "Review All": one compact embed per item, split into messages within Discord's limits.

    Returns
    -------
    list of list of discord.Embed
        Each inner list is one message (≤ 10 embeds, ≤ 5800 characters); the first is the
        interaction response, the others follow-ups. Empty input gives ``[]``.
    """
    messages: list[list[discord.Embed]] = []
    current: list[discord.Embed] = []
    size = 0
    for item in items:
        embed = _review_embed(item, min_coverage_percent)
        length = _embed_size(embed)
        if current and (len(current) >= EMBEDS_PER_MESSAGE or size + length > EMBED_TOTAL_MAX):
            messages.append(current)
            current, size = [], 0
        current.append(embed)
        size += length
    if current:
        messages.append(current)
    return messages
