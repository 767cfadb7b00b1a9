"""Several bridges on one database: the leader lease, the leader/standby loop, the SQLite lock.

See :mod:`bot.leadership.lease` (lease row, fencing token), :mod:`bot.leadership.role`
(:class:`Leadership`) and :mod:`bot.leadership.file_lock` (one process per SQLite file).
"""

from bot.leadership.file_lock import DatabaseInUse, SQLiteFileLock
from bot.leadership.lease import (
    LEASE_NAME,
    Lease,
    LeaseView,
    NotLeader,
    holder_dead_here,
    holder_id,
)
from bot.leadership.role import Leadership, Role

__all__ = [
    "LEASE_NAME",
    "DatabaseInUse",
    "Leadership",
    "Lease",
    "LeaseView",
    "NotLeader",
    "Role",
    "SQLiteFileLock",
    "holder_dead_here",
    "holder_id",
]
