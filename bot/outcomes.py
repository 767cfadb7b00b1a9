"""Who acts, what came of it, and the sentences people see about it.

:class:`Actor` and :class:`Outcome` are what every action of :mod:`bot.actions` takes and
returns; the functions below are the only place where the answers to a decision, an
acknowledgement, a snooze or a bulk approval are worded, so the same situation always reads
the same. Factory text is made inert with :func:`escalation.markup.inline_text` (it never
pings nor renders markdown, and an answer stays within Discord's 2000 characters).

Times are written by a :data:`TimeText` passed in by the composition root (the Discord adapter
renders them as Discord timestamps, ``bot.discord.embeds.discord_timestamp``); this module and
the bridge write no Discord markup of their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.factory.client import FactoryError
from bot.store import GONE, TrackedTask
from escalation.markup import inline_text

__all__ = [
    "ACK_CHANNELS",
    "ACK_NOT_RECORDED",
    "ACK_UNDER_WAY",
    "ACK_UNKNOWN",
    "ACK_UNREACHABLE",
    "BULK_ALL_BUSY",
    "BULK_GUARDED",
    "BULK_NONE_PENDING",
    "BULK_NOT_ROUTINE",
    "BULK_REFUSED",
    "BULK_UNREACHABLE",
    "BUSY",
    "CHECKING",
    "DECISION_VERBS",
    "DEPLOY_NOT_CONFIRMED",
    "GONE_READ_BACK",
    "GONE_RESEND",
    "NOT_RECORDED_READ_BACK",
    "OPTION_LOST",
    "PROGRESS_NOTICE",
    "QUEUED",
    "SYSTEM",
    "UNREACHABLE",
    "Actor",
    "Outcome",
    "ProgressCallback",
    "TimeText",
    "ack_channel",
    "ack_refused",
    "acknowledged",
    "acknowledger",
    "bridge_failed",
    "bulk_summary",
    "confirmed_by_read_back",
    "conflict_text",
    "decided_by_someone_first",
    "deploy_needs_identity",
    "deploy_pending",
    "deploy_same_approver",
    "dm_outcome",
    "done",
    "factory_refused",
    "named",
    "not_marked",
    "plain_time",
    "reason",
    "recorded_not_stored",
    "snoozed",
    "task_unreadable",
    "unknown_task",
    "verb",
    "who_decided",
]


@dataclass(frozen=True)
class Actor:
    """Who asks for an action, and through what.

    ``via`` is ``button``, ``modal``, ``command``, ``event``, ``resume`` or ``system``.
    """

    name: str
    via: str
    discord_user_id: int | None = None
    role_ids: frozenset[int] = frozenset()

    @property
    def mention(self) -> str:
        """``<@id>`` for a Discord member, the name otherwise."""
        return f"<@{self.discord_user_id}>" if self.discord_user_id else self.name


SYSTEM = Actor(name="system", via="system")


@dataclass(frozen=True)
class Outcome:
    """The result of an action, with the sentence to show the person who asked (ephemeral).

    ``kind`` is ``done``, ``refused``, ``conflict``, ``failed``, ``unknown`` or ``pending``
    (an approval of a production deploy was recorded; more deploy approvers must approve
    before the decision is sent: two-person rule, :mod:`escalation.deploy_guard`) or
    ``unconfirmed`` (the factory's answer was lost or unreadable and the task could not be
    read back: the decision stays in flight and is re-sent in the background; the person
    gets a DM with the outcome).
    """

    kind: str
    message: str
    tracked: TrackedTask | None = None

    @property
    def ok(self) -> bool:
        """True when the action took effect."""
        return self.kind == "done"


#: Awaited with ``(attempt, problem)`` before each retry of a decision, and with
#: ``(PROGRESS_NOTICE, sentence)`` to replace the person's "working…" answer with ``sentence``.
ProgressCallback = Callable[[int, str], Awaitable[None]]

#: The ``attempt`` of a :data:`ProgressCallback` call that is a notice, not a retry.
PROGRESS_NOTICE = 0

#: Writes a time for a person: ``(aware datetime, style)``; style ``R`` is relative
#: ("in 5 minutes"), ``f`` a date and time (the styles of Discord's timestamp markup).
TimeText = Callable[[datetime, str], str]

DECISION_VERBS = {
    "approved": "approved",
    "rejected": "rejected",
    "deferred": "deferred",
    "escalated": "escalated",
}


def plain_time(at: datetime, style: str = "R") -> str:
    """A time as plain UTC text (``2026-11-21 12:00 UTC``), whatever the style.

    The default :data:`TimeText` when no adapter renders times.
    """
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def verb(decision: str | None) -> str:
    """The past participle for ``decision`` (``approved`` …); ``decided`` when none."""
    return DECISION_VERBS.get(decision or "", decision or "decided")


def named(tracked: TrackedTask) -> str:
    """The task's title for an answer: one line, at most 200 characters, escaped."""
    return inline_text(tracked.task.title)


def who_decided(tracked: TrackedTask) -> str:
    """The Discord mention of who decided ``tracked``, else their escaped name."""
    if tracked.decided_by_discord_id:
        return f"<@{tracked.decided_by_discord_id}>"
    return inline_text(tracked.decided_by or "someone else", 100)


def reason(exc: BaseException) -> str:
    """A short, inert reason for a failure (the database driver's own message when there is
    one: ``database or disk is full``, not SQLAlchemy's statement dump)."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return inline_text(lines[0] if lines else type(inner).__name__, 200)


def _when(at: datetime | None, time_text: TimeText) -> str:
    return f" {time_text(at, 'R')}" if at else ""


def unknown_task(task_id: str) -> str:
    """The answer for a task neither the bridge nor the factory knows."""
    return f"Task `{task_id}` is not known to the factory."


def task_unreadable(task_id: str, problem: Exception) -> str:
    """The answer for a task the bridge does not hold and the factory could not be asked
    about (unreachable, or an error other than 404 / 410): it may well exist."""
    status = getattr(problem, "status", None)
    why = f"answered {status}" if isinstance(status, int) else "could not be reached"
    return (
        f"⚠️ Task `{task_id}` could not be read: the factory {why}. "
        "Nothing was sent; please try again."
    )


def conflict_text(tracked: TrackedTask, time_text: TimeText) -> str:
    """The answer for a task decided already: ``Already approved by @alice <when>. Nothing
    was changed.`` (a task the factory no longer has: ``This task is no longer at the
    factory …``)."""
    if tracked.decision == GONE:
        return (
            f"This task is no longer at the factory (closed{_when(tracked.decided_at, time_text)})."
            " Nothing was changed."
        )
    return (
        f"Already {verb(tracked.decision)} by {who_decided(tracked)}"
        f"{_when(tracked.decided_at, time_text)}. Nothing was changed."
    )


def decided_by_someone_first(
    fresh: TrackedTask | None, time_text: TimeText, *, yours_lost: bool = False
) -> Outcome:
    """The ``conflict`` answer after the factory said someone decided first.

    Says who and when when ``fresh`` (the task re-read) shows it; ``yours_lost`` adds that
    the person's own decision was not recorded.
    """
    if fresh is not None and fresh.is_decided:
        return Outcome("conflict", conflict_text(fresh, time_text), fresh)
    tail = "; yours was not recorded." if yours_lost else "."
    return Outcome("conflict", f"Someone decided this task first{tail}", fresh)


def factory_refused(
    exc: FactoryError, what: str = "the decision", tail: str = ". Nothing was recorded."
) -> str:
    """The factory refused ``what`` (its contract §7.1 error code and message), then ``tail``."""
    return f"The factory refused {what} ({exc.code}: {inline_text(exc.message, 300)}){tail}"


BUSY = (
    "Another decision on this task is being recorded right now; nothing was sent. "
    "Try again in a moment."
)
UNREACHABLE = (
    "⚠️ The factory could not be reached, so your decision was NOT recorded. "
    "The buttons are still live: please try again."
)
CHECKING = "⏳ Not confirmed yet: checking the task at the factory…"
NOT_RECORDED_READ_BACK = (
    "⚠️ The factory did not confirm your decision, and reading the task back shows "
    "it was NOT recorded. The buttons are still live: please try again."
)
GONE_READ_BACK = (
    "⚠️ The factory did not confirm your decision and no longer knows this "
    "task: nothing was recorded."
)
GONE_RESEND = "The factory no longer knows this task: your decision was NOT recorded."
#: A decision task's pick left in flight by a restart: the bridge no longer knows which option.
OPTION_LOST = (
    "⚠️ The bridge restarted before the factory confirmed your choice, and the factory does not "
    "have it. Nothing was recorded: please pick your option again."
)
QUEUED = (
    "⚠️ Not confirmed yet: the factory did not answer in time and the task could not be "
    "read back. Your decision stays queued and is re-sent in the background with the "
    "same key (it cannot be recorded twice); you will get a DM with the outcome."
)


def done(tracked: TrackedTask, decision: str) -> str:
    """The answer for a decision the factory confirmed: ``Task **Title** approved.``"""
    return f"Task **{named(tracked)}** {verb(decision)}."


def confirmed_by_read_back(message: str, decided_by: str) -> str:
    """``message`` plus what the factory's record, read back, says of who decided."""
    return (
        f"{message} Confirmed by reading the task back: the factory "
        f"records it as decided by {inline_text(decided_by, 100)}."
    )


def recorded_not_stored(tracked: TrackedTask, decision: str, exc: BaseException) -> str:
    """The factory recorded the decision but the bridge's database took no write."""
    return (
        f"✅ The factory recorded your decision: **{named(tracked)}** {verb(decision)}. "
        f"⚠️ The bridge could not record it ({reason(exc)}), so the task "
        "message may not show it until the bridge's database takes writes again."
    )


def bridge_failed(exc: BaseException, *, still_in_flight: bool) -> str:
    """The bridge itself failed in the middle of a decision."""
    name = inline_text(type(exc).__name__, 80)
    if not still_in_flight:
        return (
            f"⚠️ The bridge failed ({name}) after the factory answered; the task message "
            "shows what was recorded."
        )
    return (
        f"⚠️ The bridge failed while recording your decision ({name}). It stays queued "
        "and is re-sent in the background with the same key (it cannot be recorded "
        "twice); you will get a DM with the outcome."
    )


def not_marked(exc: BaseException) -> str:
    """The bridge could not mark the decision in flight: nothing was sent."""
    return (
        "⚠️ The bridge could not record your decision (its database is not taking writes: "
        f"{reason(exc)}), so nothing was sent to the factory. "
        "The buttons are still live: please try again later."
    )


def dm_outcome(tracked: TrackedTask, decision: str, outcome: Outcome, time_text: TimeText) -> str:
    """The DM telling a person whose click was cut short what became of their decision."""
    icon = {"done": "✅", "conflict": "ℹ️"}.get(outcome.kind, "⚠️")
    return (
        f"{icon} About your decision on **{named(tracked)}** ({verb(decision)}"
        f"{_when(tracked.inflight_at, time_text)}): {outcome.message}"
    )


def deploy_needs_identity(required: int) -> str:
    """Two-person rule: an approver without a Discord identity cannot be counted."""
    return (
        f"This production deploy needs {required} distinct deploy approvers in Discord; "
        "it cannot be approved from here. Nothing was sent to the factory."
    )


def deploy_same_approver(count: int, required: int) -> str:
    """Two-person rule: the same person approved twice."""
    return (
        f"You have already approved this deploy ({count} of {required} approvals). "
        "It needs a different deploy approver; nothing changed."
    )


def deploy_pending(tracked: TrackedTask, count: int, required: int) -> str:
    """Two-person rule: this approval is recorded; more are needed before anything is sent."""
    missing = required - count
    if required == 2:
        more = "a second deploy approver approves"
    elif missing == 1:
        more = "one more deploy approver approves"
    else:
        more = f"{missing} more deploy approvers approve"
    return (
        f"✅ Your approval of **{named(tracked)}** is recorded ({count} of {required}). "
        f"Nothing is sent to the factory until {more}."
    )


#: How an acknowledgement that did not come from Discord is named on the task message
#: (README "Phone": "👀 Acknowledged by Alice via SMS"), by :attr:`Actor.via`.
ACK_CHANNELS = {"sms": "SMS", "phone": "phone"}


def acknowledger(actor: Actor) -> str:
    """The name stored with an acknowledgement: ``"Alice"``, or ``"Alice via SMS"`` /
    ``"Alice via phone"`` when it came from the phone (:func:`ack_channel` reads it back)."""
    channel = ACK_CHANNELS.get(actor.via)
    return f"{actor.name} via {channel}" if channel else actor.name


def ack_channel(stored_name: str | None) -> str:
    """``" via SMS"`` / ``" via phone"`` when :func:`acknowledger` named a phone
    acknowledgement, else ``""``."""
    for channel in ACK_CHANNELS.values():
        if (stored_name or "").endswith(f" via {channel}"):
            return f" via {channel}"
    return ""


def acknowledged(tracked: TrackedTask, stored: BaseException | None = None) -> str:
    """An acknowledgement the factory recorded; ``stored`` is why the bridge could not."""
    if stored is None:
        return f"👀 You acknowledged **{named(tracked)}**. Reminders stop; the SLA still applies."
    return (
        f"👀 The factory recorded your acknowledgement of **{named(tracked)}**. ⚠️ The "
        f"bridge could not record it ({reason(stored)}), so reminders may go on until its "
        "database takes writes again."
    )


def ack_refused(exc: FactoryError) -> str:
    """The factory refused a claim (acknowledgement)."""
    return f"The factory refused: {inline_text(exc.message, 300)}"


ACK_UNREACHABLE = "The factory could not be reached; not acknowledged. Try again."
ACK_UNDER_WAY = "Someone else is acknowledging this task right now; nothing was sent."
ACK_NOT_RECORDED = (
    "⚠️ The factory did not confirm your acknowledgement, and reading the task back "
    "shows it was NOT recorded. Please try again."
)
ACK_UNKNOWN = (
    "⚠️ The factory did not confirm your acknowledgement and the task could not be "
    "read back, so it may or may not be recorded. Pressing Acknowledge again is safe."
)


def snoozed(tracked: TrackedTask, until: datetime, time_text: TimeText) -> str:
    """Reminders snoozed until ``until``; the SLA deadline does not move."""
    return (
        f"💤 Reminders for **{named(tracked)}** snoozed until {time_text(until, 'f')}. "
        "The SLA deadline does not move."
    )


BULK_NONE_PENDING = "No low-risk item is pending any more; nothing was sent."
BULK_REFUSED = "You may not approve these items."
BULK_GUARDED = (
    "A production deploy is never approved in bulk: open it from the batch and approve it "
    "on its own (typed DEPLOY)."
)
DEPLOY_NOT_CONFIRMED = (
    "🛡️ This task is a production deploy (it may have become one since you pressed): "
    "nothing was sent to the factory. Press Approve again and type DEPLOY to confirm."
)
BULK_NOT_ROUTINE = (
    "A task escalated to high or critical is never approved in bulk: open it from the batch "
    "and decide it on its own."
)
BULK_ALL_BUSY = "Those items are being decided by someone else right now; nothing was sent."
BULK_UNREACHABLE = (
    "⚠️ The factory could not be reached, so NOTHING was approved. "
    "The buttons are still live: please try again."
)


def _titles(tracked: Sequence[TrackedTask]) -> str:
    return ", ".join(f"**{inline_text(t.task.title, 100)}**" for t in tracked)


def bulk_summary(
    approved: Sequence[TrackedTask],
    failures: Sequence[tuple[TrackedTask, str]],
    busy: Sequence[TrackedTask],
    refusal: str | None,
    *,
    unconfirmed: Sequence[TrackedTask] = (),
) -> str:
    """What a bulk approval did: approved, failed per item, not confirmed yet (re-sent in the
    background), left alone, refused (one line each)."""
    lines: list[str] = []
    if approved:
        n = len(approved)
        lines.append(f"✅ Approved {n} low-risk item{'s' if n != 1 else ''}: {_titles(approved)}.")
    for tracked, error in failures:
        lines.append(
            f"⚠️ **{inline_text(tracked.task.title, 100)}** was not approved: "
            f"{inline_text(error, 300)}"
        )
    if unconfirmed:
        lines.append(
            "⏳ The factory did not confirm these yet; they are re-sent in the background and "
            f"you will get a DM with the outcome: {_titles(unconfirmed)}"
        )
    if busy:
        lines.append(f"⏳ Being decided by someone else right now, left alone: {_titles(busy)}")
    if refusal is not None:
        lines.append(f"🔒 {refusal}")
    return "\n".join(lines)
