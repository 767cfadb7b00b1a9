"""Channel permissions as Discord computes them (base, then @everyone, role and member overwrites)."""

from __future__ import annotations

import discord

from bot.live_check import Check, channel_permissions, format_check

GUILD = 1
BOT = 50
ROLE_BOT = 10
ROLE_OTHER = 11
VIEW = discord.Permissions(view_channel=True).value
SEND = discord.Permissions(send_messages=True).value
EMBED = discord.Permissions(embed_links=True).value
ADMIN = discord.Permissions(administrator=True).value


def perms(overwrites: list[dict[str, object]], **kwargs: object) -> int:
    args: dict[str, object] = {
        "guild_id": GUILD,
        "member_id": BOT,
        "member_role_ids": [ROLE_BOT],
        "roles": {GUILD: VIEW, ROLE_BOT: SEND | EMBED, ROLE_OTHER: 0},
        "overwrites": overwrites,
        "owner_id": 99,
    }
    args.update(kwargs)
    return channel_permissions(**args)  # type: ignore[arg-type]


def ow(id_: int, type_: int, allow: int = 0, deny: int = 0) -> dict[str, object]:
    return {"id": str(id_), "type": type_, "allow": str(allow), "deny": str(deny)}


def test_base_permissions_are_everyone_plus_the_roles() -> None:
    assert perms([]) == VIEW | SEND | EMBED


def test_everyone_deny_then_role_allow_then_member_deny() -> None:
    # @everyone may not view; the bot's role may again; the bot itself may not embed.
    result = perms([ow(GUILD, 0, deny=VIEW), ow(ROLE_BOT, 0, allow=VIEW), ow(BOT, 1, deny=EMBED)])
    assert result == VIEW | SEND


def test_role_overwrites_of_roles_the_member_lacks_do_not_count() -> None:
    assert perms([ow(ROLE_OTHER, 0, deny=SEND)]) == VIEW | SEND | EMBED


def test_role_allow_wins_over_role_deny_of_another_role() -> None:
    result = perms(
        [ow(ROLE_BOT, 0, deny=SEND), ow(ROLE_OTHER, 0, allow=SEND)],
        member_role_ids=[ROLE_BOT, ROLE_OTHER],
    )
    assert result & SEND


def test_administrator_and_owner_have_everything() -> None:
    everything = discord.Permissions.all().value
    assert perms([ow(BOT, 1, deny=VIEW)], roles={GUILD: 0, ROLE_BOT: ADMIN}) == everything
    assert perms([ow(BOT, 1, deny=VIEW)], owner_id=BOT) == everything


def test_format_check_marks_and_fix() -> None:
    assert format_check(Check("Factory API", True, "accepted")) == "✓ Factory API: accepted"
    assert (
        format_check(Check("Factory API", False, "401", "check FACTORY_API_KEY"))
        == "✗ Factory API: 401 — check FACTORY_API_KEY"
    )
