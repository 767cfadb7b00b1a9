"""The database side of ``factory-bridge``: ``audit``, ``db upgrade``, ``db current``, and how
the command line shows a database URL or a database error (never a password).

Exit codes (README "Commands"): 0 done; 1 the database cannot be reached or read, belongs to
another application (``bot.store.migrate.refuse_foreign_database``), or is an SQLite file that
does not exist (``audit``, ``db current``; one line on stderr saying why); 2 bad input
(``--since``, ``--limit``) or configuration; ``db current``: 3 when the database is behind this
build's newest revision, 4 when it is ahead of it (a newer build migrated it: upgrade this
bridge).

``audit`` only reads: it never migrates, so it can be pointed at the database of an older or a
newer build (it says so on stderr and shows what this build can read of the trail).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta

__all__ = [
    "EXIT_AHEAD",
    "EXIT_BEHIND",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "SECRET_QUERY_KEYS",
    "db_error_line",
    "parse_since",
    "positive_limit",
    "run_audit",
    "run_db",
    "safe_db_url",
]

#: The database cannot be reached or read.
EXIT_UNREACHABLE = 1
#: Bad input or configuration.
EXIT_USAGE = 2
#: ``db current``: the database is at an older revision than this build's newest.
EXIT_BEHIND = 3
#: ``db current``: the database is at a revision this build does not know (a newer build's).
EXIT_AHEAD = 4

#: Query parameters of a database URL whose values are masked when shown (case-insensitive,
#: also as part of a longer name: ``sslpassword``, ``access_token``).
SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "token", "secret")

#: The largest ``--limit`` (PostgreSQL's ``LIMIT`` takes an ``INTEGER``).
_MAX_LIMIT = 2**31 - 1


def _is_secret_key(key: str) -> bool:
    return any(word in key.casefold() for word in SECRET_QUERY_KEYS)


def safe_db_url(url: str) -> str:
    """``url`` as the command line shows it: password and password-like query values as ``***``.

    Parameters
    ----------
    url:
        A database URL (``DATABASE_URL``).

    Returns
    -------
    str
        SQLAlchemy's ``make_url(url).render_as_string(hide_password=True)`` with the values of
        the query parameters named in :data:`SECRET_QUERY_KEYS` replaced by ``***``; for a URL
        SQLAlchemy cannot parse, only its scheme.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return f"{url.split('://', 1)[0]}://… (not a valid URL, not shown)"
    masked = {
        key: "***" if isinstance(value, str) else ["***"] * len(value)
        for key, value in parsed.query.items()
        if _is_secret_key(key)
    }
    rendered = parsed.update_query_dict(masked).render_as_string(hide_password=True)
    return rendered.replace("%2A%2A%2A", "***")  # the query value rendered URL-quoted


def _secret_values(url: str) -> list[str]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return []
    values = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if _is_secret_key(key):
            values.extend([value] if isinstance(value, str) else value)
    return [str(v) for v in values if v]


def db_error_line(exc: BaseException, url: str) -> str:
    """One line saying why a database operation failed: the driver's message without
    SQLAlchemy's SQL and background link, any secret of ``url`` replaced by ``***``."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc)
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith(("[SQL", "[parameters", "(Background"))
    ]
    line = " ".join(lines) or type(exc).__name__
    for secret in _secret_values(url):
        line = line.replace(secret, "***")
    return line


def parse_since(text: str) -> datetime:
    """``2h``, ``30m``, ``7d``, ``45s`` ago, or an ISO 8601 date (UTC when it names no zone).

    Raises
    ------
    ValueError
        With the message to show, for anything else or a span reaching before the year 1.
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units and text[:-1].isdigit():
            return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
        value = datetime.fromisoformat(text)
    except OverflowError:
        raise ValueError(
            f"--since: {text!r} reaches back before the year 1: give a shorter span or a date"
        ) from None
    except ValueError:
        raise ValueError(
            f"--since: expected e.g. 2h, 30m, 7d or an ISO date, got {text!r}"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def positive_limit(text: str) -> int:
    """``--limit``'s argparse type: a whole number from 1 to 2,147,483,647.

    Raises
    ------
    argparse.ArgumentTypeError
        For anything else (argparse then exits 2 with the message).
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= _MAX_LIMIT:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {_MAX_LIMIT}, got {text!r}"
        )
    return value


def _missing_sqlite_file(url: str) -> str | None:
    """The path of an SQLite file ``url`` names that does not exist, else ``None``."""
    from pathlib import Path

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = str(parsed.database)
    return None if Path(path).exists() else path


def run_audit(url: str, *, task: str | None, since: str | None, limit: int) -> int:
    """``factory-bridge audit``: print the newest ``limit`` entries (oldest first) of the
    database at ``url`` without changing it; the exit code (module docstring)."""
    from sqlalchemy.engine import Connection
    from sqlalchemy.exc import SQLAlchemyError

    from bot.store import Store
    from bot.store.audit import AuditPage, AuditUnreadable, read_audit
    from bot.store.migrate import compare_to_head, current_revision, head_revision

    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    where = safe_db_url(url)
    missing = _missing_sqlite_file(url)
    if missing is not None:
        print(f"factory-bridge: database {where}: there is no file {missing}", file=sys.stderr)
        return EXIT_UNREACHABLE

    def work(conn: Connection) -> tuple[str | None, AuditPage]:
        page = read_audit(conn, task_id=task, since=start, limit=limit, tolerant=True)
        return current_revision(conn), page

    async def read() -> tuple[str | None, AuditPage]:
        store = Store(url)  # opened without create_schema: nothing is migrated or written
        try:
            return await store.db.read(work)
        finally:
            await store.close()

    try:
        revision, page = asyncio.run(read())
    except AuditUnreadable as exc:
        print(f"factory-bridge: cannot read the audit trail of {where}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except SQLAlchemyError as exc:
        print(f"factory-bridge: database {where}: {db_error_line(exc, url)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    state = compare_to_head(revision)
    if state != "head":
        how = {
            "behind": "older than this build's, run 'factory-bridge db upgrade' to bring it up",
            "ahead": "which this build does not know: a newer build migrated it",
        }.get(state, "which is not the bridge's: another application's Alembic wrote it")
        print(
            f"note: the database is at revision {revision or 'none'} ({how}; this build's "
            f"newest is {head_revision()}); showing what this build can read of it",
            file=sys.stderr,
        )
    if not page.entries:
        print("no audit entries")
    for e in page.entries:
        print(
            f"{e.at.isoformat(timespec='seconds')}  {e.actor_name:<20} {e.via:<8} "
            f"{e.action:<22} task={e.task_id or '-':<38} {e.outcome:<9} {e.detail or ''}"
        )
    if page.earlier:
        shown = len(page.entries)
        print(
            f"{page.earlier} earlier entries left out: these are the newest {shown}; "
            f"--limit {page.earlier + shown} shows them all, --since a shorter period",
            file=sys.stderr,
        )
    return 0


def run_db(url: str, command: str) -> int:
    """``db upgrade``: apply the migrations (what ``run`` does at start, under the same lock);
    ``db current``: print the database's revision and where it stands against this build's
    newest. The exit code (module docstring)."""
    from sqlalchemy.engine import Connection
    from sqlalchemy.exc import SQLAlchemyError

    from bot.store import Store
    from bot.store.migrate import (
        MigrationError,
        compare_to_head,
        current_revision,
        head_revision,
        refuse_foreign_database,
    )

    where = safe_db_url(url)
    head = head_revision()
    missing = _missing_sqlite_file(url)
    if command == "current" and missing is not None:  # `db upgrade` creates it
        print(f"factory-bridge: database {where}: there is no file {missing}", file=sys.stderr)
        return EXIT_UNREACHABLE

    def read_current(conn: Connection) -> str | None:
        revision = current_revision(conn)
        refuse_foreign_database(conn, revision)  # another application's: MigrationError
        return revision

    async def run() -> int:
        store = Store(url)
        try:
            if command == "upgrade":
                done = await store.create_schema()
                if done.adopted:
                    added = ", ".join(done.added) or "nothing"
                    print(f"adopted a database made before migrations (added {added})")
                if done.before == done.after:
                    print(f"{where}: already at {done.after} (head)")
                else:
                    print(f"{where}: upgraded from {done.before or 'nothing'} to {done.after}")
                return 0
            current = await store.db.read(read_current)
            state = compare_to_head(current)
            if state == "head":
                print(f"{current} (head)")
                return 0
            if state == "behind":
                print(f"{current or 'none'} (behind: head is {head})")
                return EXIT_BEHIND
            print(
                f"{current} (ahead: this build's newest is {head}; a newer build migrated "
                "this database: upgrade this bridge)"
            )
            return EXIT_AHEAD
        except (MigrationError, SQLAlchemyError) as exc:
            print(f"factory-bridge: database {where}: {db_error_line(exc, url)}", file=sys.stderr)
            return EXIT_UNREACHABLE
        finally:
            await store.close()

    return asyncio.run(run())
