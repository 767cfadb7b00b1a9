"""Persistence: SQLAlchemy tables and the :class:`Store` adapter (SQLite default, PostgreSQL)."""

from .decisions import GONE
from .store import AuditRecord, BatchRecord, EventRecord, NewEvent, Recorded, Store, TrackedTask

__all__ = [
    "GONE",
    "AuditRecord",
    "BatchRecord",
    "EventRecord",
    "NewEvent",
    "Recorded",
    "Store",
    "TrackedTask",
]
