"""What a button, a form and a ``/factory`` command share when a person decides on a task.

* :func:`actor_from` — who clicked (name, Discord id, roles) as an :class:`~bot.bridge.Actor`;
* :func:`precheck` — the role and state checks before anything is sent (a refusal is answered
  and audited);
* :func:`run_decision` — answer at once, send the decision with retries, report the outcome;
* :func:`refuse` — audit and answer a refused input (a form or option failing its checks);
* :func:`adopter` — heal a message posted but not stored, from the click on it;
* :func:`snooze_seconds` — the offered snooze durations, checked whatever the client sent.

Discord: an interaction must be answered within 3 s, so each of these answers first (or
defers) and does the slow work afterwards (:mod:`bot.discord.replies`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot.discord.client import bridge_of
from bot.discord.replies import answer, defer_thinking, is_answered, say

if TYPE_CHECKING:
    from bot.bridge import Actor
    from bot.store import TrackedTask

__all__ = [
    "PRESS_AGAIN",
    "REASON_MAX",
    "SNOOZE_CHOICES",
    "actor_from",
    "adopter",
    "precheck",
    "refuse",
    "run_decision",
    "snooze_seconds",
]

log = logging.getLogger(__name__)

#: The offered snooze durations: label, seconds.
SNOOZE_CHOICES: tuple[tuple[str, int], ...] = (
    ("1 hour", 3600),
    ("4 hours", 14400),
    ("24 hours", 86400),
)
#: Longest reject reason or approval notes, in characters once trimmed.
REASON_MAX = 1000
#: After a deferred answer (a task the bridge had to fetch) no modal can be opened any more.
PRESS_AGAIN = (
    "The bridge had not seen this task yet and has now loaded it. "
    "Press {button} again to continue; nothing was sent to the factory."
)


def actor_from(interaction: discord.Interaction[Any], via: str) -> Actor:
    """Build an :class:`~bot.bridge.Actor` from the member who triggered ``interaction``."""
    from bot.bridge import Actor

    user = interaction.user
    roles = frozenset(role.id for role in getattr(user, "roles", []))
    return Actor(name=user.name, via=via, discord_user_id=user.id, role_ids=roles)


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


async def precheck(
    interaction: discord.Interaction[Any], task_id: str, decision: str, via: str
) -> TrackedTask | None:
    """Role and state checks before anything is sent (reads only, so the answer is fast);
    a refusal is answered first and audited afterwards.

    A task the bridge has never seen is looked up at the factory, which may be slow: then the
    interaction is deferred first (an approval that could not be read is not looked up here:
    the task is guarded meanwhile, the DEPLOY form opens and the decision reads it again) (ephemeral "thinking…", Discord: 3 s deadline) and the
    answer follows; the caller sees :func:`~bot.discord.replies.is_answered` and cannot open a
    modal.

    Returns
    -------
    TrackedTask or None
        The task when the decision may go ahead, ``None`` when it was refused.
    """
    bridge = bridge_of(interaction)
    actor = actor_from(interaction, via)
    if not is_answered(interaction):
        if await bridge.store.get_task(task_id) is None:  # the factory is asked first
            await defer_thinking(interaction)
    outcome, tracked = await bridge.check(task_id, decision, actor)
    if outcome is not None:
        await say(interaction, outcome)
        await bridge.audit_refusal(task_id, decision, actor, outcome)
        return None
    return tracked


def adopter(interaction: discord.Interaction[Any], task_id: str) -> Callable[[], Awaitable[None]]:
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
    option: dict[str, str] | None = None,
    deploy_confirmed: bool = False,
) -> None:
    """Answer at once, send the decision (with retries), then tell the person the outcome.

    ``after_answer`` runs right after the interaction was answered (e.g. adopting the message).
    ``option`` is the option picked on a ``decision`` task (``{"value", "label"}``).
    ``deploy_confirmed`` is True only from the DEPLOY form (:meth:`bot.actions.Actions.decide`).
    The idempotency key derives from the interaction id (a redelivered click sends nothing new).
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
        option=option,
        deploy_confirmed=deploy_confirmed,
    )
    await say(interaction, outcome)


async def refuse(
    interaction: discord.Interaction[Any],
    task_id: str,
    action: str,
    problem: str,
    message: str,
    *,
    via: str,
) -> None:
    """Audit the refusal of an input whose values fail the server-side checks (nothing is sent
    or changed) with ``problem``, then answer with ``message``.

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


def snooze_seconds(values: Sequence[str]) -> int | None:
    """The snooze duration in seconds when ``values`` is exactly one offered choice
    (``SNOOZE_CHOICES``: 1 h, 4 h, 24 h), else ``None``."""
    offered = {str(seconds): seconds for _, seconds in SNOOZE_CHOICES}
    if len(values) != 1:
        return None
    return offered.get(str(values[0]))
