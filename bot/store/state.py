"""Runtime state (small JSON documents by key) and the database's health checks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from . import tables as t
from .base import StoreBase

__all__ = ["HEALTH_KEY", "StateMixin"]

#: ``runtime_state`` key of the heartbeat :meth:`Store.check_write` writes.
HEALTH_KEY = "healthz"


class StateMixin(StoreBase):
    """The store's runtime-state and health methods (see :class:`bot.store.Store`)."""

    async def ping(self) -> bool:
        """True when the database answers a trivial query (used by ``/healthz``)."""

        def work(conn: Connection) -> None:
            conn.execute(select(1)).all()

        try:
            await self.db.read(work)
            return True
        except Exception:
            return False

    async def check_write(self, *, timeout_seconds: float = 5.0) -> str | None:
        """Write a heartbeat through the writer thread (used by ``/healthz``).

        A database that answers reads can still refuse every write (disk full, a read-only
        file or mount): this commits one tiny row (``runtime_state`` key ``healthz``) the way
        every other write goes.

        Returns
        -------
        str or None
            ``None`` when the write committed within ``timeout_seconds``; otherwise why not,
            in a few words (the driver's message, e.g. ``database or disk is full``).
        """
        try:
            await asyncio.wait_for(
                self.save_state(HEALTH_KEY, {"at": self._clock()}), timeout_seconds
            )
        except TimeoutError:
            return f"no write committed within {timeout_seconds:g}s"
        except Exception as exc:
            inner = getattr(exc, "orig", None) or exc
            lines = str(inner).strip().splitlines()
            return (lines[0] if lines else type(inner).__name__)[:200]
        return None

    async def load_state(self, key: str) -> dict[str, Any] | None:
        """The JSON document saved under ``key`` (e.g. ``"batcher"``), or ``None``."""

        def work(conn: Connection) -> str | None:
            return conn.execute(
                select(t.runtime_state.c.value).where(t.runtime_state.c.key == key)
            ).scalar_one_or_none()

        text = await self.db.read(work)
        return None if text is None else dict(json.loads(text))

    async def save_state(self, key: str, value: dict[str, Any], *, fenced: bool = False) -> None:
        """Save (insert or replace) a JSON document under ``key``; ``fenced``: only while this
        process leads (:meth:`bot.store.database.Database.write`, raises ``NotLeader``)."""
        text = json.dumps(value)
        now = self._clock()

        def work(conn: Connection) -> None:
            result = conn.execute(
                update(t.runtime_state)
                .where(t.runtime_state.c.key == key)
                .values(value=text, updated_at=now)
            )
            if result.rowcount == 0:
                conn.execute(insert(t.runtime_state).values(key=key, value=text, updated_at=now))

        await self.db.write(work, fenced=fenced)
