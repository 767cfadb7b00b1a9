"""Batch messages (smart batching): one Discord message showing several routine tasks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from . import tables as t
from .base import StoreBase

__all__ = ["BatchRecord", "BatchesMixin"]


@dataclass(frozen=True)
class BatchRecord:
    """A batch message (smart batching): the routine tasks it shows, in display order.

    ``channel_id``/``message_id``/``posted_at`` are ``None`` until the message exists; times
    are Unix seconds.
    """

    batch_id: str
    key: str
    task_ids: tuple[str, ...]
    channel_id: int | None
    message_id: int | None
    created_at: float
    posted_at: float | None


class BatchesMixin(StoreBase):
    """The store's batch methods (see :class:`bot.store.Store`)."""

    async def save_batch(self, batch_id: str, key: str, task_ids: Sequence[str]) -> None:
        """Create the batch row, or replace its item list (ids in display order)."""
        items = json.dumps(list(task_ids))
        now = self._clock()

        def work(conn: Connection) -> None:
            result = conn.execute(
                update(t.batches).where(t.batches.c.batch_id == batch_id).values(task_ids=items)
            )
            if result.rowcount == 0:
                conn.execute(
                    insert(t.batches).values(
                        batch_id=batch_id, key=key, task_ids=items, created_at=now
                    )
                )

        await self.db.write(work, fenced=True)

    async def set_batch_message(self, batch_id: str, channel_id: int, message_id: int) -> None:
        """Record the Discord message of a batch (posted now)."""
        now = self._clock()

        def work(conn: Connection) -> None:
            conn.execute(
                update(t.batches)
                .where(t.batches.c.batch_id == batch_id)
                .values(channel_id=channel_id, message_id=message_id, posted_at=now)
            )

        await self.db.write(work, fenced=True)

    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        """The batch row, or ``None``."""

        def work(conn: Connection) -> BatchRecord | None:
            row = conn.execute(select(t.batches).where(t.batches.c.batch_id == batch_id)).first()
            if row is None:
                return None
            m = row._mapping
            return BatchRecord(
                batch_id=m["batch_id"],
                key=m["key"],
                task_ids=tuple(json.loads(m["task_ids"] or "[]")),
                channel_id=m["channel_id"],
                message_id=m["message_id"],
                created_at=m["created_at"],
                posted_at=m["posted_at"],
            )

        return await self.db.read(work)

    async def batch_by_message(self, message_id: int) -> str | None:
        """The id of the batch whose message is ``message_id``, or ``None``."""

        def work(conn: Connection) -> str | None:
            row = conn.execute(
                select(t.batches.c.batch_id).where(t.batches.c.message_id == message_id)
            ).first()
            return None if row is None else str(row[0])

        return await self.db.read(work)
