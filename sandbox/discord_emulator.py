"""A Discord API emulator that the real, unmodified discord.py client runs against.

One aiohttp application on ``127.0.0.1`` serves the REST API under ``/api/v10`` and the
Gateway (v10, JSON text frames) under ``/gateway``. Point discord.py at it with
:func:`bot.discord.endpoints.point_discord_at` using :attr:`DiscordEmulator.api_base_url`
and :attr:`DiscordEmulator.gateway_url`.

The emulator records what the bot did (messages, edits, interaction callbacks, follow-ups,
command syncs, every 4xx it answered) and can act as a person: press a button, choose from a
select menu, run a slash command, type into an autocomplete, submit a modal. Each of those
is a real ``INTERACTION_CREATE`` dispatch on the Gateway.

It enforces the Discord rules that bite a bot in production and answers violations with
Discord's own status codes and JSON bodies: the 3-second interaction deadline (10062), double
acknowledgement (40060), the 15-minute follow-up window (10015), message/embed/component/modal
size limits (50035 "Invalid Form Body" with a Discord-style ``errors`` tree), per-channel
message rate limits (429 with ``retry_after``, which discord.py waits out and retries),
edits of messages older than one hour beyond a budget per channel (429 with code 30046, no
rate-limit headers, so discord.py raises it: :attr:`DiscordEmulator.old_message_edit_limit`),
closed DMs (50007), missing permissions (50013) and access (50001) per channel
(:meth:`DiscordEmulator.set_bot_channel_permissions`), deleted channels (10003,
:meth:`DiscordEmulator.delete_channel`) and messages a person deleted (``MESSAGE_DELETE`` on the
Gateway, then 10008 on an edit: :meth:`DiscordEmulator.delete_message`).

Conformance to Discord's API description
----------------------------------------
Before any of that, every REST request (method + path, query string, JSON body or the
``payload_json`` part of a multipart body) is checked against Discord's published OpenAPI
description of API v10 by :class:`sandbox.discord_spec.DiscordSpec` (``shared/specs/
discord-openapi.json`` beside the checkout; the places where the emulator follows Discord's
documentation instead of the description are listed in that module's docstring). A request that
does not conform is recorded in :attr:`DiscordEmulator.spec_violations` and, in strict mode (the
default), answered ``400`` / ``50035 Invalid Form Body`` with the field paths, as Discord does.
Without the description file the emulator runs with the check off and logs that once.

Time
----
Interaction deadlines are measured on the emulator's clock, ``time.monotonic()`` plus an
offset that :meth:`DiscordEmulator.advance` moves forward, so tests never sleep. The channel
rate limit uses real monotonic time, because discord.py really sleeps ``retry_after``. A
message's age (for 30046) and the old-message edit window use the emulator clock: advance it
by an hour and the bot's messages are old. :attr:`DiscordEmulator.edit_log` records every
accepted ``PATCH`` of a channel message with the real monotonic time, so a test can check the
bot's edit pace per channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import secrets
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aiohttp import WSMsgType, web
from multidict import MultiMapping

from sandbox.discord_spec import DiscordSpec, load_default_spec

__all__ = [
    "DEFAULT_BOT_PERMISSIONS",
    "DEFAULT_EVERYONE_PERMISSIONS",
    "SEND_MESSAGES",
    "VIEW_CHANNEL",
    "CallbackRecord",
    "ChannelSpec",
    "DiscordEmulator",
    "GuildSpec",
    "InteractionRecord",
    "MemberSpec",
    "RecordedError",
    "RecordedMessage",
    "RoleSpec",
    "SpecViolation",
]

_log = logging.getLogger(__name__)

JSON = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000
API_PREFIX = "/api/v10"
GATEWAY_PATH = "/gateway"
_POLL_SECONDS = 0.02  # wait_for re-checks predicates on state that is not the emulator's

# Permission bits (Discord: "Permissions" in the developer documentation).
ADMINISTRATOR = 1 << 3
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1

#: What the bot's managed role grants unless told otherwise (includes MENTION_EVERYONE).
DEFAULT_BOT_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | SEND_MESSAGES_IN_THREADS
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | MENTION_EVERYONE
    | USE_EXTERNAL_EMOJIS
    | ADD_REACTIONS
    | USE_APPLICATION_COMMANDS
)
#: What the @everyone role grants when the guild spec does not define it.
DEFAULT_EVERYONE_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_APPLICATION_COMMANDS
)

# Message flags.
SUPPRESS_EMBEDS = 1 << 2
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_NOTIFICATIONS = 1 << 12
IS_COMPONENTS_V2 = 1 << 15

# Gateway intents.
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12

# Interaction types and callback types.
PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE = 4, 5, 6, 7
CB_AUTOCOMPLETE, CB_MODAL = 8, 9
_ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_MODAL},
    MESSAGE_COMPONENT: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE, CB_MODAL},
    AUTOCOMPLETE: {CB_AUTOCOMPLETE},
    MODAL_SUBMIT: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE},
}

# Component types.
ACTION_ROW, BUTTON, STRING_SELECT, TEXT_INPUT = 1, 2, 3, 4
SELECT_TYPES = {3, 5, 6, 7, 8}
LABEL = 18
LINK_STYLE, PREMIUM_STYLE = 5, 6


# --------------------------------------------------------------------------------------------
# Specs: what the emulated guild looks like
# --------------------------------------------------------------------------------------------


@dataclass
class RoleSpec:
    """A guild role.

    Attributes
    ----------
    id, name:
        Snowflake and display name. A role whose id equals the guild id is @everyone.
    permissions:
        Permission bit set (Discord: "Permissions").
    """

    id: int
    name: str
    permissions: int = 0


@dataclass
class MemberSpec:
    """A person (or another bot) in the guild.

    Attributes
    ----------
    roles:
        Role ids (without @everyone, which every member has implicitly).
    dm_closed:
        The person does not accept DMs from the bot: sending to their DM channel is answered
        ``403 {"code": 50007}`` (Discord: "Cannot send messages to this user").
    """

    id: int
    username: str
    roles: list[int] = field(default_factory=list)
    dm_closed: bool = False
    bot: bool = False


@dataclass
class ChannelSpec:
    """A guild text channel (type 0).

    Attributes
    ----------
    permission_overwrites:
        Discord "Overwrite" objects (``id``, ``type`` 0 role / 1 member, ``allow``, ``deny`` as
        decimal strings) sent in the channel's ``permission_overwrites``; the emulator itself
        does not enforce them.
    """

    id: int
    name: str
    permission_overwrites: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class GuildSpec:
    """The single guild the emulated bot is in.

    Attributes
    ----------
    owner_id:
        Owner's user id; defaults to the first member (or the bot when there are none).
    """

    id: int
    name: str
    channels: list[ChannelSpec]
    roles: list[RoleSpec]
    members: list[MemberSpec]
    owner_id: int | None = None


# --------------------------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------------------------

_USER_MENTION = re.compile(r"<@!?(\d+)>")


@dataclass
class RecordedMessage:
    """A message as the emulator stores it; fields hold the current (post-edit) state.

    Attributes
    ----------
    created_at:
        Emulator clock (seconds) when the message was created.
    edits:
        Every accepted edit payload, in order (``PATCH`` bodies, type-7 callback data, or a
        follow-up that replaced a deferred "thinking" message).
    deleted:
        The message was deleted; it stays in the record.
    interaction_id:
        The interaction whose response or follow-up this is, if any.
    bot_may_mention_everyone:
        Whether the author had MENTION_EVERYONE when the message was sent.
    """

    id: int
    channel_id: int
    author_id: int
    content: str = ""
    embeds: list[JSON] = field(default_factory=list)
    components: list[JSON] = field(default_factory=list)
    allowed_mentions: JSON | None = None
    message_reference: JSON | None = None
    flags: int = 0
    created_at: float = 0.0
    edits: list[JSON] = field(default_factory=list)
    deleted: bool = False
    guild_id: int | None = None
    interaction_id: str | None = None
    attachments: list[JSON] = field(default_factory=list)
    timestamp: str = ""
    edited_timestamp: str | None = None
    message_type: int = 0
    bot_may_mention_everyone: bool = True

    @property
    def ephemeral(self) -> bool:
        """Whether the message carries the EPHEMERAL flag (only its recipient sees it)."""
        return bool(self.flags & EPHEMERAL)

    @property
    def mentions_everyone(self) -> bool:
        """Whether the message pings @everyone/@here.

        True when the content contains ``@everyone`` or ``@here``, ``allowed_mentions`` is
        absent or its ``parse`` includes ``"everyone"``, and the author may mention everyone
        (Discord: MENTION_EVERYONE permission).
        """
        if "@everyone" not in self.content and "@here" not in self.content:
            return False
        if self.allowed_mentions is not None:
            if "everyone" not in (self.allowed_mentions.get("parse") or []):
                return False
        return self.bot_may_mention_everyone

    @property
    def mentioned_user_ids(self) -> list[int]:
        """User ids pinged by ``<@id>`` in the content, filtered by ``allowed_mentions``."""
        found: list[int] = []
        for match in _USER_MENTION.finditer(self.content):
            uid = int(match.group(1))
            if uid not in found:
                found.append(uid)
        if self.allowed_mentions is None:
            return found
        if "users" in (self.allowed_mentions.get("parse") or []):
            return found
        allowed = {int(u) for u in self.allowed_mentions.get("users") or []}
        return [uid for uid in found if uid in allowed]

    def buttons(self) -> list[JSON]:
        """All button components currently on the message (any nesting)."""
        return [c for c in _walk_components(self.components) if c.get("type") == BUTTON]

    @property
    def button_labels(self) -> list[str]:
        """Labels of the buttons currently on the message."""
        return [str(b.get("label") or "") for b in self.buttons()]


@dataclass
class RecordedError:
    """A 4xx/5xx answer the emulator gave.

    Attributes
    ----------
    path:
        Path below the API base, e.g. ``/channels/1/messages``.
    code:
        Discord JSON error code from the body (``None`` for bodies without one, e.g. 429).
    at:
        Emulator clock (seconds).
    """

    method: str
    path: str
    status: int
    code: int | None
    body: Any
    at: float


@dataclass
class SpecViolation:
    """A request that does not conform to Discord's API description.

    Attributes
    ----------
    method, path:
        The request (path below the API base, no query string).
    operation:
        The description's path template it matched, e.g. ``/channels/{channel_id}/messages``
        (``None`` for an operation the description does not list).
    errors:
        Discord's nested ``errors`` tree (field path → ``{"_errors": [...]}``).
    body:
        The JSON body as sent (for multipart: ``payload_json``).
    query:
        The query string's (name, value) pairs.
    at:
        Emulator clock (seconds).
    """

    method: str
    path: str
    operation: str | None
    errors: JSON
    body: Any
    query: list[tuple[str, str]]
    at: float


class CallbackRecord(NamedTuple):
    """An accepted initial interaction callback: ``(type, data, at)``.

    ``type`` is the callback type (4 message, 5 deferred message, 6 deferred update,
    7 update, 8 autocomplete result, 9 modal); ``at`` is the emulator clock in seconds.
    """

    type: int
    data: JSON
    at: float

    @property
    def content(self) -> str | None:
        """``data.content`` if the callback carried one."""
        value = self.data.get("content")
        return value if isinstance(value, str) else None

    @property
    def ephemeral(self) -> bool:
        """Whether the callback asked for an ephemeral response (flag 64)."""
        return bool(int(self.data.get("flags") or 0) & EPHEMERAL)


@dataclass
class InteractionRecord:
    """One interaction the emulator dispatched, and everything the bot did with it.

    Attributes
    ----------
    id, token:
        Snowflake (as a string) and webhook token of the interaction.
    type:
        Interaction type: 2 command, 3 component, 4 autocomplete, 5 modal submit.
    data:
        The ``data`` object that was dispatched.
    created_at:
        Emulator clock (seconds) at dispatch; the deadline and follow-up window count
        from here.
    payload:
        The whole ``INTERACTION_CREATE`` payload.
    callbacks:
        Accepted initial callbacks (at most one, unless the emulator is misused).
    followups:
        Messages created through ``POST /webhooks/{app}/{token}``.
    rejected:
        Callback and webhook calls for this interaction that were refused.
    source_message_id:
        The message whose component was used (component interactions, and modal submits of
        modals opened from a component).
    original_message_id:
        The message ``@original`` refers to, once there is one.
    """

    id: str
    token: str
    type: int
    user_id: int
    channel_id: int
    guild_id: int | None
    data: JSON
    created_at: float
    payload: JSON
    callbacks: list[CallbackRecord] = field(default_factory=list)
    followups: list[RecordedMessage] = field(default_factory=list)
    rejected: list[RecordedError] = field(default_factory=list)
    source_message_id: int | None = None
    original_message_id: int | None = None
    _emulator: DiscordEmulator | None = field(default=None, repr=False, compare=False)

    @property
    def acknowledged(self) -> bool:
        """Whether an initial callback was accepted."""
        return bool(self.callbacks)

    @property
    def response_type(self) -> int | None:
        """Type of the accepted initial callback, or ``None``."""
        return self.callbacks[0].type if self.callbacks else None

    @property
    def modal(self) -> JSON | None:
        """The modal (type-9 callback data) the bot answered with, if any."""
        for cb in self.callbacks:
            if cb.type == CB_MODAL:
                return cb.data
        return None

    @property
    def choices(self) -> list[JSON] | None:
        """Autocomplete choices (type-8 callback), if any."""
        for cb in self.callbacks:
            if cb.type == CB_AUTOCOMPLETE:
                return list(cb.data.get("choices") or [])
        return None

    @property
    def original_message(self) -> RecordedMessage | None:
        """The message ``@original`` refers to, in its current state."""
        if self.original_message_id is None or self._emulator is None:
            return None
        return self._emulator.message(self.original_message_id)

    @property
    def reply_content(self) -> str | None:
        """Current content of the original response message, if it has one."""
        original = self.original_message
        return original.content if original is not None else None

    @property
    def ephemeral(self) -> bool:
        """Whether the original response is ephemeral."""
        if self.callbacks and self.callbacks[0].ephemeral:
            return True
        original = self.original_message
        return bool(original is not None and original.ephemeral)

    async def response(self, timeout: float = 5.0) -> CallbackRecord:
        """Wait (at most ``timeout`` real seconds) for the initial callback and return it.

        Raises
        ------
        TimeoutError
            The bot did not answer in time; the message lists refused calls, if any.
        """
        if self._emulator is None:
            raise RuntimeError("interaction record is not attached to an emulator")
        await self._emulator.wait_for(
            lambda: bool(self.callbacks) or bool(self.rejected),
            timeout,
            description=f"the initial response to interaction {self.id}",
        )
        if not self.callbacks:
            raise TimeoutError(
                f"interaction {self.id}: initial response was refused: "
                + "; ".join(f"{e.status} {e.code} {e.body}" for e in self.rejected)
            )
        return self.callbacks[0]


# --------------------------------------------------------------------------------------------
# Errors and validation (Discord: "Message Resource", "Embed Limits", "Component Reference")
# --------------------------------------------------------------------------------------------


class _ApiError(Exception):
    """Raised by a handler to answer with a Discord error."""

    def __init__(self, status: int, body: JSON, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def _error(status: int, code: int, message: str) -> _ApiError:
    return _ApiError(status, {"code": code, "message": message})


class _FormErrors:
    """Builds Discord's nested ``errors`` object for ``50035 Invalid Form Body``."""

    def __init__(self) -> None:
        self.tree: JSON = {}

    def add(self, path: Sequence[str | int], code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def max_length(self, path: Sequence[str | int], value: Any, limit: int) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def bad_length(self, path: Sequence[str | int], value: Any, low: int, high: int) -> None:
        size = len(value) if isinstance(value, str | list) else 0
        if not low <= size <= high:
            self.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")

    def max_items(self, path: Sequence[str | int], value: Any, limit: int) -> None:
        if isinstance(value, list) and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def number_range(self, path: Sequence[str | int], value: Any, low: int, high: int) -> None:
        if value is None:
            return
        if not isinstance(value, int) or not low <= value <= high:
            if isinstance(value, int) and value < low:
                self.add(
                    path, "NUMBER_TYPE_MIN", f"Int value should be greater than or equal to {low}."
                )
            else:
                self.add(
                    path, "NUMBER_TYPE_MAX", f"Int value should be less than or equal to {high}."
                )

    def raise_if_any(self) -> None:
        if self.tree:
            raise _ApiError(
                400, {"code": 50035, "errors": self.tree, "message": "Invalid Form Body"}
            )


def _walk_components(components: Any) -> Iterator[JSON]:
    """Yield every component dict, depth first (rows, sections, containers, labels)."""
    if not isinstance(components, list):
        return
    for comp in components:
        if not isinstance(comp, dict):
            continue
        yield comp
        yield from _walk_components(comp.get("components"))
        for key in ("accessory", "component"):
            child = comp.get(key)
            if isinstance(child, dict):
                yield from _walk_components([child])


def _slen(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


def _validate_embed(errs: _FormErrors, embed: Any, path: tuple[str | int, ...]) -> int:
    """Check one embed's limits; return its character count towards the 6000 total."""
    if not isinstance(embed, dict):
        errs.add(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
        return 0
    total = 0
    for key, limit in (("title", 256), ("description", 4096)):
        errs.max_length((*path, key), embed.get(key), limit)
        total += _slen(embed.get(key))
    fields = embed.get("fields") or []
    errs.max_items((*path, "fields"), fields, 25)
    for index, fld in enumerate(fields if isinstance(fields, list) else []):
        fpath = (*path, "fields", index)
        if not isinstance(fld, dict):
            errs.add(fpath, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
            continue
        for key, limit in (("name", 256), ("value", 1024)):
            value = fld.get(key)
            if not isinstance(value, str) or not value:
                errs.add((*fpath, key), "BASE_TYPE_REQUIRED", "This field is required")
            else:
                errs.max_length((*fpath, key), value, limit)
                total += len(value)
    footer = embed.get("footer")
    if isinstance(footer, dict):
        errs.max_length((*path, "footer", "text"), footer.get("text"), 2048)
        total += _slen(footer.get("text"))
    author = embed.get("author")
    if isinstance(author, dict):
        errs.max_length((*path, "author", "name"), author.get("name"), 256)
        total += _slen(author.get("name"))
    return total


def _validate_custom_id(
    errs: _FormErrors, comp: JSON, path: tuple[str | int, ...], seen: set[str]
) -> None:
    custom_id = comp.get("custom_id")
    errs.bad_length((*path, "custom_id"), custom_id, 1, 100)
    if isinstance(custom_id, str) and custom_id:
        if custom_id in seen:
            errs.add(
                (*path, "custom_id"),
                "COMPONENT_CUSTOM_ID_DUPLICATED",
                "Component custom id cannot be duplicated",
            )
        seen.add(custom_id)


def _validate_component(
    errs: _FormErrors,
    comp: Any,
    path: tuple[str | int, ...],
    seen: set[str],
    *,
    in_modal: bool = False,
    in_row: bool = False,
) -> None:
    """Check one component (and its children) against Discord's component limits."""
    if not isinstance(comp, dict):
        errs.add(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
        return
    ctype = comp.get("type")
    if ctype == ACTION_ROW:
        if in_row:
            errs.add((*path, "type"), "COMPONENT_TYPE_INVALID", "Action rows cannot be nested")
            return
        children = comp.get("components")
        if not isinstance(children, list) or not children:
            errs.bad_length((*path, "components"), children, 1, 5)
            return
        widths = [5 if c.get("type") in SELECT_TYPES | {TEXT_INPUT} else 1 for c in children]
        if sum(widths) > 5:
            if any(w == 5 for w in widths):
                errs.add(
                    (*path, "components"),
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "The specified component exceeds the maximum width",
                )
            else:
                errs.bad_length((*path, "components"), children, 1, 5)
        for index, child in enumerate(children):
            _validate_component(
                errs, child, (*path, "components", index), seen, in_modal=in_modal, in_row=True
            )
    elif ctype == BUTTON:
        if in_modal:
            errs.add((*path, "type"), "COMPONENT_TYPE_INVALID", "Buttons cannot be used in modals")
        style = comp.get("style")
        if style not in range(1, 7):
            errs.add((*path, "style"), "BUTTON_COMPONENT_INVALID_STYLE", "Invalid button style")
        errs.max_length((*path, "label"), comp.get("label"), 80)
        if style == LINK_STYLE:
            if not comp.get("url"):
                errs.add((*path, "url"), "BUTTON_COMPONENT_URL_REQUIRED", "A url is required")
            if comp.get("custom_id") is not None:
                errs.add(
                    (*path, "custom_id"),
                    "BUTTON_COMPONENT_CUSTOM_ID_NOT_ALLOWED",
                    "Link buttons cannot have a custom_id",
                )
        elif style != PREMIUM_STYLE:
            if comp.get("url") is not None:
                errs.add(
                    (*path, "url"),
                    "BUTTON_COMPONENT_URL_NOT_ALLOWED",
                    "Only link buttons have a url",
                )
            _validate_custom_id(errs, comp, path, seen)
        if style != PREMIUM_STYLE and not comp.get("label") and not comp.get("emoji"):
            errs.add(
                path,
                "BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED",
                "A label or an emoji is required",
            )
    elif ctype in SELECT_TYPES:
        _validate_custom_id(errs, comp, path, seen)
        errs.max_length((*path, "placeholder"), comp.get("placeholder"), 150)
        errs.number_range((*path, "min_values"), comp.get("min_values"), 0, 25)
        errs.number_range((*path, "max_values"), comp.get("max_values"), 1, 25)
        if ctype == STRING_SELECT:
            options = comp.get("options")
            errs.bad_length((*path, "options"), options, 1, 25)
            for index, opt in enumerate(options if isinstance(options, list) else []):
                opath = (*path, "options", index)
                if not isinstance(opt, dict):
                    continue
                errs.bad_length((*opath, "label"), opt.get("label"), 1, 100)
                errs.bad_length((*opath, "value"), opt.get("value"), 1, 100)
                errs.max_length((*opath, "description"), opt.get("description"), 100)
    elif ctype == TEXT_INPUT:
        if not in_modal:
            errs.add((*path, "type"), "COMPONENT_TYPE_INVALID", "Text inputs are only for modals")
        _validate_custom_id(errs, comp, path, seen)
        if in_row:
            errs.bad_length((*path, "label"), comp.get("label"), 1, 45)
        else:
            errs.max_length((*path, "label"), comp.get("label"), 45)
        if comp.get("style", 1) not in (1, 2):
            errs.add((*path, "style"), "TEXT_INPUT_INVALID_STYLE", "Invalid text input style")
        errs.max_length((*path, "placeholder"), comp.get("placeholder"), 100)
        errs.max_length((*path, "value"), comp.get("value"), 4000)
        errs.number_range((*path, "min_length"), comp.get("min_length"), 0, 4000)
        errs.number_range((*path, "max_length"), comp.get("max_length"), 1, 4000)
    elif ctype == LABEL:
        errs.bad_length((*path, "label"), comp.get("label"), 1, 45)
        errs.max_length((*path, "description"), comp.get("description"), 100)
        _validate_component(errs, comp.get("component"), (*path, "component"), seen, in_modal=True)
    elif ctype == 10:  # text display
        errs.bad_length((*path, "content"), comp.get("content"), 1, 4000)
    elif ctype in (9, 17):  # section, container (components v2)
        for index, child in enumerate(comp.get("components") or []):
            _validate_component(errs, child, (*path, "components", index), seen)
        if isinstance(comp.get("accessory"), dict):
            _validate_component(errs, comp["accessory"], (*path, "accessory"), seen)
    elif ctype in (11, 12, 13, 14):  # thumbnail, media gallery, file, separator
        pass
    else:
        errs.add((*path, "type"), "COMPONENT_TYPE_INVALID", f"Unknown component type {ctype!r}")


def _validate_components(
    errs: _FormErrors, components: Any, path: tuple[str | int, ...], *, v2: bool
) -> None:
    """Check a message's top-level components (5 action rows, or 40 components with v2)."""
    if not isinstance(components, list):
        errs.add(path, "BASE_TYPE_ARRAY", "Must be an array.")
        return
    seen: set[str] = set()
    if v2:
        total = sum(1 for _ in _walk_components(components))
        if total > 40:
            errs.add(path, "COMPONENT_MAX_TOTAL_EXCEEDED", "Must be 40 or fewer components.")
    else:
        errs.max_items(path, components, 5)
    for index, comp in enumerate(components):
        if not v2 and isinstance(comp, dict) and comp.get("type") != ACTION_ROW:
            errs.add(
                (*path, index, "type"),
                "COMPONENT_TYPE_INVALID",
                "Top-level components must be action rows",
            )
            continue
        _validate_component(errs, comp, (*path, index), seen)


def _validate_message(errs: _FormErrors, payload: JSON, prefix: tuple[str | int, ...] = ()) -> None:
    """Check content/embeds/components of a (merged) message payload."""
    content = payload.get("content")
    if content is not None and not isinstance(content, str):
        errs.add((*prefix, "content"), "BASE_TYPE_STRING", "Must be a string.")
    errs.max_length((*prefix, "content"), content, 2000)
    embeds = payload.get("embeds")
    if isinstance(embeds, list):
        errs.max_items((*prefix, "embeds"), embeds, 10)
        total = sum(
            _validate_embed(errs, embed, (*prefix, "embeds", i)) for i, embed in enumerate(embeds)
        )
        if total > 6000:
            errs.add(
                (*prefix, "embeds"),
                "MAX_EMBED_SIZE_EXCEEDED",
                "Embed size exceeds maximum size of 6000",
            )
    v2 = bool(int(payload.get("flags") or 0) & IS_COMPONENTS_V2)
    components = payload.get("components")
    if components is not None:
        _validate_components(errs, components, (*prefix, "components"), v2=v2)
    if v2 and (content or embeds):
        errs.add(
            (*prefix, "flags"),
            "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
            "The 'content' and 'embeds' fields cannot be used when using MessageFlags.IS_COMPONENTS_V2",
        )
    allowed = payload.get("allowed_mentions")
    if isinstance(allowed, dict):
        parse = allowed.get("parse") or []
        for key in ("users", "roles"):
            if key in parse and allowed.get(key):
                errs.add(
                    (*prefix, "allowed_mentions", key),
                    "ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                    f'parse:["{key}"] and {key}: [ids...] are mutually exclusive.',
                )


def _validate_modal(errs: _FormErrors, data: JSON, prefix: tuple[str | int, ...]) -> None:
    """Check a modal: title 1–45, custom_id 1–100, 1–5 top-level components."""
    errs.bad_length((*prefix, "title"), data.get("title"), 1, 45)
    errs.bad_length((*prefix, "custom_id"), data.get("custom_id"), 1, 100)
    components = data.get("components")
    errs.bad_length((*prefix, "components"), components, 1, 5)
    seen: set[str] = set()
    for index, comp in enumerate(components if isinstance(components, list) else []):
        _validate_component(errs, comp, (*prefix, "components", index), seen, in_modal=True)


def _validate_choices(errs: _FormErrors, data: JSON, prefix: tuple[str | int, ...]) -> None:
    """Check autocomplete choices: at most 25, names 1–100, string values up to 100."""
    choices = data.get("choices")
    if not isinstance(choices, list):
        errs.add((*prefix, "choices"), "BASE_TYPE_REQUIRED", "This field is required")
        return
    errs.max_items((*prefix, "choices"), choices, 25)
    for index, choice in enumerate(choices):
        if not isinstance(choice, dict):
            continue
        errs.bad_length((*prefix, "choices", index, "name"), choice.get("name"), 1, 100)
        errs.max_length((*prefix, "choices", index, "value"), choice.get("value"), 100)


_COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


def _validate_command(
    errs: _FormErrors, cmd: Any, path: tuple[str | int, ...], *, depth: int = 0
) -> None:
    """Check an application command (or option) definition (Discord: "Application Commands")."""
    if not isinstance(cmd, dict):
        errs.add(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
        return
    name = cmd.get("name")
    if not isinstance(name, str) or not _COMMAND_NAME.match(name) or name != name.lower():
        errs.add((*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    is_chat_input = depth > 0 or cmd.get("type", 1) == 1
    if is_chat_input:
        errs.bad_length((*path, "description"), cmd.get("description"), 1, 100)
    options = cmd.get("options") or []
    errs.max_items((*path, "options"), options, 25)
    names: set[str] = set()
    seen_optional = False
    for index, opt in enumerate(options if isinstance(options, list) else []):
        opath = (*path, "options", index)
        if not isinstance(opt, dict):
            continue
        if opt.get("name") in names:
            errs.add(
                (*opath, "name"),
                "APPLICATION_COMMAND_OPTION_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            )
        names.add(str(opt.get("name")))
        if opt.get("type") not in (1, 2):
            if opt.get("required"):
                if seen_optional:
                    errs.add(
                        opath,
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID_ORDER",
                        "Required options must be placed before non-required options",
                    )
            else:
                seen_optional = True
            choices = opt.get("choices")
            errs.max_items((*opath, "choices"), choices, 25)
            if opt.get("autocomplete") and choices:
                errs.add(
                    (*opath, "autocomplete"),
                    "APPLICATION_COMMAND_AUTOCOMPLETE_CHOICES_EXCLUSIVE",
                    "Autocomplete cannot be set with choices",
                )
        _validate_command(errs, opt, opath, depth=depth + 1)


# --------------------------------------------------------------------------------------------
# Small router
# --------------------------------------------------------------------------------------------


@dataclass
class _Request:
    method: str
    path: str
    params: dict[str, str]
    query: MultiMapping[str]
    headers: MultiMapping[str]
    body: Any
    files: list[JSON]

    def json_object(self) -> JSON:
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise _ApiError(
                400,
                {
                    "code": 50035,
                    "message": "Invalid Form Body",
                    "errors": {
                        "_errors": [{"code": "MODEL_TYPE_CONVERT", "message": "Expected an object"}]
                    },
                },
            )
        return self.body


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


_Handler = Callable[[_Request], Awaitable[_Reply]]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: _Handler
    auth: bool


class _Router:
    def __init__(self) -> None:
        self.routes: list[_Route] = []

    def add(self, method: str, pattern: str, handler: _Handler, *, auth: bool = True) -> None:
        for verb in method.split("|"):
            self.routes.append(_Route(verb, re.compile(f"^{pattern}$"), handler, auth))

    def match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str], bool]:
        """Return (route, path params, path_known)."""
        path_known = False
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            path_known = True
            if route.method == method:
                return route, found.groupdict(), True
        return None, {}, path_known


@dataclass
class _Injected:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    body: JSON | None


@dataclass(eq=False)
class _GatewayConn:
    ws: web.WebSocketResponse
    identified: bool = False


# --------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------


class DiscordEmulator:
    """Discord REST API v10 and Gateway v10 for one guild, one bot, and scripted people.

    Parameters
    ----------
    guild:
        The guild the bot is in: channels, roles, members.
    application_id:
        The bot's application id (snowflake).
    bot_user_id:
        The bot user's id; defaults to ``application_id`` (as for modern Discord apps).
    bot_username:
        The bot's username.
    bot_permissions:
        Permissions of the bot's managed role; include MENTION_EVERYONE (bit 17) for
        @everyone/@here pings to ping.
    interaction_deadline_seconds:
        Time from dispatch to the initial callback, emulator clock (Discord: 3 s).
    followup_window_seconds:
        Lifetime of the interaction token for follow-ups and ``@original`` edits, emulator
        clock (Discord: 15 min).
    channel_rate_limit, channel_rate_window_seconds:
        At most this many ``POST /channels/{id}/messages`` per channel per sliding window of
        real seconds (Discord: roughly 5 per 5 s); the next one is answered 429.
    old_message_edit_limit, old_message_edit_window_seconds, old_message_age_seconds:
        At most ``old_message_edit_limit`` edits (``PATCH``) of messages older than
        ``old_message_age_seconds`` per channel per sliding window of
        ``old_message_edit_window_seconds``, all on the emulator clock; the next is answered
        429 / 30046 "Maximum number of edits to messages older than 1 hour reached" (Discord
        documents the error, not the budget: the defaults, 10 per 60 s and 3600 s, are
        guesses). ``None`` turns the budget off. All three are settable attributes.
    token:
        If given, REST calls (other than interaction callbacks and webhooks) must carry
        ``Authorization: Bot <token>`` and IDENTIFY must carry it, else 401 / close 4004.
    heartbeat_interval_ms:
        Heartbeat interval sent in HELLO, in milliseconds.
    spec:
        Discord's API description to check every request against; by default the one
        :func:`sandbox.discord_spec.load_default_spec` finds (``None`` there: no check).
    check_spec:
        ``False`` turns the conformance check off whatever ``spec`` is.
    spec_strict:
        ``True`` (default): a non-conforming request is answered 400 / 50035. ``False``: it is
        only recorded in :attr:`spec_violations` and then handled as usual; for a test that
        deliberately sends a bad body to see the emulator's own checks. Settable later as the
        attribute of the same name.
    """

    def __init__(
        self,
        guild: GuildSpec,
        *,
        application_id: int = 1_100_000_000_000_000_001,
        bot_user_id: int | None = None,
        bot_username: str = "Factory Bridge",
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        interaction_deadline_seconds: float = 3.0,
        followup_window_seconds: float = 900.0,
        channel_rate_limit: int = 5,
        channel_rate_window_seconds: float = 5.0,
        old_message_edit_limit: int | None = 10,
        old_message_edit_window_seconds: float = 60.0,
        old_message_age_seconds: float = 3600.0,
        token: str | None = None,
        heartbeat_interval_ms: int = 41_250,
        spec: DiscordSpec | None = None,
        check_spec: bool = True,
        spec_strict: bool = True,
    ) -> None:
        self.guild = guild
        self.application_id = application_id
        self.bot_user_id = bot_user_id if bot_user_id is not None else application_id
        self.bot_username = bot_username
        self.bot_permissions = bot_permissions
        self.interaction_deadline_seconds = interaction_deadline_seconds
        self.followup_window_seconds = followup_window_seconds
        self.channel_rate_limit = channel_rate_limit
        self.channel_rate_window_seconds = channel_rate_window_seconds
        self.old_message_edit_limit = old_message_edit_limit
        self.old_message_edit_window_seconds = old_message_edit_window_seconds
        self.old_message_age_seconds = old_message_age_seconds
        #: every accepted edit of a channel message: (real monotonic seconds, channel id,
        #: message id)
        self.edit_log: list[tuple[float, int, int]] = []
        self._old_edits: dict[int, deque[float]] = {}
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.spec: DiscordSpec | None = None
        if check_spec:
            self.spec = spec if spec is not None else load_default_spec()
        self.spec_strict = spec_strict
        #: Every request that did not conform to :attr:`spec` (strict or not).
        self.spec_violations: list[SpecViolation] = []
        #: How many requests were checked against :attr:`spec`.
        self.spec_checked = 0

        # The record.
        self.synced_commands: dict[int, list[JSON]] = {}
        self.global_commands: list[JSON] = []
        self.errors: list[RecordedError] = []
        self.internal_errors: list[str] = []
        self.interactions: dict[str, InteractionRecord] = {}
        self.ready_count = 0
        self.resume_count = 0
        self.intents: int | None = None

        self._offset = 0.0
        self._last_snowflake = 0
        self._changed = asyncio.Event()
        self._messages: dict[int, RecordedMessage] = {}
        self._channel_messages: dict[int, list[int]] = {}
        self._dm_channel_by_user: dict[int, int] = {}
        self._dm_user_by_channel: dict[int, int] = {}
        self._interactions_by_token: dict[str, InteractionRecord] = {}
        self._command_ids: dict[tuple[int | None, int, str], int] = {}
        self._sends: dict[int, deque[float]] = {}
        self._injected: list[_Injected] = []

        self._roles: dict[int, RoleSpec] = {r.id: r for r in guild.roles}
        if guild.id not in self._roles:
            self._roles[guild.id] = RoleSpec(guild.id, "@everyone", DEFAULT_EVERYONE_PERMISSIONS)
        self._bot_role = RoleSpec(self._snowflake(), bot_username, bot_permissions)
        self._roles[self._bot_role.id] = self._bot_role
        self._members: dict[int, MemberSpec] = {m.id: m for m in guild.members}
        self._bot_member = MemberSpec(
            self.bot_user_id, bot_username, roles=[self._bot_role.id], bot=True
        )
        self._members.setdefault(self.bot_user_id, self._bot_member)
        self._channels: dict[int, ChannelSpec] = {c.id: c for c in guild.channels}
        #: permissions denied to the bot per channel (its member overwrite), see
        #: :meth:`set_bot_channel_permissions`
        self._bot_denies: dict[int, int] = {}
        self._owner_id = guild.owner_id or (
            guild.members[0].id if guild.members else self.bot_user_id
        )
        self._joined_at = self._iso()

        # Gateway session.
        self._session_id: str | None = None
        self._seq = 0
        self._dispatch_log: list[JSON] = []
        self._active: _GatewayConn | None = None
        #: While True, new Gateway connections are refused (503): an outage, see
        #: :meth:`gateway_outage`.
        self.gateway_refused = False
        self._conns: set[_GatewayConn] = set()
        self._gateway_lock = asyncio.Lock()

        # HTTP server.
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        self._router = _Router()
        self._register_routes()

    # ---------------------------------------------------------------- lifecycle & clock

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start serving on ``host:port`` (port 0 picks a free port).

        Raises
        ------
        RuntimeError
            Already started.
        """
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get(GATEWAY_PATH, self._gateway_handler)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest_handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self._port = int(sockets[0].getsockname()[1]) if sockets else port
        self._host = host
        self._runner = runner

    async def stop(self) -> None:
        """Close Gateway connections and stop the server (idempotent)."""
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1001), 2.0)
        self._active = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def api_base_url(self) -> str:
        """REST base, e.g. ``http://127.0.0.1:PORT/api/v10`` (after :meth:`start`)."""
        return f"http://{self._host_port()}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """Gateway websocket address, e.g. ``ws://127.0.0.1:PORT/gateway``."""
        return f"ws://{self._host_port()}{GATEWAY_PATH}"

    def _host_port(self) -> str:
        if self._port is None:
            raise RuntimeError("emulator not started")
        return f"{self._host}:{self._port}"

    def now(self) -> float:
        """The emulator clock in seconds: ``time.monotonic()`` plus everything advanced."""
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the emulator clock forward by ``seconds`` (deadlines and windows use it).

        Raises
        ------
        ValueError
            ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds
        self._notify()

    def _iso(self) -> str:
        return datetime.fromtimestamp(time.time() + self._offset, UTC).isoformat()

    def _snowflake(self) -> int:
        ms = int((time.time() + self._offset) * 1000) - DISCORD_EPOCH_MS
        candidate = ms << 22
        if candidate <= self._last_snowflake:
            candidate = self._last_snowflake + 1
        self._last_snowflake = candidate
        return candidate

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,
        *,
        description: str | None = None,
    ) -> None:
        """Wait until ``predicate()`` is true, at most ``timeout`` real seconds.

        The predicate is re-checked on every emulator state change (a request answered, a
        Gateway event) and every 20 ms, so it may also look at the bot's own state.

        Raises
        ------
        TimeoutError
            The condition did not become true; the message says what was awaited and
            summarises the emulator's state (recent errors, Gateway connection).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            if predicate():
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                what = description or getattr(predicate, "__name__", repr(predicate))
                recent = "; ".join(
                    f"{e.method} {e.path} -> {e.status} {e.code}" for e in self.errors[-5:]
                )
                raise TimeoutError(
                    f"timed out after {timeout:.1f} s waiting for {what}. "
                    f"gateway connected={self.connected}, ready_count={self.ready_count}, "
                    f"resume_count={self.resume_count}, messages={len(self._messages)}, "
                    f"recent errors: [{recent}]"
                    + (
                        f", internal errors: {self.internal_errors[-1:]}"
                        if self.internal_errors
                        else ""
                    )
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, _POLL_SECONDS))

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int = 1,
        body: JSON | None = None,
    ) -> None:
        """Answer the next ``times`` matching REST requests with ``status`` instead.

        A request is matched after the routing, token and conformance checks, so a failure
        is injected only into requests Discord would have accepted.

        Parameters
        ----------
        method:
            HTTP method, or ``"*"`` for any.
        path_regex:
            ``re.search`` pattern against the path below the API base, e.g.
            ``r"/channels/\\d+/messages$"``.
        status:
            Status to answer. A 429 gets ``Via``/``Retry-After`` headers and a
            ``retry_after`` body so discord.py retries it. Note discord.py retries 500, 502,
            504 and 524 up to 5 times, sleeping 1, 3, 5, 7 s in between.
        body:
            JSON body; defaults to ``{"code": 0, "message": "<status>: emulated failure"}``.
        """
        self._injected.append(
            _Injected(method.upper(), re.compile(path_regex), status, times, body)
        )

    # ---------------------------------------------------------------- record accessors

    def message(self, message_id: int) -> RecordedMessage | None:
        """The recorded message with this id, or ``None``."""
        return self._messages.get(message_id)

    def messages(self, channel_id: int) -> list[RecordedMessage]:
        """Messages of a channel (guild or DM) in creation order, deleted ones included."""
        return [self._messages[mid] for mid in self._channel_messages.get(channel_id, [])]

    def dm_messages(self, user_id: int) -> list[RecordedMessage]:
        """Messages in the bot's DM channel with ``user_id`` (empty if none was opened)."""
        channel_id = self._dm_channel_by_user.get(user_id)
        return self.messages(channel_id) if channel_id is not None else []

    def all_messages(self) -> list[RecordedMessage]:
        """Every recorded message, in creation order."""
        return sorted(self._messages.values(), key=lambda m: m.id)

    @property
    def connected(self) -> bool:
        """Whether a bot is connected to the Gateway with an identified/resumed session."""
        return self._active is not None

    @property
    def session_id(self) -> str | None:
        """Current Gateway session id."""
        return self._session_id

    # ---------------------------------------------------------------- payload builders

    def _user_json(self, member: MemberSpec) -> JSON:
        return {
            "id": str(member.id),
            "username": member.username,
            "discriminator": "0",
            "global_name": member.username,
            "avatar": None,
            "bot": member.bot,
            "public_flags": 0,
        }

    def _bot_user_json(self) -> JSON:
        data = self._user_json(self._bot_member)
        data.update({"verified": True, "mfa_enabled": False, "flags": 0, "email": None})
        return data

    def _member_json(self, member: MemberSpec, *, with_user: bool = True) -> JSON:
        data: JSON = {
            "roles": [str(r) for r in member.roles],
            "joined_at": self._joined_at,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self._user_json(member)
        return data

    def _role_json(self, role: RoleSpec, position: int) -> JSON:
        return {
            "id": str(role.id),
            "name": role.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": position,
            "permissions": str(role.permissions),
            "managed": role is self._bot_role,
            "mentionable": False,
            "flags": 0,
            **({"tags": {"bot_id": str(self.bot_user_id)}} if role is self._bot_role else {}),
        }

    def _roles_json(self) -> list[JSON]:
        ordered = [self._roles[self.guild.id]] + [
            r for r in self._roles.values() if r.id != self.guild.id
        ]
        return [self._role_json(role, position) for position, role in enumerate(ordered)]

    def _bot_channel_permissions(self, channel_id: int) -> int:
        """The bot's permissions in a guild channel: its roles minus the channel's deny."""
        perms = self._permissions_of(self._bot_member)
        if perms & ADMINISTRATOR:
            return perms
        return perms & ~self._bot_denies.get(channel_id, 0)

    def _require_access(self, channel_id: int, *, send: bool) -> None:
        """Discord's answers for a guild channel the bot cannot use: 50001 Missing Access
        without View Channel, 50013 Missing Permissions without Send Messages (``send``)."""
        if channel_id in self._dm_user_by_channel:
            return
        perms = self._bot_channel_permissions(channel_id)
        if not perms & VIEW_CHANNEL:
            raise _error(403, 50001, "Missing Access")
        if send and not perms & SEND_MESSAGES:
            raise _error(403, 50013, "Missing Permissions")

    def _channel_json(self, channel_id: int) -> JSON:
        if channel_id in self._dm_user_by_channel:
            user = self._members[self._dm_user_by_channel[channel_id]]
            return {
                "id": str(channel_id),
                "type": 1,
                "recipients": [self._user_json(user)],
                "last_message_id": None,
                "flags": 0,
            }
        channel = self._channels[channel_id]
        return {
            "id": str(channel.id),
            "type": 0,
            "guild_id": str(self.guild.id),
            "name": channel.name,
            "position": list(self._channels).index(channel.id),
            "permission_overwrites": [dict(o) for o in channel.permission_overwrites],
            "nsfw": False,
            "topic": None,
            "parent_id": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }

    def _guild_json(self) -> JSON:
        return {
            "id": str(self.guild.id),
            "name": self.guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self._owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": self._roles_json(),
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "max_members": 500_000,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
        }

    def _guild_create_json(self) -> JSON:
        members = list(self._members.values())
        if self.intents is not None and not self.intents & INTENT_GUILD_MEMBERS:
            members = [self._bot_member]  # Discord: without GUILD_MEMBERS only the bot is sent
        data = self._guild_json()
        data.update(
            {
                "joined_at": self._joined_at,
                "large": False,
                "unavailable": False,
                "member_count": len(self._members),
                "members": [self._member_json(m) for m in members],
                "channels": [self._channel_json(cid) for cid in self._channels],
                "threads": [],
                "presences": [],
                "voice_states": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
            }
        )
        return data

    def _permissions_of(self, member: MemberSpec) -> int:
        if member.id == self._owner_id:
            return ALL_PERMISSIONS
        perms = self._roles[self.guild.id].permissions
        for role_id in member.roles:
            role = self._roles.get(role_id)
            if role is not None:
                perms |= role.permissions
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    def _message_json(self, msg: RecordedMessage) -> JSON:
        author = self._members.get(msg.author_id) or MemberSpec(msg.author_id, "unknown")
        data: JSON = {
            "id": str(msg.id),
            "type": msg.message_type,
            "channel_id": str(msg.channel_id),
            "author": self._user_json(author),
            "content": msg.content,
            "timestamp": msg.timestamp,
            "edited_timestamp": msg.edited_timestamp,
            "tts": False,
            "mention_everyone": msg.mentions_everyone,
            "mentions": [
                self._user_json(self._members[uid])
                for uid in msg.mentioned_user_ids
                if uid in self._members
            ],
            "mention_roles": [],
            "attachments": msg.attachments,
            "embeds": msg.embeds,
            "pinned": False,
            "flags": msg.flags,
            "components": msg.components,
        }
        if msg.guild_id is not None:
            data["guild_id"] = str(msg.guild_id)
        if msg.message_reference is not None:
            data["message_reference"] = msg.message_reference
        if msg.interaction_id is not None:
            interaction = self.interactions.get(msg.interaction_id)
            data["webhook_id"] = str(self.application_id)
            data["application_id"] = str(self.application_id)
            if interaction is not None:
                user = self._members.get(interaction.user_id) or MemberSpec(
                    interaction.user_id, "?"
                )
                data["interaction_metadata"] = {
                    "id": interaction.id,
                    "type": interaction.type,
                    "user": self._user_json(user),
                    "authorizing_integration_owners": {"0": str(self.guild.id)},
                }
        return data

    # ---------------------------------------------------------------- lookups

    def _member(self, user: MemberSpec | int) -> MemberSpec:
        uid = user.id if isinstance(user, MemberSpec) else int(user)
        try:
            return self._members[uid]
        except KeyError:
            raise LookupError(
                f"user {uid} is not a member of the emulated guild; members: "
                f"{sorted((m.username, m.id) for m in self._members.values())}"
            ) from None

    def _channel_guild_id(self, channel_id: int) -> int | None:
        return self.guild.id if channel_id in self._channels else None

    def _require_channel(self, channel_id: int) -> None:
        if channel_id not in self._channels and channel_id not in self._dm_user_by_channel:
            raise _error(404, 10003, "Unknown Channel")

    def _require_message(self, channel_id: int | None, message_id: int) -> RecordedMessage:
        msg = self._messages.get(message_id)
        if msg is None or msg.deleted or (channel_id is not None and msg.channel_id != channel_id):
            raise _error(404, 10008, "Unknown Message")
        return msg

    # ---------------------------------------------------------------- messages

    def _create_message(
        self,
        channel_id: int,
        payload: JSON,
        *,
        author_id: int,
        flags: int,
        attachments: list[JSON],
        interaction: InteractionRecord | None = None,
        message_type: int = 0,
    ) -> RecordedMessage:
        author = self._members.get(author_id)
        may_ping = bool(
            author is not None and self._permissions_of(author) & (MENTION_EVERYONE | ADMINISTRATOR)
        )
        msg = RecordedMessage(
            id=self._snowflake(),
            channel_id=channel_id,
            author_id=author_id,
            content=str(payload.get("content") or ""),
            embeds=list(payload.get("embeds") or []),
            components=list(payload.get("components") or []),
            allowed_mentions=payload.get("allowed_mentions"),
            message_reference=payload.get("message_reference"),
            flags=flags,
            created_at=self.now(),
            guild_id=self._channel_guild_id(channel_id),
            interaction_id=interaction.id if interaction is not None else None,
            attachments=attachments,
            timestamp=self._iso(),
            message_type=message_type,
            bot_may_mention_everyone=may_ping,
        )
        self._messages[msg.id] = msg
        self._channel_messages.setdefault(channel_id, []).append(msg.id)
        return msg

    def _check_new_message(
        self, payload: JSON, attachments: list[JSON], prefix: tuple[str, ...]
    ) -> None:
        errs = _FormErrors()
        _validate_message(errs, payload, prefix)
        errs.raise_if_any()
        has_components = bool(payload.get("components"))
        if not (
            payload.get("content")
            or payload.get("embeds")
            or has_components
            or attachments
            or payload.get("sticker_ids")
            or payload.get("poll")
        ):
            raise _error(400, 50006, "Cannot send an empty message")

    def _apply_edit(
        self,
        msg: RecordedMessage,
        payload: JSON,
        attachments: list[JSON],
        prefix: tuple[str, ...] = (),
    ) -> None:
        """Validate ``payload`` merged onto ``msg`` and apply it (Discord: Edit Message)."""
        merged: JSON = {
            "content": msg.content,
            "embeds": msg.embeds,
            "components": msg.components,
            "flags": msg.flags,
        }
        for key in ("content", "embeds", "components", "allowed_mentions"):
            if key in payload:
                merged[key] = payload[key]
        new_flags = msg.flags & (EPHEMERAL | IS_COMPONENTS_V2 | SUPPRESS_EMBEDS)
        if "flags" in payload and payload["flags"] is not None:
            requested = int(payload["flags"])
            new_flags = (new_flags & ~SUPPRESS_EMBEDS) | (
                requested & (SUPPRESS_EMBEDS | IS_COMPONENTS_V2)
            )
        merged["flags"] = new_flags
        errs = _FormErrors()
        _validate_message(errs, merged, prefix)
        errs.raise_if_any()
        kept = msg.attachments
        if "attachments" in payload and isinstance(payload["attachments"], list):
            keep_ids = {str(a.get("id")) for a in payload["attachments"] if isinstance(a, dict)}
            kept = [a for a in msg.attachments if a["id"] in keep_ids]
        if not (
            merged.get("content")
            or merged.get("embeds")
            or merged.get("components")
            or kept
            or attachments
        ):
            raise _error(400, 50006, "Cannot send an empty message")
        msg.content = str(merged.get("content") or "")
        msg.embeds = list(merged.get("embeds") or [])
        msg.components = list(merged.get("components") or [])
        if "allowed_mentions" in payload:
            msg.allowed_mentions = payload["allowed_mentions"]
        msg.flags = new_flags
        msg.attachments = kept + attachments
        msg.edited_timestamp = self._iso()
        msg.edits.append(payload)

    def _attachments_from(self, files: list[JSON]) -> list[JSON]:
        result = []
        for f in files:
            aid = str(self._snowflake())
            url = f"https://cdn.discordapp.com/attachments/0/{aid}/{f['filename']}"
            result.append(
                {
                    "id": aid,
                    "filename": f["filename"],
                    "size": f["size"],
                    "url": url,
                    "proxy_url": url,
                    "content_type": f.get("content_type"),
                }
            )
        return result

    async def _message_event(self, event: str, msg: RecordedMessage) -> None:
        """Dispatch MESSAGE_CREATE/UPDATE/DELETE if the bot's intents ask for it."""
        if msg.ephemeral:
            return
        needed = INTENT_GUILD_MESSAGES if msg.guild_id is not None else INTENT_DIRECT_MESSAGES
        if self.intents is not None and not self.intents & needed:
            return
        if event == "MESSAGE_DELETE":
            data: JSON = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id is not None:
                data["guild_id"] = str(msg.guild_id)
        else:
            data = self._message_json(msg)
            if msg.guild_id is not None and msg.author_id in self._members:
                data["member"] = self._member_json(self._members[msg.author_id], with_user=False)
        await self._dispatch(event, data, require_session=False)

    # ---------------------------------------------------------------- REST plumbing

    def _register_routes(self) -> None:
        r = self._router
        r.add("GET", r"/users/@me", self._get_me)
        r.add("GET", r"/users/(?P<user_id>\d+)", self._get_user)
        r.add("POST", r"/users/@me/channels", self._open_dm)
        r.add("GET", r"/oauth2/applications/@me", self._get_application)
        r.add("GET", r"/applications/@me", self._get_application)
        r.add("GET", r"/gateway", self._get_gateway, auth=False)
        r.add("GET", r"/gateway/bot", self._get_gateway)
        r.add("GET|PUT", r"/applications/(?P<application_id>\d+)/commands", self._commands)
        r.add(
            "GET|PUT",
            r"/applications/(?P<application_id>\d+)/guilds/(?P<guild_id>\d+)/commands",
            self._commands,
        )
        r.add("GET", r"/guilds/(?P<guild_id>\d+)", self._get_guild)
        r.add("GET", r"/guilds/(?P<guild_id>\d+)/channels", self._get_guild_channels)
        r.add("GET", r"/guilds/(?P<guild_id>\d+)/roles", self._get_guild_roles)
        r.add("GET", r"/guilds/(?P<guild_id>\d+)/members", self._list_members)
        r.add("GET", r"/guilds/(?P<guild_id>\d+)/members/(?P<user_id>\d+)", self._get_member)
        r.add("GET", r"/channels/(?P<channel_id>\d+)", self._get_channel)
        r.add("POST", r"/channels/(?P<channel_id>\d+)/typing", self._typing)
        r.add("GET", r"/channels/(?P<channel_id>\d+)/messages", self._history)
        r.add("POST", r"/channels/(?P<channel_id>\d+)/messages", self._post_message)
        r.add(
            "GET|PATCH|DELETE",
            r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)",
            self._channel_message,
        )
        r.add(
            "POST",
            r"/interactions/(?P<interaction_id>\d+)/(?P<token>[^/]+)/callback",
            self._interaction_callback,
            auth=False,
        )
        r.add("POST", r"/webhooks/(?P<app_id>\d+)/(?P<token>[^/]+)", self._followup, auth=False)
        r.add(
            "GET|PATCH|DELETE",
            r"/webhooks/(?P<app_id>\d+)/(?P<token>[^/]+)/messages/(?P<message_id>@original|\d+)",
            self._webhook_message,
            auth=False,
        )

    async def _rest_handler(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        method = request.method.upper()
        try:
            reply = await self._route(request, method, path)
        except _ApiError as exc:
            reply = _Reply(exc.status, exc.body, exc.headers)
        except Exception as exc:  # never answer 5xx by accident: discord.py would retry
            detail = "".join(traceback.format_exception(exc))
            _log.error("discord emulator: internal error on %s %s\n%s", method, path, detail)
            self.internal_errors.append(f"{method} {path}: {detail}")
            reply = _Reply(400, {"code": 0, "message": f"emulator error: {exc!r}"})
        if reply.status >= 400:
            self._record_error(method, path, reply.status, reply.body)
        self._notify()
        return self._to_response(reply)

    def _record_error(self, method: str, path: str, status: int, body: Any) -> RecordedError:
        code = body.get("code") if isinstance(body, dict) else None
        error = RecordedError(method, path, status, code, body, self.now())
        self.errors.append(error)
        found = re.match(r"^/(?:interactions/(\d+)/|webhooks/\d+/([^/]+))", path)
        if found:
            rec = (
                self.interactions.get(found.group(1))
                if found.group(1)
                else self._interactions_by_token.get(found.group(2))
            )
            if rec is not None:
                rec.rejected.append(error)
        return error

    @staticmethod
    def _to_response(reply: _Reply) -> web.Response:
        if reply.status == 204 or reply.body is None:
            return web.Response(status=reply.status, headers=reply.headers)
        headers = {"Content-Type": "application/json", **reply.headers}
        return web.Response(
            status=reply.status, body=json.dumps(reply.body).encode(), headers=headers
        )

    def _take_injected(self, method: str, path: str) -> _Reply | None:
        for inj in self._injected:
            if inj.method not in ("*", method) or not inj.pattern.search(path):
                continue
            inj.remaining -= 1
            if inj.remaining <= 0:
                self._injected.remove(inj)
            if inj.status == 429:
                body = inj.body or {
                    "message": "You are being rate limited.",
                    "retry_after": 0.0,
                    "global": False,
                }
                retry = float(body.get("retry_after", 0.0))
                return _Reply(429, body, self._rate_limit_headers(retry))
            return _Reply(
                inj.status, inj.body or {"code": 0, "message": f"{inj.status}: emulated failure"}
            )
        return None

    @staticmethod
    def _rate_limit_headers(retry_after: float) -> dict[str, str]:
        return {
            "Via": "1.1 google",
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "X-RateLimit-Scope": "user",
        }

    async def _route(self, request: web.Request, method: str, path: str) -> _Reply:
        route, params, path_known = self._router.match(method, path)
        if route is None:
            if path_known:
                raise _ApiError(405, {"code": 0, "message": "405: Method Not Allowed"})
            raise _ApiError(404, {"code": 0, "message": "404: Not Found"})
        if route.auth and self.token is not None:
            if request.headers.get("Authorization") != f"Bot {self.token}":
                raise _ApiError(401, {"code": 0, "message": "401: Unauthorized"})
        body, files = await self._read_body(request)
        self._check_conformance(method, path, list(request.query.items()), body)
        injected = self._take_injected(method, path)
        if injected is not None:
            return injected
        req = _Request(method, path, params, request.query, request.headers, body, files)
        return await route.handler(req)

    def _check_conformance(
        self, method: str, path: str, query: list[tuple[str, str]], body: Any
    ) -> None:
        """Check a request against Discord's API description (the one place it happens)."""
        if self.spec is None:
            return
        self.spec_checked += 1
        errors = self.spec.check(method, path, body=body, query=query)
        if not errors:
            return
        operation = self.spec.match(method, path)
        self.spec_violations.append(
            SpecViolation(
                method,
                path,
                operation.template if operation else None,
                errors,
                body,
                query,
                self.now(),
            )
        )
        _log.warning(
            "discord emulator: %s %s does not conform to Discord's API description: %s",
            method,
            path,
            json.dumps(errors)[:2000],
        )
        if self.spec_strict:
            raise _ApiError(400, {"code": 50035, "errors": errors, "message": "Invalid Form Body"})

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[JSON]]:
        if not request.can_read_body:
            return None, []
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            body: Any = None
            files: list[JSON] = []
            for name, value in form.items():
                if name == "payload_json":
                    if isinstance(value, web.FileField):
                        body = json.loads(value.file.read())
                    else:
                        body = json.loads(value)
                elif isinstance(value, web.FileField):
                    size = len(value.file.read())
                    files.append(
                        {
                            "filename": value.filename,
                            "size": size,
                            "content_type": value.content_type,
                        }
                    )
            return body, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            raise _error(400, 50109, "The request body contains invalid JSON.") from None

    # ---------------------------------------------------------------- REST: users, app, gateway

    async def _get_me(self, req: _Request) -> _Reply:
        return _Reply(200, self._bot_user_json())

    async def _get_user(self, req: _Request) -> _Reply:
        member = self._members.get(int(req.params["user_id"]))
        if member is None:
            raise _error(404, 10013, "Unknown User")
        return _Reply(200, self._user_json(member))

    async def _get_application(self, req: _Request) -> _Reply:
        owner = self._members.get(self._owner_id) or self._bot_member
        return _Reply(
            200,
            {
                "id": str(self.application_id),
                "name": self.bot_username,
                "icon": None,
                "description": "",
                "rpc_origins": [],
                "bot_public": False,
                "bot_require_code_grant": False,
                "bot": self._user_json(self._bot_member),
                "owner": self._user_json(owner),
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "tags": [],
                "interactions_endpoint_url": None,
                "redirect_uris": [],
            },
        )

    async def _get_gateway(self, req: _Request) -> _Reply:
        data: JSON = {"url": self.gateway_url}
        if req.path.endswith("/bot"):
            data.update(
                {
                    "shards": 1,
                    "session_start_limit": {
                        "total": 1000,
                        "remaining": 1000,
                        "reset_after": 0,
                        "max_concurrency": 1,
                    },
                }
            )
        return _Reply(200, data)

    async def _open_dm(self, req: _Request) -> _Reply:
        body = req.json_object()
        try:
            user_id = int(body.get("recipient_id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _error(400, 50035, "Invalid Form Body") from None
        if user_id not in self._members:
            raise _error(404, 10013, "Unknown User")
        channel_id = self._dm_channel_by_user.get(user_id)
        if channel_id is None:
            channel_id = self._snowflake()
            self._dm_channel_by_user[user_id] = channel_id
            self._dm_user_by_channel[channel_id] = user_id
        return _Reply(200, self._channel_json(channel_id))

    # ---------------------------------------------------------------- REST: commands

    async def _commands(self, req: _Request) -> _Reply:
        if int(req.params["application_id"]) != self.application_id:
            raise _error(404, 10002, "Unknown Application")
        guild_id = int(req.params["guild_id"]) if "guild_id" in req.params else None
        if guild_id is not None and guild_id != self.guild.id:
            raise _error(404, 10004, "Unknown Guild")
        if req.method == "GET":
            existing = (
                self.synced_commands.get(guild_id, [])
                if guild_id is not None
                else self.global_commands
            )
            return _Reply(200, existing)
        body = req.body if req.body is not None else []
        errs = _FormErrors()
        if not isinstance(body, list):
            errs.add((), "BASE_TYPE_ARRAY", "Must be an array.")
            errs.raise_if_any()
        names: set[tuple[int, str]] = set()
        for index, cmd in enumerate(body):
            _validate_command(errs, cmd, (index,))
            if isinstance(cmd, dict):
                key = (int(cmd.get("type", 1)), str(cmd.get("name")))
                if key in names:
                    errs.add(
                        (index, "name"),
                        "APPLICATION_COMMANDS_DUPLICATE_NAME",
                        f"Application command names must be unique: {key[1]}",
                    )
                names.add(key)
        if sum(1 for c in body if isinstance(c, dict) and c.get("type", 1) == 1) > 100:
            errs.add((), "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer chat input commands.")
        errs.raise_if_any()
        result = []
        for cmd in body:
            ctype = int(cmd.get("type", 1))
            key3 = (guild_id, ctype, str(cmd["name"]))
            cid = self._command_ids.setdefault(key3, self._snowflake())
            obj = {
                "default_member_permissions": None,
                "dm_permission": True,
                "nsfw": False,
                "options": [],
                **cmd,
                "id": str(cid),
                "application_id": str(self.application_id),
                "type": ctype,
                "version": str(self._snowflake()),
            }
            if guild_id is not None:
                obj["guild_id"] = str(guild_id)
            result.append(obj)
        if guild_id is not None:
            self.synced_commands[guild_id] = result
        else:
            self.global_commands = result
        return _Reply(200, result)

    # ---------------------------------------------------------------- REST: guild

    def _check_guild(self, req: _Request) -> None:
        if int(req.params["guild_id"]) != self.guild.id:
            raise _error(404, 10004, "Unknown Guild")

    async def _get_guild(self, req: _Request) -> _Reply:
        self._check_guild(req)
        data = self._guild_json()
        if req.query.get("with_counts") in ("true", "1", "True"):
            data["approximate_member_count"] = len(self._members)
            data["approximate_presence_count"] = 0
        return _Reply(200, data)

    async def _get_guild_channels(self, req: _Request) -> _Reply:
        self._check_guild(req)
        return _Reply(200, [self._channel_json(cid) for cid in self._channels])

    async def _get_guild_roles(self, req: _Request) -> _Reply:
        self._check_guild(req)
        return _Reply(200, self._roles_json())

    async def _list_members(self, req: _Request) -> _Reply:
        self._check_guild(req)
        limit = int(req.query.get("limit", "1"))
        after = int(req.query.get("after", "0"))
        members = sorted((m for m in self._members.values() if m.id > after), key=lambda m: m.id)
        return _Reply(200, [self._member_json(m) for m in members[:limit]])

    async def _get_member(self, req: _Request) -> _Reply:
        self._check_guild(req)
        member = self._members.get(int(req.params["user_id"]))
        if member is None:
            raise _error(404, 10007, "Unknown Member")
        return _Reply(200, self._member_json(member))

    # ---------------------------------------------------------------- REST: channels & messages

    async def _get_channel(self, req: _Request) -> _Reply:
        channel_id = int(req.params["channel_id"])
        self._require_channel(channel_id)
        return _Reply(200, self._channel_json(channel_id))

    async def _typing(self, req: _Request) -> _Reply:
        self._require_channel(int(req.params["channel_id"]))
        return _Reply(204)

    async def _history(self, req: _Request) -> _Reply:
        channel_id = int(req.params["channel_id"])
        self._require_channel(channel_id)
        limit = max(1, min(100, int(req.query.get("limit", "50"))))
        before = int(req.query["before"]) if "before" in req.query else None
        after = int(req.query["after"]) if "after" in req.query else None
        visible = [m for m in self.messages(channel_id) if not m.deleted and not m.ephemeral]
        if before is not None:
            visible = [m for m in visible if m.id < before]
        if after is not None:
            visible = [m for m in visible if m.id > after][:limit]
        newest_first = sorted(visible, key=lambda m: m.id, reverse=True)[:limit]
        return _Reply(200, [self._message_json(m) for m in newest_first])

    def _check_rate_limit(self, channel_id: int) -> None:
        """Sliding-window per-channel limit on real monotonic time (Discord: 429)."""
        now = time.monotonic()
        window = self._sends.setdefault(channel_id, deque())
        while window and now - window[0] >= self.channel_rate_window_seconds:
            window.popleft()
        if len(window) >= self.channel_rate_limit:
            retry_after = window[0] + self.channel_rate_window_seconds - now
            retry_after = max(0.001, math.ceil(retry_after * 1000) / 1000)
            raise _ApiError(
                429,
                {
                    "message": "You are being rate limited.",
                    "retry_after": retry_after,
                    "global": False,
                },
                self._rate_limit_headers(retry_after),
            )
        window.append(now)

    def message_age(self, message_id: int) -> float:
        """Seconds since the message was created, on the emulator clock (from its snowflake,
        as Discord tells a message's age)."""
        created_ms = (message_id >> 22) + DISCORD_EPOCH_MS
        return (time.time() + self._offset) - created_ms / 1000

    def _check_old_edit(self, msg: RecordedMessage) -> None:
        """The budget of edits of messages older than an hour, per channel (Discord: 30046)."""
        limit = self.old_message_edit_limit
        if limit is None or self.message_age(msg.id) < self.old_message_age_seconds:
            return
        now = self.now()
        window = self._old_edits.setdefault(msg.channel_id, deque())
        while window and now - window[0] >= self.old_message_edit_window_seconds:
            window.popleft()
        if len(window) >= limit:
            # Discord answers it as a 429 without rate-limit headers: clients raise it
            raise _ApiError(
                429,
                {
                    "message": "Maximum number of edits to messages older than 1 hour "
                    "reached. Try again later",
                    "code": 30046,
                },
            )
        window.append(now)

    async def _post_message(self, req: _Request) -> _Reply:
        channel_id = int(req.params["channel_id"])
        self._require_channel(channel_id)
        dm_user = self._dm_user_by_channel.get(channel_id)
        if dm_user is not None and self._members[dm_user].dm_closed:
            raise _error(403, 50007, "Cannot send messages to this user")
        self._require_access(channel_id, send=True)
        self._check_rate_limit(channel_id)
        payload = req.json_object()
        attachments = self._attachments_from(req.files)
        self._check_new_message(payload, attachments, ())
        reference = payload.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            ref_id = int(reference["message_id"])
            ref_msg = self._messages.get(ref_id)
            if (ref_msg is None or ref_msg.deleted) and reference.get("fail_if_not_exists", True):
                errs = _FormErrors()
                errs.add(("message_reference",), "REPLIES_UNKNOWN_MESSAGE", "Unknown message")
                errs.raise_if_any()
        flags = int(payload.get("flags") or 0) & (
            SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2
        )
        msg = self._create_message(
            channel_id,
            payload,
            author_id=self.bot_user_id,
            flags=flags,
            attachments=attachments,
            message_type=19 if reference else 0,
        )
        await self._message_event("MESSAGE_CREATE", msg)
        return _Reply(200, self._message_json(msg))

    async def _channel_message(self, req: _Request) -> _Reply:
        channel_id = int(req.params["channel_id"])
        self._require_channel(channel_id)
        self._require_access(channel_id, send=False)
        msg = self._require_message(channel_id, int(req.params["message_id"]))
        if msg.ephemeral:
            # Discord: ephemeral messages exist only behind the interaction webhook.
            raise _error(404, 10008, "Unknown Message")
        if req.method == "GET":
            return _Reply(200, self._message_json(msg))
        if req.method == "DELETE":
            msg.deleted = True
            await self._message_event("MESSAGE_DELETE", msg)
            return _Reply(204)
        if msg.author_id != self.bot_user_id:
            raise _error(403, 50005, "Cannot edit a message authored by another user")
        self._check_old_edit(msg)
        self._apply_edit(msg, req.json_object(), self._attachments_from(req.files))
        self.edit_log.append((time.monotonic(), channel_id, msg.id))
        await self._message_event("MESSAGE_UPDATE", msg)
        return _Reply(200, self._message_json(msg))

    # ---------------------------------------------------------------- REST: interactions

    async def _interaction_callback(self, req: _Request) -> _Reply:
        rec = self.interactions.get(req.params["interaction_id"])
        if rec is None or rec.token != req.params["token"]:
            raise _error(404, 10062, "Unknown interaction")
        if rec.callbacks:
            raise _error(400, 40060, "Interaction has already been acknowledged.")
        if self.now() - rec.created_at > self.interaction_deadline_seconds:
            raise _error(404, 10062, "Unknown interaction")
        body = req.json_object()
        raw_type = body.get("type")
        cb_type = raw_type if isinstance(raw_type, int) else -1
        data = body.get("data") or {}
        if not isinstance(data, dict):
            data = {}
        errs = _FormErrors()
        allowed = _ALLOWED_CALLBACKS.get(rec.type, set())
        if rec.source_message_id is None:  # nothing to update
            allowed = allowed - {CB_UPDATE, CB_DEFERRED_UPDATE}
        if cb_type not in allowed:
            errs.add(
                ("type",),
                "INTERACTION_RESPONSE_TYPE_INVALID",
                f"Callback type {cb_type!r} is not valid for interaction type {rec.type}"
                f" (allowed: {sorted(allowed)})",
            )
            errs.raise_if_any()
        attachments = self._attachments_from(req.files)
        resource: JSON = {"type": cb_type}
        loading = False
        if cb_type == CB_MESSAGE:
            self._check_new_message(data, attachments, ("data",))
            flags = int(data.get("flags") or 0) & (
                EPHEMERAL | SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2
            )
            msg = self._create_message(
                rec.channel_id,
                data,
                author_id=self.bot_user_id,
                flags=flags,
                attachments=attachments,
                interaction=rec,
                message_type=20 if rec.type == APPLICATION_COMMAND else 0,
            )
            rec.original_message_id = msg.id
        elif cb_type == CB_DEFERRED_MESSAGE:
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            msg = self._create_message(
                rec.channel_id,
                {},
                author_id=self.bot_user_id,
                flags=flags,
                attachments=[],
                interaction=rec,
                message_type=20 if rec.type == APPLICATION_COMMAND else 0,
            )
            rec.original_message_id = msg.id
            loading = True
        elif cb_type == CB_UPDATE:
            assert rec.source_message_id is not None
            msg = self._require_message(None, rec.source_message_id)
            self._apply_edit(msg, data, attachments, ("data",))
            rec.original_message_id = msg.id
        elif cb_type == CB_DEFERRED_UPDATE:
            assert rec.source_message_id is not None
            rec.original_message_id = rec.source_message_id
        elif cb_type == CB_AUTOCOMPLETE:
            _validate_choices(errs, data, ("data",))
            errs.raise_if_any()
        elif cb_type == CB_MODAL:
            _validate_modal(errs, data, ("data",))
            errs.raise_if_any()
        rec.callbacks.append(CallbackRecord(cb_type, data, self.now()))
        original = self._messages.get(rec.original_message_id) if rec.original_message_id else None
        if original is not None and cb_type in (CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_UPDATE):
            resource["message"] = self._message_json(original)
            event = "MESSAGE_UPDATE" if cb_type == CB_UPDATE else "MESSAGE_CREATE"
            await self._message_event(event, original)
        interaction: JSON = {
            "id": rec.id,
            "type": rec.type,
            "response_message_loading": loading,
            "response_message_ephemeral": bool(original is not None and original.ephemeral),
        }
        if original is not None:
            interaction["response_message_id"] = str(original.id)
        return _Reply(200, {"interaction": interaction, "resource": resource})

    def _webhook_interaction(self, req: _Request) -> InteractionRecord:
        """The interaction behind ``/webhooks/{app}/{token}``, checking the 15-minute window."""
        rec = self._interactions_by_token.get(req.params["token"])
        if rec is None or int(req.params["app_id"]) != self.application_id:
            raise _error(404, 10015, "Unknown Webhook")
        if self.now() - rec.created_at > self.followup_window_seconds:
            raise _error(404, 10015, "Unknown Webhook")
        if not rec.callbacks:
            raise _error(404, 10015, "Unknown Webhook")
        return rec

    async def _followup(self, req: _Request) -> _Reply:
        rec = self._webhook_interaction(req)
        payload = req.json_object()
        attachments = self._attachments_from(req.files)
        original = self._messages.get(rec.original_message_id) if rec.original_message_id else None
        if original is not None and original.flags & LOADING and not original.deleted:
            # Discord: the first follow-up after a deferred (type 5) response edits the
            # "thinking" message instead of creating a new one.
            self._apply_edit(original, payload, attachments)
            original.flags &= ~LOADING
            msg = original
            await self._message_event("MESSAGE_UPDATE", msg)
        else:
            self._check_new_message(payload, attachments, ())
            flags = int(payload.get("flags") or 0) & (
                EPHEMERAL | SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2
            )
            msg = self._create_message(
                rec.channel_id,
                payload,
                author_id=self.bot_user_id,
                flags=flags,
                attachments=attachments,
                interaction=rec,
            )
            await self._message_event("MESSAGE_CREATE", msg)
        rec.followups.append(msg)
        if req.query.get("wait") in ("1", "true", "True"):
            return _Reply(200, self._message_json(msg))
        return _Reply(204)

    async def _webhook_message(self, req: _Request) -> _Reply:
        rec = self._webhook_interaction(req)
        ref = req.params["message_id"]
        if ref == "@original":
            if rec.original_message_id is None:
                raise _error(404, 10008, "Unknown Message")
            msg = self._require_message(None, rec.original_message_id)
        else:
            mid = int(ref)
            own = {m.id for m in rec.followups} | {rec.original_message_id}
            if mid not in own:
                raise _error(404, 10008, "Unknown Message")
            msg = self._require_message(None, mid)
        if req.method == "GET":
            return _Reply(200, self._message_json(msg))
        if req.method == "DELETE":
            msg.deleted = True
            await self._message_event("MESSAGE_DELETE", msg)
            return _Reply(204)
        self._apply_edit(msg, req.json_object(), self._attachments_from(req.files))
        msg.flags &= ~LOADING
        await self._message_event("MESSAGE_UPDATE", msg)
        return _Reply(200, self._message_json(msg))

    # ---------------------------------------------------------------- Gateway

    async def _gateway_handler(self, request: web.Request) -> web.StreamResponse:
        if self.gateway_refused:
            return web.Response(status=503, text="gateway unavailable (emulated outage)")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = _GatewayConn(ws)
        self._conns.add(conn)
        try:
            await self._send(
                conn, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}
            )
            async for frame in ws:
                if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                raw = frame.data if frame.type == WSMsgType.TEXT else frame.data.decode()
                await self._gateway_op(conn, json.loads(raw))
        except Exception as exc:
            detail = "".join(traceback.format_exception(exc))
            _log.error("discord emulator: gateway error\n%s", detail)
            self.internal_errors.append(f"gateway: {detail}")
        finally:
            self._conns.discard(conn)
            if self._active is conn:
                self._active = None
            self._notify()
        return ws

    async def _send(self, conn: _GatewayConn, payload: JSON) -> None:
        payload.setdefault("s", None)
        payload.setdefault("t", None)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await conn.ws.send_str(json.dumps(payload, separators=(",", ":")))

    async def _gateway_op(self, conn: _GatewayConn, msg: JSON) -> None:
        op = msg.get("op")
        data = msg.get("d")
        if op == 1:  # HEARTBEAT
            await self._send(conn, {"op": 11})
        elif op == 2:  # IDENTIFY
            await self._identify(conn, data or {})
        elif op == 6:  # RESUME
            await self._resume(conn, data or {})
        elif op == 8:  # REQUEST_GUILD_MEMBERS
            await self._request_members(data or {})
        # op 3 (presence) and 4 (voice state) are accepted and ignored.
        self._notify()

    async def _identify(self, conn: _GatewayConn, data: JSON) -> None:
        if self.token is not None and data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        async with self._gateway_lock:
            self.intents = data.get("intents")
            self._session_id = secrets.token_hex(16)
            self._seq = 0
            self._dispatch_log = []
            self._active = conn
            conn.identified = True
            ready: JSON = {
                "v": 10,
                "user": self._bot_user_json(),
                "guilds": [{"id": str(self.guild.id), "unavailable": True}],
                "session_id": self._session_id,
                "resume_gateway_url": self.gateway_url,
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "user_settings": {},
                "session_type": "normal",
                "_trace": ["discord-emulator"],
            }
            if data.get("shard"):
                ready["shard"] = data["shard"]
            self.ready_count += 1
            await self._dispatch_locked("READY", ready)
            await self._dispatch_locked("GUILD_CREATE", self._guild_create_json())

    async def _resume(self, conn: _GatewayConn, data: JSON) -> None:
        token_ok = self.token is None or data.get("token") == self.token
        if not token_ok:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        async with self._gateway_lock:
            if self._session_id is None or data.get("session_id") != self._session_id:
                await self._send(conn, {"op": 9, "d": False})
                return
            self._active = conn
            conn.identified = True
            last_seq = int(data.get("seq") or 0)
            for entry in self._dispatch_log:
                if entry["s"] > last_seq:
                    await self._send(conn, dict(entry))
            self.resume_count += 1
            await self._dispatch_locked("RESUMED", {})

    async def _request_members(self, data: JSON) -> None:
        query = str(data.get("query") or "").lower()
        limit = int(data.get("limit") or 0) or len(self._members)
        user_ids = data.get("user_ids")
        if user_ids is not None:
            ids = {int(u) for u in (user_ids if isinstance(user_ids, list) else [user_ids])}
            members = [m for m in self._members.values() if m.id in ids]
            not_found = sorted(ids - {m.id for m in members})
        else:
            members = [m for m in self._members.values() if m.username.lower().startswith(query)]
            not_found = []
        chunk: JSON = {
            "guild_id": str(self.guild.id),
            "members": [self._member_json(m) for m in members[:limit]],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [str(u) for u in not_found],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._dispatch("GUILD_MEMBERS_CHUNK", chunk, require_session=False)

    async def _dispatch(self, event: str, data: JSON, *, require_session: bool = True) -> None:
        """Send a DISPATCH (op 0) with the next sequence number; buffer it while disconnected.

        Raises
        ------
        RuntimeError
            ``require_session`` and no bot ever identified.
        """
        if self._session_id is None:
            if require_session:
                raise RuntimeError(
                    f"cannot dispatch {event}: no bot has connected to the emulator's Gateway"
                )
            return
        async with self._gateway_lock:
            await self._dispatch_locked(event, data)

    async def _dispatch_locked(self, event: str, data: JSON) -> None:
        self._seq += 1
        entry: JSON = {"op": 0, "s": self._seq, "t": event, "d": data}
        self._dispatch_log.append(entry)
        if self._active is not None:
            await self._send(self._active, dict(entry))
        self._notify()

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close the bot's Gateway connection as Discord does on a hiccup.

        The session survives: dispatches made meanwhile are buffered and replayed when the
        client RESUMEs (watch :attr:`resume_count`).

        Parameters
        ----------
        code:
            Websocket close code; 4000 ("unknown error") lets discord.py resume.

        Raises
        ------
        RuntimeError
            No bot is connected.
        """
        conn = self._active
        if conn is None:
            raise RuntimeError("no bot is connected to the Gateway")
        self._active = None
        await asyncio.wait_for(
            conn.ws.close(code=code, message=b"emulator dropped the connection"), 10
        )
        self._notify()

    async def gateway_outage(self, *, down: bool = True) -> None:
        """Start (``down=True``: drop the bot's connection and refuse new ones with 503) or
        end (``down=False``: accept connections again) an outage of the Gateway."""
        self.gateway_refused = down
        if down and self._active is not None:
            await self.drop_gateway()

    # ---------------------------------------------------------------- acting as a person

    def _interaction_payload(
        self,
        itype: int,
        data: JSON,
        member: MemberSpec,
        channel_id: int,
        message: RecordedMessage | None,
    ) -> tuple[JSON, str, str]:
        iid = str(self._snowflake())
        token = "emulated." + secrets.token_urlsafe(48)
        payload: JSON = {
            "id": iid,
            "application_id": str(self.application_id),
            "type": itype,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "app_permissions": str(self._permissions_of(self._bot_member)),
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": 26_214_400,
        }
        if channel_id in self._channels:
            channel = self._channel_json(channel_id)
            channel["permissions"] = str(self._permissions_of(member))
            payload.update(
                {
                    "guild_id": str(self.guild.id),
                    "guild": {"id": str(self.guild.id), "locale": "en-US", "features": []},
                    "guild_locale": "en-US",
                    "channel": channel,
                    "member": {
                        **self._member_json(member),
                        "permissions": str(self._permissions_of(member)),
                    },
                    "authorizing_integration_owners": {"0": str(self.guild.id)},
                    "context": 0,
                }
            )
        elif channel_id in self._dm_user_by_channel:
            payload.update(
                {
                    "channel": self._channel_json(channel_id),
                    "user": self._user_json(member),
                    "authorizing_integration_owners": {"1": str(member.id)},
                    "context": 1,
                }
            )
        else:
            raise LookupError(f"unknown channel {channel_id}; channels: {sorted(self._channels)}")
        if message is not None:
            payload["message"] = self._message_json(message)
        return payload, iid, token

    async def _interact(
        self,
        itype: int,
        data: JSON,
        *,
        user: MemberSpec | int,
        channel_id: int,
        message: RecordedMessage | None = None,
    ) -> InteractionRecord:
        member = self._member(user)
        if self._session_id is None:
            raise RuntimeError("no bot has connected to the emulator's Gateway")
        payload, iid, token = self._interaction_payload(itype, data, member, channel_id, message)
        rec = InteractionRecord(
            id=iid,
            token=token,
            type=itype,
            user_id=member.id,
            channel_id=channel_id,
            guild_id=self._channel_guild_id(channel_id),
            data=data,
            created_at=self.now(),
            payload=payload,
            source_message_id=message.id if message is not None else None,
            _emulator=self,
        )
        self.interactions[iid] = rec
        self._interactions_by_token[token] = rec
        await self._dispatch("INTERACTION_CREATE", payload)
        return rec

    def _candidate_messages(self, channel_id: int, message_id: int | None) -> list[RecordedMessage]:
        if message_id is not None:
            msg = self._messages.get(message_id)
            if msg is None or msg.deleted or msg.channel_id != channel_id:
                raise LookupError(f"no message {message_id} in channel {channel_id}")
            return [msg]
        return [m for m in reversed(self.messages(channel_id)) if not m.deleted]

    async def press_button(
        self,
        channel_id: int,
        label: str,
        *,
        user: MemberSpec | int,
        message_id: int | None = None,
    ) -> InteractionRecord:
        """Press a button, as ``user``, on the newest message in the channel that shows it.

        A button matches when its label equals ``label`` or ends with it (so ``"Approve"``
        finds ``"✅ Approve"``). Returns at once after the dispatch; await
        :meth:`InteractionRecord.response` for the bot's answer.

        Raises
        ------
        LookupError
            No (non-deleted) message has such a button; the message lists the labels shown.
        ValueError
            The button is a link button (style 5, opens a URL) or disabled.
        RuntimeError
            No bot has connected.
        """
        seen: list[str] = []
        for msg in self._candidate_messages(channel_id, message_id):
            buttons = msg.buttons()
            seen.extend(str(b.get("label")) for b in buttons)
            match = next((b for b in buttons if b.get("label") == label), None) or next(
                (b for b in buttons if str(b.get("label") or "").strip().endswith(label)), None
            )
            if match is None:
                continue
            if match.get("style") == LINK_STYLE:
                raise ValueError(f"button {label!r} is a link button (opens {match.get('url')})")
            if match.get("disabled"):
                raise ValueError(f"button {label!r} on message {msg.id} is disabled")
            data: JSON = {"custom_id": match["custom_id"], "component_type": BUTTON}
            if "id" in match:
                data["id"] = match["id"]
            return await self._interact(
                MESSAGE_COMPONENT, data, user=user, channel_id=channel_id, message=msg
            )
        raise LookupError(
            f"no button labelled {label!r} in channel {channel_id}; buttons shown: {seen}"
        )

    async def choose(
        self,
        channel_id: int,
        custom_id_or_placeholder: str,
        values: list[str],
        *,
        user: MemberSpec | int,
        message_id: int | None = None,
        forged: bool = False,
    ) -> InteractionRecord:
        """Pick ``values`` in a string select menu (component type 3), as ``user``.

        The select is found by custom_id or placeholder on the newest message showing it.
        ``forged=True`` sends ``values`` as they are, skipping the checks a Discord client
        makes (a hand-crafted request: the bot must check them itself).

        Raises
        ------
        LookupError
            No such select menu.
        ValueError
            A value is not one of the options, the count is outside min/max_values, or the
            select is disabled (unless ``forged``).
        """
        seen: list[str] = []
        for msg in self._candidate_messages(channel_id, message_id):
            for comp in _walk_components(msg.components):
                if comp.get("type") != STRING_SELECT:
                    continue
                seen.append(str(comp.get("placeholder") or comp.get("custom_id")))
                if custom_id_or_placeholder not in (comp.get("custom_id"), comp.get("placeholder")):
                    continue
                options = [str(o.get("value")) for o in comp.get("options") or []]
                unknown = [v for v in values if v not in options]
                if unknown and not forged:
                    raise ValueError(f"values {unknown} are not options of the select: {options}")
                low, high = int(comp.get("min_values", 1)), int(comp.get("max_values", 1))
                if not low <= len(values) <= high and not forged:
                    raise ValueError(f"select takes between {low} and {high} values")
                if comp.get("disabled") and not forged:
                    raise ValueError("the select menu is disabled")
                data = {
                    "custom_id": comp["custom_id"],
                    "component_type": STRING_SELECT,
                    "values": values,
                }
                return await self._interact(
                    MESSAGE_COMPONENT, data, user=user, channel_id=channel_id, message=msg
                )
        raise LookupError(
            f"no select menu {custom_id_or_placeholder!r} in channel {channel_id}; selects: {seen}"
        )

    def _find_command(self, name: str, channel_id: int) -> tuple[JSON, list[str]]:
        parts = name.split()
        if not parts:
            raise LookupError("empty command name")
        pools: list[list[JSON]] = []
        if channel_id in self._channels:
            pools.append(self.synced_commands.get(self.guild.id, []))
        pools.append(self.global_commands)
        for pool in pools:
            for cmd in pool:
                if cmd.get("name") == parts[0] and cmd.get("type", 1) == 1:
                    return cmd, parts[1:]
        synced = [c.get("name") for pool in pools for c in pool]
        raise LookupError(f"command {parts[0]!r} is not synced; synced commands: {synced}")

    def _typed_option(
        self, definition: JSON, value: Any, *, focused: bool, resolved: JSON, check: bool = True
    ) -> JSON:
        otype = int(definition["type"])
        name = definition["name"]
        option: JSON = {"name": name, "type": otype}
        if focused:
            option.update({"value": "" if value is None else str(value), "focused": True})
            return option
        if otype == 3:
            converted: Any = str(value)
        elif otype == 4:
            converted = int(value)
        elif otype == 5:
            converted = bool(value)
        elif otype == 10:
            converted = float(value)
        elif otype in (6, 7, 8, 9):
            snowflake = (
                value.id if isinstance(value, MemberSpec | RoleSpec | ChannelSpec) else int(value)
            )
            converted = str(snowflake)
            if otype in (6, 9) and snowflake in self._members:
                member = self._members[snowflake]
                resolved.setdefault("users", {})[converted] = self._user_json(member)
                resolved.setdefault("members", {})[converted] = {
                    **self._member_json(member, with_user=False),
                    "permissions": str(self._permissions_of(member)),
                }
            elif otype in (8, 9) and snowflake in self._roles:
                position = list(self._roles).index(snowflake)
                resolved.setdefault("roles", {})[converted] = self._role_json(
                    self._roles[snowflake], position
                )
            elif otype == 7 and snowflake in self._channels:
                channel = self._channel_json(snowflake)
                channel["permissions"] = str(ALL_PERMISSIONS)
                resolved.setdefault("channels", {})[converted] = channel
            else:
                raise LookupError(f"option {name!r}: nothing with id {snowflake} in the guild")
        else:
            raise ValueError(f"option {name!r}: option type {otype} is not supported")
        if not check:  # a forged request: sent as typed
            option["value"] = converted
            return option
        choices = definition.get("choices")
        if choices and converted not in [c.get("value") for c in choices]:
            raise ValueError(f"option {name!r}: {converted!r} is not one of {choices}")
        if otype in (4, 10):
            if "min_value" in definition and converted < definition["min_value"]:
                raise ValueError(f"option {name!r}: below min_value {definition['min_value']}")
            if "max_value" in definition and converted > definition["max_value"]:
                raise ValueError(f"option {name!r}: above max_value {definition['max_value']}")
        if otype == 3:
            if len(converted) < int(definition.get("min_length", 0)):
                raise ValueError(f"option {name!r}: shorter than min_length")
            if len(converted) > int(definition.get("max_length", 6000)):
                raise ValueError(f"option {name!r}: longer than max_length")
        option["value"] = converted
        return option

    def _command_data(
        self,
        name: str,
        options: dict[str, Any],
        channel_id: int,
        focused: str | None,
        *,
        check: bool = True,
    ) -> JSON:
        command, path = self._find_command(name, channel_id)
        definitions: list[JSON] = list(command.get("options") or [])
        chain: list[JSON] = []
        for sub in path:
            found = next(
                (d for d in definitions if d.get("name") == sub and d.get("type") in (1, 2)), None
            )
            if found is None:
                subs = [d.get("name") for d in definitions if d.get("type") in (1, 2)]
                raise LookupError(f"{name!r}: no subcommand {sub!r}; subcommands: {subs}")
            chain.append(found)
            definitions = list(found.get("options") or [])
        if any(d.get("type") in (1, 2) for d in definitions):
            subs = [d.get("name") for d in definitions if d.get("type") in (1, 2)]
            raise ValueError(f"{name!r} is a group; name one of its subcommands: {subs}")
        resolved: JSON = {}
        typed: list[JSON] = []
        for key, value in options.items():
            definition = next((d for d in definitions if d.get("name") == key), None)
            if definition is None:
                raise LookupError(
                    f"{name!r} has no option {key!r}; options: {[d.get('name') for d in definitions]}"
                )
            typed.append(
                self._typed_option(
                    definition, value, focused=key == focused, resolved=resolved, check=check
                )
            )
        if focused is None:
            missing = [
                d["name"] for d in definitions if d.get("required") and d["name"] not in options
            ]
            if missing:
                raise ValueError(f"{name!r}: required options missing: {missing}")
        elif focused not in options:
            definition = next((d for d in definitions if d.get("name") == focused), None)
            if definition is None:
                raise LookupError(f"{name!r} has no option {focused!r}")
            typed.append(self._typed_option(definition, "", focused=True, resolved=resolved))
        for sub_def in reversed(chain):
            typed = [{"type": sub_def["type"], "name": sub_def["name"], "options": typed}]
        data: JSON = {"id": command["id"], "name": command["name"], "type": 1, "options": typed}
        if command.get("guild_id") is not None:
            data["guild_id"] = command["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return data

    async def run_command(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: MemberSpec | int,
        channel_id: int,
        forged: bool = False,
    ) -> InteractionRecord:
        """Run a synced slash command as ``user`` in ``channel_id``.

        ``forged=True`` sends option values as given, skipping the choices, min/max and
        length checks a Discord client makes (a hand-crafted request).

        Parameters
        ----------
        name:
            Command name, with subcommand group/subcommand separated by spaces, e.g.
            ``"factory status"``.
        options:
            Option values by name, converted to the synced option types (string, integer,
            boolean, number; user/channel/role/mentionable take an id or a spec and get
            ``resolved`` data).

        Raises
        ------
        LookupError
            The command, subcommand or an option is not in the synced definitions.
        ValueError
            A required option is missing or a value breaks the definition (choices,
            min/max) — the Discord client would not let a person send that.
        """
        data = self._command_data(name, dict(options or {}), channel_id, None, check=not forged)
        return await self._interact(APPLICATION_COMMAND, data, user=user, channel_id=channel_id)

    async def autocomplete(
        self,
        name: str,
        options: dict[str, Any],
        focused: str,
        *,
        user: MemberSpec | int,
        channel_id: int,
        timeout: float = 5.0,
    ) -> list[JSON]:
        """Type into option ``focused`` and return the choices the bot suggests.

        ``options[focused]`` (if present) is the partial text typed so far. Sends an
        autocomplete interaction (type 4) and waits at most ``timeout`` real seconds for the
        type-8 callback.

        Raises
        ------
        LookupError
            Unknown command or option.
        TimeoutError
            The bot did not answer in time.
        ValueError
            The bot answered with something other than autocomplete choices.
        """
        data = self._command_data(name, dict(options), channel_id, focused)
        rec = await self._interact(AUTOCOMPLETE, data, user=user, channel_id=channel_id)
        callback = await rec.response(timeout)
        if callback.type != CB_AUTOCOMPLETE:
            raise ValueError(f"autocomplete answered with callback type {callback.type}")
        return list(callback.data.get("choices") or [])

    async def submit_modal(
        self,
        opened_by: InteractionRecord,
        values: dict[str, str],
        *,
        user: MemberSpec | int | None = None,
        forged: bool = False,
    ) -> InteractionRecord:
        """Fill in and submit the modal the bot opened in answer to ``opened_by``.

        Parameters
        ----------
        values:
            Text by text input custom_id or by label. Inputs not given keep their pre-filled
            ``value`` (or stay empty).
        user:
            Who submits; defaults to the person who opened the modal.
        forged:
            Send the values as they are, skipping the required/min_length/max_length checks
            a Discord client makes (a hand-crafted request: the bot must check them itself).

        Raises
        ------
        ValueError
            ``opened_by`` was not answered with a modal (type 9), a required input is empty,
            or a value breaks min_length/max_length.
        LookupError
            A key in ``values`` matches no input; the message lists the inputs.
        """
        modal = opened_by.modal
        if modal is None:
            raise ValueError(
                f"interaction {opened_by.id} was not answered with a modal "
                f"(callbacks: {[c.type for c in opened_by.callbacks]})"
            )
        inputs: list[tuple[JSON, str | None]] = []  # (text input, label)
        for comp in modal.get("components") or []:
            if comp.get("type") == ACTION_ROW:
                for child in comp.get("components") or []:
                    inputs.append((child, child.get("label")))
            elif comp.get("type") == LABEL and isinstance(comp.get("component"), dict):
                inputs.append((comp["component"], comp.get("label")))
        names = [(i.get("custom_id"), label) for i, label in inputs]
        for key in values:
            if not any(key in pair for pair in names):
                raise LookupError(f"modal has no input {key!r}; inputs (custom_id, label): {names}")

        def text_for(comp: JSON, label: str | None) -> str:
            for key in (comp.get("custom_id"), label):
                if key is not None and key in values:
                    return values[key]
            return str(comp.get("value") or "")

        submitted: list[JSON] = []
        for comp in modal.get("components") or []:
            if comp.get("type") == ACTION_ROW:
                row = []
                for child in comp.get("components") or []:
                    row.append(
                        self._submitted_input(
                            child, text_for(child, child.get("label")), check=not forged
                        )
                    )
                submitted.append({"type": ACTION_ROW, "components": row})
            elif comp.get("type") == LABEL and isinstance(comp.get("component"), dict):
                child = comp["component"]
                entry: JSON = {
                    "type": LABEL,
                    "component": self._submitted_input(
                        child, text_for(child, comp.get("label")), check=not forged
                    ),
                }
                if "id" in comp:
                    entry["id"] = comp["id"]
                submitted.append(entry)
        source = (
            self._messages.get(opened_by.source_message_id) if opened_by.source_message_id else None
        )
        data: JSON = {"custom_id": modal["custom_id"], "components": submitted}
        return await self._interact(
            MODAL_SUBMIT,
            data,
            user=user if user is not None else opened_by.user_id,
            channel_id=opened_by.channel_id,
            message=source,
        )

    @staticmethod
    def _submitted_input(comp: JSON, text: str, *, check: bool = True) -> JSON:
        label = comp.get("label") or comp.get("custom_id")
        if comp.get("type") == TEXT_INPUT and check:
            if comp.get("required", True) and not text:
                raise ValueError(f"modal input {label!r} is required")
            if text and len(text) < int(comp.get("min_length") or 0):
                raise ValueError(f"modal input {label!r} is shorter than min_length")
            if len(text) > int(comp.get("max_length") or 4000):
                raise ValueError(f"modal input {label!r} is longer than max_length")
        entry: JSON = {
            "type": comp.get("type", TEXT_INPUT),
            "custom_id": comp.get("custom_id"),
            "value": text,
        }
        if "id" in comp:
            entry["id"] = comp["id"]
        return entry

    async def say(
        self, channel_id: int, content: str, *, user: MemberSpec | int
    ) -> RecordedMessage:
        """Post a message as ``user`` (dispatched as MESSAGE_CREATE if intents allow it).

        Raises
        ------
        LookupError
            Unknown user or channel.
        """
        member = self._member(user)
        if channel_id not in self._channels and channel_id not in self._dm_user_by_channel:
            raise LookupError(f"unknown channel {channel_id}")
        msg = self._create_message(
            channel_id, {"content": content}, author_id=member.id, flags=0, attachments=[]
        )
        await self._message_event("MESSAGE_CREATE", msg)
        return msg

    # ---------------------------------------------------------------- people tidy up

    async def delete_message(self, channel_id: int, message_id: int) -> None:
        """A person deletes a message: it is gone (10008 on the next edit) and
        ``MESSAGE_DELETE`` is dispatched (Discord: needs the GUILD_MESSAGES intent).

        Raises
        ------
        LookupError
            No such (undeleted) message in that channel.
        """
        msg = self._messages.get(message_id)
        if msg is None or msg.deleted or msg.channel_id != channel_id:
            raise LookupError(f"no message {message_id} in channel {channel_id}")
        msg.deleted = True
        await self._message_event("MESSAGE_DELETE", msg)
        self._notify()

    def set_bot_channel_permissions(self, channel_id: int, *, deny: int = 0) -> None:
        """Set the bot's member overwrite in a guild channel: ``deny`` is a permission bit set
        (e.g. :data:`SEND_MESSAGES`; 0 restores access). Without View Channel Discord answers
        50001 Missing Access, without Send Messages a new message gets 50013.

        Raises
        ------
        LookupError
            Unknown guild channel.
        """
        if channel_id not in self._channels:
            raise LookupError(f"unknown channel {channel_id}")
        if deny:
            self._bot_denies[channel_id] = deny
        else:
            self._bot_denies.pop(channel_id, None)
        self._notify()

    def delete_channel(self, channel_id: int) -> None:
        """Delete a guild channel: every request about it then gets 404 / 10003 Unknown Channel.

        Raises
        ------
        LookupError
            Unknown guild channel.
        """
        if self._channels.pop(channel_id, None) is None:
            raise LookupError(f"unknown channel {channel_id}")
        self._notify()
