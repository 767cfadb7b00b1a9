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
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["Operator", "Roster", "RosterError", "load_roster"]


class RosterError(ValueError):
    """The roster file is missing, not TOML, or has an invalid entry (message says which)."""


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
        When the file cannot be read, is not TOML, or an entry is invalid; the message names
        the entry (1-based) and the field.
    """
    if path is None:
        return Roster()
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RosterError(f"cannot read roster file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RosterError(f"roster file {path} is not valid TOML: {exc}") from None
    entries = raw.get("operators", [])
    if not isinstance(entries, list):
        raise RosterError(f"roster file {path}: 'operators' must be an array of tables")
    operators = []
    for index, entry in enumerate(entries, start=1):
        try:
            operators.append(Operator.model_validate(entry))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise RosterError(f"roster file {path}, operator #{index}: {problems}") from None
    return Roster(tuple(operators))
