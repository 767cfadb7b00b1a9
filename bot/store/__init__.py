"""Persistence: SQLAlchemy tables and the :class:`Store` adapter (SQLite default, PostgreSQL)."""

from .store import AuditRecord, BatchRecord, EventRecord, NewEvent, Recorded, Store, TrackedTask

__all__ = [
    "AuditRecord",
    "BatchRecord",
    "EventRecord",
    "NewEvent",
    "Recorded",
    "Store",
    "TrackedTask",
]
