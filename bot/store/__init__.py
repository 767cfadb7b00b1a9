"""Persistence: SQLAlchemy tables and the :class:`Store` adapter (SQLite default, PostgreSQL)."""

from .store import AuditRecord, EventRecord, StepRecord, Store, TrackedTask

__all__ = ["AuditRecord", "EventRecord", "StepRecord", "Store", "TrackedTask"]
