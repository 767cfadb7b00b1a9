"""The task's forms: the reject reason and the "type DEPLOY" confirmation, and their handlers.

Both are opened with :func:`bot.discord.modals.open_modal` under an id unique per opening
(:func:`bot.discord.ids.modal_custom_id`), so nothing stays in memory; their submissions reach
:func:`submit_reject` / :func:`submit_deploy` through :data:`MODAL_HANDLERS` and the bot's
persistent modal listener (:class:`bot.discord.cogs.TaskCog`): two people filling
the same form at once, or a submission after a restart, are all answered.

Whatever the client enforced, the values are checked here again (they arrive as sent).
"""

from __future__ import annotations

from typing import Any

import discord

from bot.discord.client import bridge_of
from bot.discord.decisions import REASON_MAX, refuse, run_decision
from bot.discord.ids import modal_custom_id
from bot.discord.limits import modal_title
from bot.discord.modals import ModalHandler
from escalation.markup import code_span
from escalation.task_kinds import command_refusal

__all__ = [
    "MODAL_HANDLERS",
    "DeployConfirmModal",
    "RejectReasonModal",
    "submit_deploy",
    "submit_reject",
]


class RejectReasonModal(discord.ui.Modal):
    """Asks for the rejection reason (required, at most 1000 characters).

    Its id is unique per opening (``fb:m:reject:<task id>:<opening interaction id>``).
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
            title=modal_title("Reject", title),  # Discord: modal title ≤ 45
            custom_id=modal_custom_id("reject", task_id, nonce),
        )
        self.task_id = task_id


async def submit_reject(
    interaction: discord.Interaction[Any], task_id: str, values: dict[str, str]
) -> None:
    """The reject form was submitted: check the reason, then send ``rejected`` with it as
    ``notes`` (:func:`~bot.discord.decisions.run_decision`: "already rejected by …" when
    someone was first).

    Checked here whatever the client enforced: the reason is required (blank counts as
    missing) and at most ``REASON_MAX`` (1000) characters once trimmed; otherwise nothing is
    sent, the person is told why, and the refusal is audited.
    """
    reason = (values.get("reason") or "").strip()
    if not reason:
        await refuse(
            interaction,
            task_id,
            "task.rejected",
            "reject reason missing",
            "A rejection needs a reason. Nothing was sent to the factory; press Reject again.",
            via="modal",
        )
        return
    if len(reason) > REASON_MAX:
        await refuse(
            interaction,
            task_id,
            "task.rejected",
            f"reject reason too long ({len(reason)} characters)",
            f"The reason is {len(reason)} characters long; at most {REASON_MAX} are allowed. "
            "Nothing was sent to the factory; press Reject again.",
            via="modal",
        )
        return
    if await _fits_the_task(interaction, task_id, "rejected"):
        await run_decision(interaction, task_id, "rejected", "modal", notes=reason)


async def _fits_the_task(
    interaction: discord.Interaction[Any], task_id: str, decision: str
) -> bool:
    """True when ``decision`` is one the task's own controls offer. A submission carries
    whatever task id its client put in the form's custom_id, so a form of one task cannot
    decide another in a way that task's controls (and ``/factory``) refuse
    (:func:`escalation.task_kinds.command_refusal`): refused, audited, nothing sent. A task
    the bridge does not hold yet is left to :meth:`bot.actions.Actions.decide`."""
    tracked = await bridge_of(interaction).store.get_task(task_id)
    refusal = (
        None
        if tracked is None
        else command_refusal(tracked.task, decision, guarded=tracked.guarded)
    )
    if refusal is None or tracked is None:
        return True
    kind = tracked.task.type.value
    problem = f"form: {decision} is not a control of a {kind} task"
    message = f"{refusal} Nothing was sent to the factory."
    await refuse(interaction, task_id, f"task.{decision}", problem, message, via="modal")
    return False


class DeployConfirmModal(discord.ui.Modal):
    """ "Type DEPLOY to confirm" before approving a production deploy (master plan §8).

    Like :class:`RejectReasonModal`, its id is unique per opening
    (``fb:m:deploy:<task id>:<opening interaction id>``).
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
            title=modal_title("Deploy", title),  # Discord: modal title ≤ 45
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
    through :func:`~bot.discord.decisions.run_decision`, where the two-person rule may record
    it and wait for a second deploy approver (:meth:`bot.bridge.Bridge.decide`).
    """
    typed = (values.get("confirm") or "").strip()
    if typed != "DEPLOY":
        await refuse(
            interaction,
            task_id,
            "task.approved",
            "deploy confirmation not typed",
            f"You typed {code_span(typed[:20])}, not `DEPLOY`: "
            "nothing was sent to the factory. Press Approve again to retry.",
            via="modal",
        )
        return
    notes = (values.get("notes") or "").strip()
    if len(notes) > REASON_MAX:
        await refuse(
            interaction,
            task_id,
            "task.approved",
            f"deploy notes too long ({len(notes)} characters)",
            f"The notes are {len(notes)} characters long; at most {REASON_MAX} are allowed. "
            "Nothing was sent to the factory; press Approve again.",
            via="modal",
        )
        return
    if await _fits_the_task(interaction, task_id, "approved"):
        await run_decision(
            interaction, task_id, "approved", "modal", notes=notes or None, deploy_confirmed=True
        )


#: Handlers of the bridge's modals by kind (``fb:m:<kind>:…``), called by the bot's
#: persistent modal listener (:func:`bot.discord.modals.dispatch_modal_submit`).
MODAL_HANDLERS: dict[str, ModalHandler] = {"reject": submit_reject, "deploy": submit_deploy}
