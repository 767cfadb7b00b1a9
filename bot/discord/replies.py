"""Every way the bridge answers an interaction, in one place.

Discord ("Receiving and Responding", https://discord.com/developers/docs/interactions/
receiving-and-responding): an interaction gets exactly one initial response, within 3 s; after
it, the original response can be edited and follow-up messages sent for 15 minutes. So each
callback answers first — a "⏳ …" message (:func:`answer_now`), a deferred "thinking…"
(:func:`defer_thinking`, :func:`defer_update`) or a modal — and reports the outcome afterwards
by replacing that answer (:func:`answer`, :func:`say`).

Every answer is ephemeral, fitted to Discord's limits (:func:`bot.discord.limits.fit_message`)
and sent without pings (:data:`bot.discord.limits.NO_PINGS`).

An answer or follow-up that comes after the interaction token's 15 minutes (Discord answers
404 / 10015 Unknown Webhook) goes to the person as a DM instead (:func:`dm_instead`), with
:data:`LATE_NOTE` above it, so that a slow outcome still reaches whoever asked.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord

from bot.discord.limits import NO_PINGS, fit_content, fit_message

if TYPE_CHECKING:
    from bot.bridge import Outcome

__all__ = [
    "answer",
    "answer_now",
    "defer_thinking",
    "defer_update",
    "dm_instead",
    "follow_up",
    "is_answered",
    "say",
]

log = logging.getLogger(__name__)

#: Discord's JSON error code for an interaction token past its 15 minutes (Unknown Webhook).
UNKNOWN_WEBHOOK = 10015
#: Discord's JSON error code (with a 401) for an interaction token it no longer takes
#: (Invalid Webhook Token): the answer can only go by DM, as for :data:`UNKNOWN_WEBHOOK`.
INVALID_WEBHOOK_TOKEN = 50027
#: The codes after which an interaction's answer goes by DM (Discord: JSON error codes).
_TOKEN_GONE = frozenset({UNKNOWN_WEBHOOK, INVALID_WEBHOOK_TOKEN})

#: Put above an answer that comes by DM because the interaction expired.
LATE_NOTE = "↪ This answer came after Discord's 15-minute reply window, so it comes by DM."


async def dm_instead(interaction: discord.Interaction[Any], fitted: dict[str, Any]) -> bool:
    """Send an answer whose interaction expired as a DM to the person who interacted.

    Discord: interaction tokens are valid for 15 minutes ("Receiving and Responding"); after
    that, editing the answer or sending a follow-up fails with 10015 Unknown Webhook. The DM
    carries the content (after :data:`LATE_NOTE`) and embeds, no components, no pings. A DM
    Discord refuses (closed DMs: 50007) is logged, never raised.

    Parameters
    ----------
    fitted:
        The answer's keyword arguments as :func:`~bot.discord.limits.fit_message` made them.

    Returns
    -------
    bool
        True when the DM was sent.
    """
    content = fitted.get("content")
    dm: dict[str, Any] = {
        "content": fit_content(f"{LATE_NOTE}\n{content}" if content else LATE_NOTE),
        "allowed_mentions": NO_PINGS,
    }
    for key in ("embed", "embeds"):
        if fitted.get(key):
            dm[key] = fitted[key]
    try:
        await interaction.user.send(**dm)
    except discord.HTTPException as exc:
        log.warning("could not DM the late answer to %s: %s", interaction.user, exc)
        return False
    log.info("interaction of %s expired: answered by DM", interaction.user)
    return True


def is_answered(interaction: discord.Interaction[Any]) -> bool:
    """Whether the initial response was given (then no modal can be opened any more)."""
    return interaction.response.is_done()


async def answer(
    interaction: discord.Interaction[Any], content: str | None = None, **fields: Any
) -> bool:
    """Answer ``interaction`` ephemerally, or replace the answer already given.

    The first answer is an ephemeral message; once the interaction was answered (a "⏳ …"
    message or a deferred "thinking…"), the original answer is edited instead. Everything is
    fitted (:func:`~bot.discord.limits.fit_message`) and sent without pings. A Discord failure
    is logged, never raised (the action the answer reports stands); an edit after the
    interaction token's 15 minutes (10015 Unknown Webhook) goes by DM (:func:`dm_instead`).

    Returns
    -------
    bool
        True when Discord took the answer.
    """
    fitted = fit_message({"content": content, **fields})
    fitted.setdefault("allowed_mentions", NO_PINGS)
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(**fitted)
        else:
            await interaction.response.send_message(ephemeral=True, **fitted)
    except discord.HTTPException as exc:
        if exc.code in _TOKEN_GONE:
            return await dm_instead(interaction, fitted)
        log.warning("could not answer %s: %s", interaction.user, exc)
        return False
    return True


async def say(interaction: discord.Interaction[Any], outcome: Outcome | str) -> bool:
    """:func:`answer` with an outcome's message (or a sentence as it is)."""
    return await answer(interaction, outcome if isinstance(outcome, str) else outcome.message)


async def answer_now(interaction: discord.Interaction[Any], text: str) -> None:
    """The initial response: the ephemeral "⏳ …" shown while the slow work runs.

    Raises
    ------
    discord.HTTPException
        When Discord refuses it (e.g. the 3 s deadline passed): the caller then stops, and
        nothing is sent to the factory.
    """
    await interaction.response.send_message(text, ephemeral=True)


async def defer_thinking(interaction: discord.Interaction[Any]) -> None:
    """The initial response: an ephemeral "thinking…", replaced later by :func:`answer`."""
    await interaction.response.defer(ephemeral=True, thinking=True)


async def defer_update(interaction: discord.Interaction[Any]) -> None:
    """The initial response to a component whose message is then edited in place (paging)."""
    await interaction.response.defer()


async def follow_up(interaction: discord.Interaction[Any], **fields: Any) -> bool:
    """One more ephemeral message after the answer (fitted, no pings); a Discord failure is
    logged, never raised, and one after the 15-minute token life goes by DM
    (:func:`dm_instead`). True when Discord (or the DM) took it."""
    fitted = fit_message(fields)
    fitted.setdefault("allowed_mentions", NO_PINGS)
    try:
        await interaction.followup.send(ephemeral=True, **fitted)
    except discord.HTTPException as exc:
        if exc.code in _TOKEN_GONE:
            return await dm_instead(interaction, fitted)
        log.warning("could not send a follow-up to %s: %s", interaction.user, exc)
        return False
    return True
