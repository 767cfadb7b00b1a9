"""Buttons, selects and modals of the task message.

Every component is a :class:`discord.ui.DynamicItem` whose ``custom_id`` carries the action and
the task id (``fb:t:approve:<task id>``), registered once in ``setup_hook``: buttons on messages
posted weeks ago, before any number of restarts, still work, and their state is re-read from the
store on every click (never from memory).

Discord: an interaction must be answered within 3 s, so every callback answers first
(an ephemeral "recording your decision…" or a modal) and does the slow work afterwards.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import discord

from bot.discord.embeds import details_embed
from bot.discord.limits import answer, modal_title
from bot.discord.modals import ModalHandler, modal_custom_id, open_modal
from escalation.markup import code_span
from escalation.permissions import needs_deploy_confirmation

if TYPE_CHECKING:
    from bot.bridge import Actor, Bridge, Outcome
    from bot.store import TrackedTask

__all__ = [
    "DYNAMIC_ITEMS",
    "MODAL_HANDLERS",
    "DeployConfirmModal",
    "RejectReasonModal",
    "SnoozeSelect",
    "TaskButton",
    "actor_from",
    "bridge_of",
    "run_decision",
    "snooze_seconds",
    "submit_deploy",
    "submit_reject",
    "task_view",
]

log = logging.getLogger(__name__)

TASK_ID = r"[A-Za-z0-9_.\-]{1,64}"
SNOOZE_CHOICES: tuple[tuple[str, int], ...] = (
    ("1 hour", 3600),
    ("4 hours", 14400),
    ("24 hours", 86400),
)
REASON_MAX = 1000
#: After a deferred answer (a task the bridge had to fetch) no modal can be opened any more.
_PRESS_AGAIN = (
    "The bridge had not seen this task yet and has now loaded it. "
    "Press {button} again to continue; nothing was sent to the factory."
)


def bridge_of(interaction: discord.Interaction[Any]) -> Bridge:
    """The :class:`~bot.bridge.Bridge` attached to the client that received ``interaction``."""
    return interaction.client.bridge  # type: ignore[attr-defined, no-any-return]


def actor_from(interaction: discord.Interaction[Any], via: str) -> Actor:
    """Build an :class:`~bot.bridge.Actor` from the member who triggered ``interaction``."""
    from bot.bridge import Actor

    user = interaction.user
    roles = frozenset(role.id for role in getattr(user, "roles", []))
    return Actor(name=user.name, via=via, discord_user_id=user.id, role_ids=roles)


async def _answer(interaction: discord.Interaction[Any], outcome: Outcome | str) -> None:
    """Replace the ephemeral "working…" answer with the outcome (or send it if none yet);
    fitted to Discord's limits and without pings (:func:`bot.discord.limits.answer`)."""
    await answer(interaction, outcome if isinstance(outcome, str) else outcome.message)


def _progress(interaction: discord.Interaction[Any]) -> Any:
    async def on_retry(attempt: int, problem: str) -> None:
        if attempt == 0:  # bot.bridge.PROGRESS_NOTICE: a sentence to show as it is
            await answer(interaction, problem)
            return
        await answer(
            interaction,
            f"⏳ Recording your decision… the factory is slow ({problem}); retry {attempt}/3.",
        )

    return on_retry


async def _precheck(
    interaction: discord.Interaction[Any], task_id: str, decision: str, via: str
) -> TrackedTask | None:
    """Role and state checks before anything is sent (reads only, so the answer is fast);
    a refusal is answered first and audited afterwards.

    A task the bridge has never seen is looked up at the factory, which may be slow: then the
    interaction is deferred first (ephemeral "thinking…", Discord: 3 s deadline) and the
    answer follows; the caller sees ``interaction.response.is_done()`` and cannot open a modal.
    """
    bridge = bridge_of(interaction)
    actor = actor_from(interaction, via)
    if not interaction.response.is_done() and await bridge.store.get_task(task_id) is None:
        await interaction.response.defer(ephemeral=True, thinking=True)
    outcome, tracked = await bridge.check(task_id, decision, actor)
    if outcome is not None:
        await _answer(interaction, outcome)
        await bridge.audit_refusal(task_id, decision, actor, outcome)
        return None
    return tracked


def _adopter(interaction: discord.Interaction[Any], task_id: str) -> Callable[[], Awaitable[None]]:
    """After answering: record the clicked message as the task's if the store lacks it.

    A crash between posting and storing the message id is healed by the click (never by an
    ephemeral answer, e.g. an item picked from a batch message). Runs after the interaction
    was answered, so the write never delays the answer.
    """

    async def adopt() -> None:
        message = interaction.message
        if message is None or message.flags.ephemeral:
            return
        store = bridge_of(interaction).store
        tracked = await store.get_task(task_id)
        if tracked is not None and tracked.message_id is None:
            await store.adopt_message(task_id, message.channel.id, message.id)

    return adopt


async def run_decision(
    interaction: discord.Interaction[Any],
    task_id: str,
    decision: str,
    via: str,
    *,
    notes: str | None = None,
    after_answer: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Answer at once, send the decision (with retries), then tell the person the outcome.

    ``after_answer`` runs right after the interaction was answered (e.g. adopting the message).
    """
    bridge = bridge_of(interaction)
    actor = actor_from(interaction, via)
    await answer(interaction, "⏳ Recording your decision…")  # replaces a deferred "thinking…"
    if after_answer is not None:
        await after_answer()
    outcome = await bridge.decide(
        task_id,
        decision,
        actor,
        notes=notes,
        idempotency_seed=f"interaction:{interaction.id}",
        on_retry=_progress(interaction),
    )
    await _answer(interaction, outcome)


class RejectReasonModal(discord.ui.Modal):
    """Asks for the rejection reason (required, at most 1000 characters).

    Its id is unique per opening (``fb:m:reject:<task id>:<opening interaction id>``) and it is
    opened with :func:`bot.discord.modals.open_modal`: nothing stays in memory, and the
    submission reaches :func:`submit_reject` through the client's persistent handler, so two
    people rejecting at once and a submission after a restart are all answered.
    """

    reason: discord.ui.TextInput[RejectReasonModal] = discord.ui.TextInput(
        label="Why are you rejecting it?",
        style=discord.TextStyle.paragraph,
        required=True,
        max_length=REASON_MAX,
        custom_id="reason",
    )

    def __init__(self, task_id: str, title: str, *, nonce: int | str) -> None:
        super().__init__(
            title=_modal_title("Reject", title),
            custom_id=modal_custom_id("reject", task_id, nonce),
        )
        self.task_id = task_id


async def _refuse_input(
    interaction: discord.Interaction[Any],
    task_id: str,
    action: str,
    problem: str,
    message: str,
    *,
    via: str = "modal",
) -> None:
    """Audit the refusal of a form or select whose values fail the server-side checks
    (nothing is sent or changed) with ``problem``, then answer with ``message``.

    The audit comes first so that once the person reads the answer the trail shows it; one
    group-committed write takes milliseconds, well inside Discord's 3 s deadline.
    """
    actor = actor_from(interaction, via)
    await bridge_of(interaction).store.audit(
        actor_id=str(actor.discord_user_id),
        actor_name=actor.name,
        via=via,
        action=action,
        task_id=task_id,
        outcome="refused",
        detail=problem,
    )
    await answer(interaction, message)


async def submit_reject(
    interaction: discord.Interaction[Any], task_id: str, values: dict[str, str]
) -> None:
    """The reject form was submitted: check the reason, then send ``rejected`` with it as
    ``notes`` (:func:`run_decision`: "already rejected by …" when someone was first).

    Checked here whatever the client enforced: the reason is required (blank counts as
    missing) and at most ``REASON_MAX`` (1000) characters once trimmed; otherwise nothing is
    sent, the person is told why, and the refusal is audited.
    """
    reason = (values.get("reason") or "").strip()
    if not reason:
        await _refuse_input(
            interaction,
            task_id,
            "task.rejected",
            "reject reason missing",
            "A rejection needs a reason. Nothing was sent to the factory; press Reject again.",
        )
        return
    if len(reason) > REASON_MAX:
        await _refuse_input(
            interaction,
            task_id,
            "task.rejected",
            f"reject reason too long ({len(reason)} characters)",
            f"The reason is {len(reason)} characters long; at most {REASON_MAX} are allowed. "
            "Nothing was sent to the factory; press Reject again.",
        )
        return
    await run_decision(interaction, task_id, "rejected", "modal", notes=reason)


class DeployConfirmModal(discord.ui.Modal):
    """ "Type DEPLOY to confirm" before approving a production deploy (master plan §8).

    Like :class:`RejectReasonModal`, its id is unique per opening
    (``fb:m:deploy:<task id>:<opening interaction id>``) and it is opened with
    :func:`bot.discord.modals.open_modal`; the submission reaches :func:`submit_deploy` through
    the client's persistent handler (two deploy approvers at once, or a restart in between,
    are all answered).
    """

    confirmation: discord.ui.TextInput[DeployConfirmModal] = discord.ui.TextInput(
        label="Type DEPLOY to confirm",
        placeholder="DEPLOY",
        required=True,
        max_length=20,
        custom_id="confirm",
    )
    notes: discord.ui.TextInput[DeployConfirmModal] = discord.ui.TextInput(
        label="Notes (optional)",
        style=discord.TextStyle.paragraph,
        required=False,
        max_length=REASON_MAX,
        custom_id="notes",
    )

    def __init__(self, task_id: str, title: str, *, nonce: int | str) -> None:
        super().__init__(
            title=_modal_title("Deploy", title),
            custom_id=modal_custom_id("deploy", task_id, nonce),
        )
        self.task_id = task_id


async def submit_deploy(
    interaction: discord.Interaction[Any], task_id: str, values: dict[str, str]
) -> None:
    """The DEPLOY form was submitted: approve only when exactly ``DEPLOY`` was typed.

    Checked here whatever the client enforced (master plan §8): anything but ``DEPLOY``
    (surrounding spaces aside) sends nothing, tells the person what they typed and is
    audited; notes are at most ``REASON_MAX`` (1000) characters. The approval then goes
    through :func:`run_decision`, where the two-person rule may record it and wait for a
    second deploy approver (:meth:`bot.bridge.Bridge.decide`).
    """
    typed = (values.get("confirm") or "").strip()
    if typed != "DEPLOY":
        await _refuse_input(
            interaction,
            task_id,
            "task.approved",
            "deploy confirmation not typed",
            f"You typed {code_span(typed[:20])}, not `DEPLOY`: "
            "nothing was sent to the factory. Press Approve again to retry.",
        )
        return
    notes = (values.get("notes") or "").strip()
    if len(notes) > REASON_MAX:
        await _refuse_input(
            interaction,
            task_id,
            "task.approved",
            f"deploy notes too long ({len(notes)} characters)",
            f"The notes are {len(notes)} characters long; at most {REASON_MAX} are allowed. "
            "Nothing was sent to the factory; press Approve again.",
        )
        return
    await run_decision(interaction, task_id, "approved", "modal", notes=notes or None)


def _modal_title(verb: str, title: str) -> str:
    return modal_title(verb, title)  # Discord: modal title ≤ 45


class TaskButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"fb:t:(?P<action>approve|reject|details|ack):(?P<task_id>{TASK_ID})",
):
    """Approve / Reject / Acknowledge / Details on a task message."""

    STYLES: ClassVar[dict[str, tuple[str, discord.ButtonStyle, str]]] = {
        "approve": ("Approve", discord.ButtonStyle.success, "✅"),
        "reject": ("Reject", discord.ButtonStyle.danger, "❌"),
        "ack": ("Acknowledge", discord.ButtonStyle.secondary, "👀"),
        "details": ("Details", discord.ButtonStyle.secondary, "📋"),
    }

    def __init__(self, action: str, task_id: str) -> None:
        label, style, emoji = self.STYLES[action]
        super().__init__(
            discord.ui.Button(
                label=label, style=style, emoji=emoji, custom_id=f"fb:t:{action}:{task_id}"
            )
        )
        self.action = action
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> TaskButton:
        """Rebuild the button from its ``custom_id`` (no state is kept in memory)."""
        return cls(match["action"], match["task_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Dispatch on the action; every branch answers within Discord's 3 s deadline,
        before any database write."""
        adopt = _adopter(interaction, self.task_id)
        if self.action == "details":
            await self._details(interaction)
            await adopt()
        elif self.action == "approve":
            tracked = await _precheck(interaction, self.task_id, "approved", "button")
            if tracked is None:
                return
            if needs_deploy_confirmation(tracked.task, "approved", guarded=tracked.guarded):
                if interaction.response.is_done():  # deferred while the factory was asked
                    await _answer(interaction, _PRESS_AGAIN.format(button="Approve"))
                    return
                await open_modal(
                    interaction,
                    DeployConfirmModal(self.task_id, tracked.task.title, nonce=interaction.id),
                )
                await adopt()
                return
            await run_decision(interaction, self.task_id, "approved", "button", after_answer=adopt)
        elif self.action == "reject":
            tracked = await _precheck(interaction, self.task_id, "rejected", "button")
            if tracked is None:
                return
            if interaction.response.is_done():  # deferred while the factory was asked
                await _answer(interaction, _PRESS_AGAIN.format(button="Reject"))
                await adopt()
                return
            await open_modal(
                interaction,
                RejectReasonModal(self.task_id, tracked.task.title, nonce=interaction.id),
            )
            await adopt()
        elif self.action == "ack":
            bridge = bridge_of(interaction)
            await interaction.response.send_message("⏳ Acknowledging…", ephemeral=True)
            await adopt()
            outcome = await bridge.acknowledge(
                self.task_id,
                actor_from(interaction, "button"),
                idempotency_seed=f"interaction:{interaction.id}",
            )
            await _answer(interaction, outcome)

    async def _details(self, interaction: discord.Interaction[Any]) -> None:
        tracked = await bridge_of(interaction).store.get_task(self.task_id)
        if tracked is None:
            await answer(interaction, f"Task `{self.task_id}` is not known to the bridge.")
            return
        await answer(interaction, embed=details_embed(tracked.task))


def snooze_seconds(values: Sequence[str]) -> int | None:
    """The snooze duration in seconds when ``values`` is exactly one offered choice
    (``SNOOZE_CHOICES``: 1 h, 4 h, 24 h), else ``None``."""
    offered = {str(seconds): seconds for _, seconds in SNOOZE_CHOICES}
    if len(values) != 1:
        return None
    return offered.get(str(values[0]))


class SnoozeSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=rf"fb:snooze:(?P<task_id>{TASK_ID})",
):
    """Snooze reminders for 1 h, 4 h or 24 h (the SLA breach never moves)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=f"fb:snooze:{task_id}",
                placeholder="💤 Snooze reminders…",
                options=[
                    discord.SelectOption(label=label, value=str(seconds))
                    for label, seconds in SNOOZE_CHOICES
                ],
                min_values=1,
                max_values=1,
            )
        )
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> SnoozeSelect:
        """Rebuild the select from its ``custom_id``."""
        return cls(match["task_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Record the snooze and say until when.

        The chosen value is checked whatever the client sent: exactly one of the offered
        durations (``SNOOZE_CHOICES``), otherwise nothing changes and the refusal is audited.
        """
        seconds = snooze_seconds(self.item.values)
        if seconds is None:
            offered = ", ".join(label for label, _ in SNOOZE_CHOICES)
            await _refuse_input(
                interaction,
                self.task_id,
                "task.snooze",
                f"snooze value {list(self.item.values)!r:.100} is not one of the offered choices",
                f"That is not one of the offered snooze durations ({offered}). Nothing was "
                "changed; pick one from the menu.",
                via="button",
            )
            return
        await interaction.response.send_message("⏳ Snoozing…", ephemeral=True)
        # like TaskButton: a message posted but not yet stored is adopted, so that the snooze
        # below is shown on it
        await _adopter(interaction, self.task_id)()
        outcome = await bridge_of(interaction).snooze(
            self.task_id, actor_from(interaction, "button"), seconds
        )
        await _answer(interaction, outcome)


def task_view(tracked: TrackedTask, *, dashboard_url: str | None) -> discord.ui.View | None:
    """The components of a task message: none once decided (the buttons are removed).

    Row 1: Approve, Reject, Acknowledge, Details (a link to ``FACTORY_DASHBOARD_URL/tasks/{id}``
    when set); row 2: the snooze select.
    """
    if tracked.is_decided:
        return None
    view = discord.ui.View(timeout=None)
    task_id = tracked.task_id
    view.add_item(TaskButton("approve", task_id))
    view.add_item(TaskButton("reject", task_id))
    view.add_item(TaskButton("ack", task_id))
    if dashboard_url:
        view.add_item(
            discord.ui.Button(
                label="Details",
                emoji="📋",
                style=discord.ButtonStyle.link,
                url=f"{dashboard_url.rstrip('/')}/tasks/{task_id}",
            )
        )
    else:
        view.add_item(TaskButton("details", task_id))
    select = SnoozeSelect(task_id)
    select.item.row = 1
    view.add_item(select)
    return view


#: Every DynamicItem class the client registers in ``setup_hook``.
DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (TaskButton, SnoozeSelect)

#: Handlers of the bridge's modals by kind (``fb:m:<kind>:…``), called by the client's
#: persistent modal handler (:func:`bot.discord.modals.dispatch_modal_submit`).
MODAL_HANDLERS: dict[str, ModalHandler] = {"reject": submit_reject, "deploy": submit_deploy}
