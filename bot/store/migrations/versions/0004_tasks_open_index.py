"""An index of the open tasks: the rows with no decision.

Every read of the open tasks (the ladder's rebuild a page at a time, the open-task counts of
``/metrics``, the tasks an SMS reply may be about, reconciliation) filtered ``decision IS NULL``
over the whole table, decided tasks included, which are never pruned: 85 ms per ``/metrics``
scrape at 200,000 tasks, growing by the week. A partial index on ``task_id`` of the open rows
makes them cost what is open (SQLite and PostgreSQL both have partial indexes).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``ix_tasks_open`` (skipped when it exists)."""
    indexes = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("tasks")}
    if "ix_tasks_open" not in indexes:
        op.create_index(
            "ix_tasks_open",
            "tasks",
            ["task_id"],
            sqlite_where=sa.text("decision IS NULL"),
            postgresql_where=sa.text("decision IS NULL"),
        )


def downgrade() -> None:
    """Drop ``ix_tasks_open``."""
    op.drop_index("ix_tasks_open", table_name="tasks")
