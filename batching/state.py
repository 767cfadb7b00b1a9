"""The batcher's internal state: pending groups and batch messages (see :mod:`batching.batcher`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from escalation.models import ensure_utc

__all__ = ["Batch", "Group", "aware", "from_iso", "iso"]


@dataclass
class Group:
    """A pending group: tasks of one key waiting for their deadline."""

    group_id: str
    key: str
    deadline: datetime
    task_ids: list[str] = field(default_factory=list)


@dataclass
class Batch:
    """A batch message, posted or being posted."""

    batch_id: str
    key: str
    shown: list[str]
    added: list[str] = field(default_factory=list)
    decided: set[str] = field(default_factory=set)
    posted_at: datetime | None = None
    last_edit_at: datetime | None = None
    message_ref: str | None = None

    @property
    def size(self) -> int:
        return len(self.shown) + len(self.added)

    @property
    def has_undecided(self) -> bool:
        return bool(self.added) or len(self.decided) < len(self.shown)


def aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (UTC)")
    return now


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def from_iso(value: str | None) -> datetime | None:
    return None if value is None else ensure_utc(datetime.fromisoformat(value))
