"""Planner statistics for the bridge's tables on a PostgreSQL server whose autovacuum is off.

PostgreSQL plans every statement from per-table statistics that ``ANALYZE`` gathers, and its
autovacuum daemon re-gathers them when a table has changed enough. With autovacuum turned off
(some tuned or managed servers do), a table the bridge filled since it started has none, and
the planner guesses: on such a server a 500-id claim of ladder deliveries read all 100,000
pending rows through the ``status`` index (15 ms a statement instead of 4.5 ms), which held
the one writer long enough to make the steps coming due meanwhile half a second late
(bench ``ladders``). See PostgreSQL's documentation, "Updating Planner Statistics" (§25.1.3)
and "The Autovacuum Daemon" (§25.1.6).

So when ``SHOW autovacuum`` says ``off``, the leader applies autovacuum's own rule to its
tables every ``DATABASE_ANALYZE_SECONDS``: a table is analyzed once the rows changed since
its last ``ANALYZE`` exceed ``autovacuum_analyze_threshold`` +
``autovacuum_analyze_scale_factor`` × its rows (the server's settings; per-table storage
parameters are not read). With autovacuum on, or on SQLite, it does nothing.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.engine import Connection

from bot.periodic import Periodic
from bot.store.database import Database
from bot.store.tables import metadata

__all__ = ["PlannerStatistics", "stale_tables"]

log = logging.getLogger(__name__)

#: The bridge's tables in the current schema whose changes since their last ``ANALYZE``
#: exceed autovacuum's threshold, most changed first (PostgreSQL only).
_STALE = text(
    "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
    "WHERE s.schemaname = current_schema() AND s.relname = ANY(:tables) "
    "AND s.n_mod_since_analyze > "
    "current_setting('autovacuum_analyze_threshold')::float8 "
    "+ current_setting('autovacuum_analyze_scale_factor')::float8 * GREATEST(c.reltuples, 0) "
    "ORDER BY s.n_mod_since_analyze DESC"
)


def stale_tables(conn: Connection) -> list[str]:
    """The bridge's tables due for ``ANALYZE`` by autovacuum's rule (see the module docstring).

    ``conn``: a PostgreSQL connection whose ``current_schema()`` holds the bridge's tables.
    """
    return [row[0] for row in conn.execute(_STALE, {"tables": sorted(metadata.tables)})]


class PlannerStatistics:
    """Keeps the planner statistics of the bridge's tables current when autovacuum is off.

    A leader feature (``start``/``stop``, :func:`bot.wiring.attach_features`).

    Parameters
    ----------
    db:
        The bridge's database; on SQLite :meth:`start` does nothing.
    interval_seconds:
        Seconds between two checks (``DATABASE_ANALYZE_SECONDS``); ``0`` turns it off.
    """

    def __init__(self, db: Database, *, interval_seconds: float) -> None:
        self.db = db
        self.interval_seconds = interval_seconds
        self._rounds = Periodic(
            "planner statistics", self.refresh, interval_seconds or 1.0, wait_first=True
        )

    @property
    def running(self) -> bool:
        """True while the rounds run (between :meth:`start` and :meth:`stop`)."""
        return self._rounds.running

    async def autovacuum_off(self) -> bool:
        """Whether the bridge must keep the statistics itself: PostgreSQL with autovacuum off."""
        if self.db.dialect_name != "postgresql":
            return False
        setting = await self.db.read(lambda conn: conn.exec_driver_sql("SHOW autovacuum").scalar())
        return setting != "on"

    async def start(self) -> None:
        """Check the server; when autovacuum is off, log it and start the rounds."""
        if self.interval_seconds <= 0 or not await self.autovacuum_off():
            return
        log.warning(
            "PostgreSQL's autovacuum is off: the bridge analyzes its own tables when they have "
            "changed (every %.0f s, DATABASE_ANALYZE_SECONDS); dead rows are not vacuumed",
            self.interval_seconds,
        )
        self._rounds.start()

    async def stop(self) -> None:
        """Stop the rounds (an ``ANALYZE`` under way finishes on its thread)."""
        await self._rounds.stop()

    async def refresh(self) -> list[str]:
        """Analyze every table due by autovacuum's rule, one at a time; return their names.

        Runs in a thread of its own on a connection of its own: ``ANALYZE`` reads up to
        30,000 rows of a table (0.1–0.2 s for a table of 100,000 events here), and on the
        writer or a reader thread the claims or the reads of the steps and clicks would wait
        for it.
        """
        return await asyncio.to_thread(self._refresh)

    def _refresh(self) -> list[str]:
        quote = self.db.write_engine.dialect.identifier_preparer.quote
        with self.db.write_engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            tables = stale_tables(conn)
            for table in tables:
                conn.exec_driver_sql(f"ANALYZE {quote(table)}")
                log.debug("analyzed %s", table)
        return tables
