"""One bridge process per SQLite file: an exclusive ``flock`` on ``<database file>.lock``.

SQLite has no way for two processes to agree on a leader that survives one of them pausing,
so a second ``factory-bridge run`` on the same file refuses to start with a clear message
(README "Production") instead of silently racing the first. The lock is held by the open file for the
life of the process and the kernel drops it when the process dies (even by ``kill -9``), so a
crash never leaves a stale lock behind. Several bridges need PostgreSQL.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["DatabaseInUse", "SQLiteFileLock"]


class DatabaseInUse(RuntimeError):
    """Another process holds the SQLite file's lock; the message says which and what to do."""


class SQLiteFileLock:
    """The exclusive lock of one SQLite database file.

    Parameters
    ----------
    database:
        Path of the SQLite file; the lock file is the same path with ``.lock`` appended.
    """

    def __init__(self, database: str | Path) -> None:
        self.database = Path(database)
        self.path = Path(f"{database}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock at once or fail; writes this process's pid into the lock file.

        Raises
        ------
        DatabaseInUse
            When another process holds it (``fcntl.flock`` ``LOCK_EX | LOCK_NB`` refused).
        """
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DatabaseInUse(
                f"another factory-bridge process (pid {other}) is using the SQLite database "
                f"{self.database} (lock file {self.path}). SQLite serves one bridge process; "
                "to run a leader and standbys, point every bridge at the same PostgreSQL "
                "DATABASE_URL (README, 'Production')."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the lock file stays; it is reused)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
