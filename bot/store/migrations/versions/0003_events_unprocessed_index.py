"""The event queue's index: unprocessed events in arrival order.

The processor reads the events not processed yet oldest first (``WHERE processed_at IS NULL
ORDER BY received_at, event_id LIMIT n``). With an index on ``processed_at`` alone every read
sorted all the unprocessed events (thousands while an intake is busy); an index on
``(processed_at, received_at, event_id)`` gives them in order. It replaces
``ix_events_processed_at`` (whose queries it serves too).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Replace ``ix_events_processed_at`` by ``ix_events_unprocessed`` (each step skipped when
    already done: a database adopted at the baseline may have been made with either index)."""
    indexes = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("events")}
    if "ix_events_unprocessed" not in indexes:
        op.create_index(
            "ix_events_unprocessed", "events", ["processed_at", "received_at", "event_id"]
        )
    if "ix_events_processed_at" in indexes:
        op.drop_index("ix_events_processed_at", table_name="events")


def downgrade() -> None:
    """Back to the index on ``processed_at`` alone."""
    op.create_index("ix_events_processed_at", "events", ["processed_at"])
    op.drop_index("ix_events_unprocessed", table_name="events")
