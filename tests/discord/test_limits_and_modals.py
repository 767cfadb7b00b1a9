"""The length-safe renderer (bot.discord.limits), per-opening modal ids (bot.discord.ids)
and the @here guard of the ladder's posts (bot.discord.ladder_output)."""

from __future__ import annotations

import discord
import pytest

from bot.discord.decisions import snooze_seconds
from bot.discord.ids import modal_custom_id, parse_modal_id
from bot.discord.ladder_output import own_here_only
from bot.discord.limits import (
    BUTTON_LABEL_MAX,
    CONTENT_MAX,
    EMBED_TOTAL_MAX,
    MODAL_TITLE_MAX,
    OPTION_MAX,
    fit_embed,
    fit_embeds,
    fit_message,
    modal_title,
)
from bot.discord.modals import submitted_values


def huge_embed() -> discord.Embed:
    embed = discord.Embed(title="t" * 900, description="d" * 9000)
    for i in range(30):
        embed.add_field(name="n" * 400, value=f"{i}" * 2000)
    embed.set_footer(text="f" * 3000)
    embed.set_author(name="a" * 400)
    return embed


def test_every_part_of_an_embed_is_fitted() -> None:
    embed = fit_embed(huge_embed())
    assert len(embed) <= EMBED_TOTAL_MAX
    assert len(embed.title or "") <= 256
    assert len(embed.description or "") <= 4096
    assert len(embed.fields) <= 25
    assert all(len(f.name or "") <= 256 and len(f.value or "") <= 1024 for f in embed.fields)
    assert len(embed.footer.text or "") <= 2048
    assert len(embed.author.name or "") <= 256


def test_several_embeds_share_the_6000() -> None:
    embeds = fit_embeds([huge_embed(), huge_embed(), discord.Embed(title="small")])
    assert sum(len(e) for e in embeds) <= EMBED_TOTAL_MAX
    assert embeds[2].title == "small"


def test_message_content_view_and_modal_title_are_fitted() -> None:
    view = discord.ui.View()
    view.add_item(discord.ui.Button(label="b" * 200, custom_id="x"))
    select: discord.ui.Select[discord.ui.View] = discord.ui.Select(
        custom_id="s",
        placeholder="p" * 400,
        options=[discord.SelectOption(label="o" * 300, value="1", description="d" * 300)],
    )
    view.add_item(select)
    fitted = fit_message({"content": "c" * 5000, "view": view, "ephemeral": True})
    assert len(fitted["content"]) == CONTENT_MAX and fitted["content"].endswith("…")
    assert fitted["ephemeral"] is True
    button = view.children[0]
    assert isinstance(button, discord.ui.Button)
    assert len(button.label or "") == BUTTON_LABEL_MAX
    assert len(select.options[0].label) == OPTION_MAX
    assert len(select.options[0].description or "") == OPTION_MAX
    assert len(select.placeholder or "") == 150
    assert len(modal_title("Reject", "x" * 2000)) == MODAL_TITLE_MAX
    assert fit_message({"content": None}) == {"content": None}


def test_modal_ids_are_unique_per_opening_and_parse_back() -> None:
    first = modal_custom_id("reject", "task-1", 1234567890123456789)
    second = modal_custom_id("reject", "task-1", 1234567890123456790)
    assert first != second
    assert parse_modal_id(first) == ("reject", "task-1")
    assert parse_modal_id("fb:m:reject:task-1") == ("reject", "task-1")  # opened before
    assert parse_modal_id("fb:t:approve:task-1") is None
    longest = modal_custom_id("reject", "t" * 64, 2**64 - 1)
    assert len(longest) <= 100
    with pytest.raises(ValueError):
        modal_custom_id("reject", "a:b", 1)


def test_submitted_values_read_rows_and_labels() -> None:
    data = {
        "custom_id": "fb:m:reject:t:1",
        "components": [
            {"type": 1, "components": [{"type": 4, "custom_id": "reason", "value": "no"}]},
            {"type": 18, "component": {"type": 4, "custom_id": "notes", "value": None}},
        ],
    }
    assert submitted_values(data) == {"reason": "no", "notes": ""}
    assert submitted_values(None) == {}


def test_snooze_accepts_only_the_offered_durations() -> None:
    assert snooze_seconds(["3600"]) == 3600
    assert snooze_seconds(["86400"]) == 86400
    for forged in (["999999999"], ["abc"], [], ["3600", "14400"], ["-3600"]):
        assert snooze_seconds(forged) is None


def test_here_is_honoured_only_when_it_is_the_ladders_own() -> None:
    assert own_here_only("🔴 SLA breach imminent @here: **x** breaches")
    assert not own_here_only("🔴 @here: **@everyone**")
    assert not own_here_only("🔴 @here: **@here**")
    assert not own_here_only("no ping at all")
