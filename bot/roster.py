"""The roster: who is who across the factory, Discord and the phone network.

Loaded from the TOML file named by ``BRIDGE_ROSTER_FILE``::

    [[operators]]
    name = "Jake"
    factory_user_id = "user-jake"      # the factory's user id (Task.assigneeId)
    discord_user_id = 111111111111     # string or integer
    phone = "+15550100001"             # E.164, for SMS and calls
    on_call = true
    admin = true

The roster maps a Discord member to the ``factoryUserId`` sent with decisions, a task's
``assigneeId`` to the person to remind, and names the on-call operators and admins that the
escalation ladder pages.

``operators`` is the only top-level key, and an entry takes only the keys above. Each person
has one entry: no two entries share a ``name`` (ignoring case and surrounding spaces: the name
is the person's key in the ladder's stored steps and ``test-page NAME``), a
``discord_user_id``, a ``phone`` (either would page the same person twice) or a
``factory_user_id`` (a task's assignee would be ambiguous).
"""

from __future__ import annotations

import codecs
import difflib
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["Operator", "Roster", "RosterError", "load_roster"]

#: The top-level keys a roster file may have.
TOP_LEVEL_KEYS = ("operators",)


class RosterError(ValueError):
    """The roster file is missing, not UTF-8 TOML, or has an invalid entry (message says which)."""


class Operator(BaseModel):
    """One person in the roster. Ids may be given as strings or integers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    factory_user_id: str | None = None
    discord_user_id: int | None = None
    phone: str | None = Field(default=None, pattern=r"^\+[1-9]\d{6,14}$")
    on_call: bool = False
    admin: bool = False

    @field_validator("factory_user_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value

    @field_validator("discord_user_id", mode="before")
    @classmethod
    def _snowflake(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip().isdigit():
                raise ValueError("discord_user_id must be a numeric Discord user id")
            return int(value.strip())
        return value


@dataclass(frozen=True)
class Roster:
    """The operators, with the look-ups the bridge needs."""

    operators: tuple[Operator, ...] = ()

    def by_discord_id(self, discord_user_id: int) -> Operator | None:
        """The operator with this Discord user id, or ``None``."""
        return next((o for o in self.operators if o.discord_user_id == discord_user_id), None)

    def by_factory_id(self, factory_user_id: str | None) -> Operator | None:
        """The operator with this factory user id (``Task.assigneeId``), or ``None``."""
        if factory_user_id is None:
            return None
        return next((o for o in self.operators if o.factory_user_id == factory_user_id), None)

    @property
    def on_call(self) -> tuple[Operator, ...]:
        """Operators marked ``on_call``, in file order."""
        return tuple(o for o in self.operators if o.on_call)

    @property
    def admins(self) -> tuple[Operator, ...]:
        """Operators marked ``admin``, in file order (the first is the escalation target)."""
        return tuple(o for o in self.operators if o.admin)


def load_roster(path: Path | None) -> Roster:
    """Read the roster TOML at ``path``; ``None`` gives an empty roster.

    Raises
    ------
    RosterError
        When the file cannot be read, is not UTF-8 text (a BOM is allowed) or is not TOML;
        when it has a top-level key other than ``operators`` (the message names it and the
        allowed one); when an entry is invalid or has an unknown key (the message names the
        entry, 1-based, and the field); or when two entries share a name (ignoring case), a
        Discord user id, a phone or a factory user id (the message names both entries).
    """
    if path is None:
        return Roster()
    try:
        raw = tomllib.loads(_read_text(Path(path)))
    except OSError as exc:
        raise RosterError(f"cannot read roster file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RosterError(f"roster file {path} is not valid TOML: {exc}") from None
    unknown = [key for key in raw if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise RosterError(f"roster file {path}: {_unknown_top_level(unknown)}")
    entries = raw.get("operators", [])
    if not isinstance(entries, list):
        raise RosterError(f"roster file {path}: 'operators' must be an array of tables")
    operators = []
    for index, entry in enumerate(entries, start=1):
        try:
            operators.append(Operator.model_validate(entry))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {_entry_problem(e['type'], e['msg'])}"
                for e in exc.errors()
            )
            raise RosterError(f"roster file {path}, operator #{index}: {problems}") from None
    duplicates = _duplicates(operators)
    if duplicates:
        raise RosterError(f"roster file {path}: " + "; ".join(duplicates))
    return Roster(tuple(operators))


def _read_text(path: Path) -> str:
    """The file's text, read as ``utf-8-sig`` (a BOM, which Windows editors write, is dropped)
    with universal newlines, as :meth:`Path.read_text` reads.

    Raises
    ------
    OSError
        When the file cannot be read.
    RosterError
        When it is not UTF-8 text (the message gives the first bad byte, counted from 1).
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # utf-8-sig counts from after a BOM
        at = exc.start + 1 + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)
        raise RosterError(
            f"roster file {path} is not UTF-8 text (byte {at}, 0x{data[at - 1]:02x}): "
            "save it as UTF-8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _unknown_top_level(keys: Sequence[str]) -> str:
    """What is wrong with top-level ``keys`` that are not ``operators`` (a likely typo)."""
    parts = []
    for key in keys:
        close = difflib.get_close_matches(key, TOP_LEVEL_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        parts.append(f"{key!r}{hint}")
    allowed = ", ".join(repr(k) for k in TOP_LEVEL_KEYS)
    return (
        f"unknown top-level key {', '.join(parts)}; allowed: {allowed} "
        "(each person is an [[operators]] table)"
    )


def _entry_problem(kind: str, message: str) -> str:
    """A validation message of an operator entry; an unknown key lists the allowed ones."""
    if kind == "extra_forbidden":
        return f"unknown key; allowed: {', '.join(Operator.model_fields)}"
    return message


def _duplicates(operators: Sequence[Operator]) -> list[str]:
    """One line per entry that repeats an earlier entry's name, Discord user id or phone.

    Names are compared ignoring case and surrounding spaces.
    """
    first: dict[tuple[str, object], int] = {}
    problems = []
    for index, op in enumerate(operators, start=1):
        keys: tuple[tuple[str, object, str, str], ...] = (
            (
                "name",
                op.name.strip().casefold(),
                "name",
                "names must differ, ignoring case (the name is the person's key in the ladder): "
                "rename one, or merge the two entries if they are the same person",
            ),
            (
                "discord_user_id",
                op.discord_user_id,
                f"discord_user_id {op.discord_user_id}",
                "that member would be paged twice: keep one entry per person",
            ),
            (
                "phone",
                op.phone,
                f"phone {op.phone}",
                "that phone would get every SMS and call twice: keep one entry per phone",
            ),
            (
                "factory_user_id",
                op.factory_user_id,
                f"factory_user_id {op.factory_user_id}",
                "a task assigned to that factory user could name either: keep one entry per person",
            ),
        )
        for field, value, what, fix in keys:
            if value is None:
                continue
            earlier = first.setdefault((field, value), index)
            if earlier != index:
                problems.append(
                    f"operator #{index} ({op.name!r}) has the same {what} as operator "
                    f"#{earlier} ({operators[earlier - 1].name!r}); {fix}"
                )
    return problems
