"""The option select of a ``decision`` task ("choose between options", contract §1.4).

A :class:`discord.ui.DynamicItem` whose ``custom_id`` is ``fb:t:pick:<task id>``
(:func:`bot.discord.ids.option_select`): it works after any number of restarts, and the
options it checks a pick against are re-read from the task in the store on every pick (never
from memory, never from what the client sent). A pick is an approval carrying the option: it
goes through the same decision protocol as Approve (:func:`bot.discord.decisions.run_decision`
→ :meth:`bot.actions.Actions.decide`: role check, exactly-once sending, 409 → "Already decided
by …"), and the factory gets ``decision: "approved"`` with ``decisionData.option``
``{"value", "label"}``.

Discord: a string select takes at most 25 options, each label, value and description at most
100 characters (:mod:`escalation.task_kinds` keeps the options within them); an interaction
must be answered within 3 s (the checks are reads, then the "⏳ Recording…" answer comes first).
"""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.discord import ids
from bot.discord.decisions import adopter, precheck, refuse, run_decision
from escalation.task_kinds import DecisionOptions, decision_options

__all__ = ["OptionSelect"]

#: What the select shows before a pick.
PLACEHOLDER = "🗳️ Choose an option…"


class OptionSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=ids.OPTION_SELECT_TEMPLATE,
):
    """Pick one option of a ``decision`` task (see the module docstring).

    Parameters
    ----------
    task_id:
        The factory task id.
    options:
        The usable options (:func:`escalation.task_kinds.decision_options`); empty when the
        item is rebuilt from a pick (the callback re-reads them from the store).
    """

    def __init__(self, task_id: str, options: DecisionOptions | None = None) -> None:
        choices = [
            discord.SelectOption(label=o.label, value=o.value, description=o.description)
            for o in (options.options if options else ())
        ] or [discord.SelectOption(label="—", value="-")]  # rebuilt: any one, never sent
        super().__init__(
            discord.ui.Select(
                custom_id=ids.option_select(task_id),
                placeholder=PLACEHOLDER,
                options=choices,
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
    ) -> OptionSelect:
        """Rebuild the select from its ``custom_id`` (the options are read at the pick)."""
        return cls(match["task_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Check who picks and what, then send the choice as an approval with its option.

        A member without the approver role, or a task already decided, is answered why and
        nothing changes (audited, like Approve). A value that is not exactly one of the task's
        current options (a hand-crafted request) is refused and audited.
        """
        tracked = await precheck(interaction, self.task_id, "approved", "button")
        if tracked is None:
            return
        values = list(self.item.values)
        option = decision_options(tracked.task).find(values[0]) if len(values) == 1 else None
        if option is None or tracked.guarded:
            problem = (
                "a production deploy is not decided through the option menu"
                if tracked.guarded
                else f"option {values!r:.100} is not one of the task's options"
            )
            await refuse(
                interaction,
                self.task_id,
                "task.approved",
                problem,
                "That is not one of this task's options. Nothing was sent; pick one from the menu."
                if not tracked.guarded
                else "This task is a production deploy: use Approve / Reject. Nothing was sent.",
                via="button",
            )
            return
        await run_decision(
            interaction,
            self.task_id,
            "approved",
            "button",
            after_answer=adopter(interaction, self.task_id),
            option=option.to_wire(),
        )
