"""The leader lease: bridges sharing one database elect one leader (README, "Production").

One row per lease name (``bridge``) with the fencing token every leader-only write checks
(:mod:`bot.leadership.lease`). A new table only: nothing existing changes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``leader_lease`` (kept when a build without migrations already made it: such
    a database is adopted at the baseline, then upgraded)."""
    if sa.inspect(op.get_bind()).has_table("leader_lease"):
        return
    op.create_table(
        "leader_lease",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("renewed_at", sa.Float(), nullable=False),
        sa.Column("lease_seconds", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    """Drop ``leader_lease`` (a running leader loses its lease)."""
    op.drop_table("leader_lease")
