"""The one place that makes whatever the bridge sends fit Discord's limits.

Every message the bridge creates or edits and every interaction answer goes through
:func:`fit_message` (directly, through :meth:`bot.discord.notifier.DiscordNotifier.send`, or
through :mod:`bot.discord.replies`): what is too long is shortened with "…", never refused by
Discord with 50035 ("Invalid Form Body") — a person always learns the outcome, whatever the factory's titles.

Limits (Discord: "Message Resource", "Embed Limits", "Component Reference", "Interactions"):

======================================  =====
content                                  2000
embed title / field name / author name    256
embed description                        4096
embed field value                        1024
embed footer                             2048
fields per embed                           25
all embeds of a message, together        6000
button label                               80
select option label / description         100
select placeholder                        150
modal title / text input label             45
======================================  =====

Interaction answers go out with no pings (``allowed_mentions`` none): factory text in them is
escaped anyway (:mod:`escalation.markup`), and an ephemeral answer has nobody to ping.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import discord

from escalation.markup import truncate

__all__ = [
    "AUTHOR_NAME_MAX",
    "BUTTON_LABEL_MAX",
    "CONTENT_MAX",
    "DESCRIPTION_MAX",
    "EMBED_TOTAL_MAX",
    "FIELDS_MAX",
    "FIELD_NAME_MAX",
    "FIELD_VALUE_MAX",
    "FOOTER_MAX",
    "MODAL_TITLE_MAX",
    "NO_PINGS",
    "OPTION_MAX",
    "PLACEHOLDER_MAX",
    "TITLE_MAX",
    "fit_content",
    "fit_embed",
    "fit_embeds",
    "fit_message",
    "fit_view",
    "modal_title",
    "truncate",
]

CONTENT_MAX = 2000
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_NAME_MAX = 256
FIELDS_MAX = 25
EMBED_TOTAL_MAX = 6000
BUTTON_LABEL_MAX = 80
OPTION_MAX = 100
PLACEHOLDER_MAX = 150
MODAL_TITLE_MAX = 45

#: No pings at all (users, roles, @everyone/@here, the replied-to author).
NO_PINGS = discord.AllowedMentions.none()


def fit_content(content: str | None) -> str | None:
    """Message content cut to 2000 characters (``None`` stays ``None``)."""
    return None if content is None else truncate(content, CONTENT_MAX)


def fit_embed(embed: discord.Embed, limit: int = EMBED_TOTAL_MAX) -> discord.Embed:
    """``embed`` with every part within its limit and the whole within ``limit`` characters.

    Title, description, field names and values, footer and author name are cut to their own
    limits and fields beyond 25 dropped; then, while the total exceeds ``limit``, the
    description is shortened, then the longest remaining part (a field value or name, the
    title, the footer, the author). Modifies and returns ``embed``.
    """
    if embed.title:
        embed.title = truncate(embed.title, TITLE_MAX)
    if embed.description:
        embed.description = truncate(embed.description, DESCRIPTION_MAX)
    while len(embed.fields) > FIELDS_MAX:
        embed.remove_field(FIELDS_MAX)
    for index, field in enumerate(embed.fields):
        name, value = field.name or "", field.value or ""
        if len(name) > FIELD_NAME_MAX or len(value) > FIELD_VALUE_MAX:
            embed.set_field_at(
                index,
                name=truncate(name, FIELD_NAME_MAX),
                value=truncate(value, FIELD_VALUE_MAX),
                inline=bool(field.inline),
            )
    if embed.footer.text and len(embed.footer.text) > FOOTER_MAX:
        embed.set_footer(
            text=truncate(embed.footer.text, FOOTER_MAX), icon_url=embed.footer.icon_url
        )
    if embed.author.name and len(embed.author.name) > AUTHOR_NAME_MAX:
        embed.set_author(
            name=truncate(embed.author.name, AUTHOR_NAME_MAX),
            url=embed.author.url,
            icon_url=embed.author.icon_url,
        )
    excess = len(embed) - limit
    if excess > 0 and embed.description:
        keep = max(0, len(embed.description) - excess)
        embed.description = truncate(embed.description, keep) if keep else None
    while len(embed) > limit and _shorten_longest(embed, len(embed) - limit):
        pass
    return embed


def _shorten_longest(embed: discord.Embed, excess: int) -> bool:
    """Cut the longest of title, field names and values, footer and author name by
    ``excess`` (each keeps at least one character: Discord refuses empty field texts);
    False when nothing can be cut any more."""
    parts: list[tuple[int, str, int]] = [(len(embed.title or ""), "title", 0)]
    for index, field in enumerate(embed.fields):
        parts.append((len(field.value or ""), "value", index))
        parts.append((len(field.name or ""), "name", index))
    parts.append((len(embed.footer.text or ""), "footer", 0))
    parts.append((len(embed.author.name or ""), "author", 0))
    length, kind, index = max(parts)
    if length <= 1:
        return False
    keep = max(1, length - excess)
    if kind == "title":
        embed.title = truncate(embed.title or "", keep)
    elif kind in ("value", "name"):
        field = embed.fields[index]
        name, value = field.name or "", field.value or ""
        embed.set_field_at(
            index,
            name=truncate(name, keep) if kind == "name" else name,
            value=truncate(value, keep) if kind == "value" else value,
            inline=bool(field.inline),
        )
    elif kind == "footer":
        embed.set_footer(
            text=truncate(embed.footer.text or "", keep), icon_url=embed.footer.icon_url
        )
    else:
        embed.set_author(
            name=truncate(embed.author.name or "", keep),
            url=embed.author.url,
            icon_url=embed.author.icon_url,
        )
    return True


def fit_embeds(embeds: Iterable[discord.Embed]) -> list[discord.Embed]:
    """Embeds of one message, each fitted and together within 6000 characters.

    Each embed gets an equal share of whatever the others leave unused.
    """
    items = [fit_embed(e) for e in embeds]
    total = sum(len(e) for e in items)
    if total <= EMBED_TOTAL_MAX:
        return items
    budget = EMBED_TOTAL_MAX
    for left, embed in enumerate(sorted(items, key=len), start=0):
        share = budget // (len(items) - left)
        fit_embed(embed, share)
        budget -= len(embed)
    return items


def fit_view(view: discord.ui.View | None) -> discord.ui.View | None:
    """Button labels (80), select placeholders (150) and option labels/descriptions (100)
    of ``view`` cut to Discord's limits. Modifies and returns ``view``."""
    if view is None:
        return None
    for item in view.children:
        if isinstance(item, discord.ui.DynamicItem):
            item = item.item
        if isinstance(item, discord.ui.Button) and item.label:
            item.label = truncate(item.label, BUTTON_LABEL_MAX)
        elif isinstance(item, discord.ui.Select):
            if item.placeholder:
                item.placeholder = truncate(item.placeholder, PLACEHOLDER_MAX)
            for option in item.options:
                option.label = truncate(option.label, OPTION_MAX)
                if option.description:
                    option.description = truncate(option.description, OPTION_MAX)
    return view


def fit_message(fields: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for sending or editing a message, fitted to Discord's limits.

    ``content``, ``embed``, ``embeds`` and ``view`` are fitted (see the module table); other
    keys pass unchanged. Returns a new dict.
    """
    fitted = dict(fields)
    if isinstance(fitted.get("content"), str):
        fitted["content"] = fit_content(fitted["content"])
    embed = fitted.get("embed")
    if isinstance(embed, discord.Embed):
        fitted["embed"] = fit_embed(embed)
    embeds = fitted.get("embeds")
    if isinstance(embeds, list | tuple):
        fitted["embeds"] = fit_embeds(embeds)
    view = fitted.get("view")
    if isinstance(view, discord.ui.View):
        fitted["view"] = fit_view(view)
    return fitted


def modal_title(verb: str, title: str) -> str:
    """ "Reject: <task title>" within a modal title's 45 characters (plain text: no markdown
    is rendered there, so nothing is escaped)."""
    return truncate(f"{verb}: {' '.join(title.split())}", MODAL_TITLE_MAX)
