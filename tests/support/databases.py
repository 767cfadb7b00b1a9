"""The database engines the tests run on: an SQLite file, and PostgreSQL when configured.

PostgreSQL tests need ``TEST_DATABASE_URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/test``,
a role that may create databases). The session creates one database of its own on that server
(``fbtest_<pid>_<random>``, dropped at the end), and every test gets a fresh **schema** in it:
the URL it is handed carries ``options=-csearch_path=<schema>``, so the store, Alembic and a
bridge subprocess given that URL all work inside that schema. Without ``TEST_DATABASE_URL`` the
PostgreSQL variants skip with :data:`SKIP_REASON`. A test that needs a whole database of its own
(several bridge processes sharing it, say) takes :func:`fresh_postgres_database` instead.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit

import psycopg
import pytest
from psycopg import sql

__all__ = [
    "ENGINES",
    "SKIP_REASON",
    "PostgresServer",
    "check_redis",
    "configured_database_url",
    "fresh_postgres_database",
    "with_search_path",
]

#: The engines a store test runs on.
ENGINES = ("sqlite", "postgresql")

SKIP_REASON = (
    "PostgreSQL variant: set TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test "
    "(a PostgreSQL server whose user may create databases) to run it; .ci/run does"
)


def configured_database_url() -> str | None:
    """``TEST_DATABASE_URL`` or ``None`` when unset or empty."""
    return os.environ.get("TEST_DATABASE_URL") or None


def _libpq(url: str) -> str:
    """A URL psycopg accepts (no SQLAlchemy ``+driver``; ``postgres://`` is fine)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+')[0]}://{rest}"


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` (libpq ``options=-csearch_path=…``)."""
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options={quote(f'-csearch_path={schema}')}"


class PostgresServer:
    """One test session's database on the server of ``TEST_DATABASE_URL``.

    Raises ``psycopg.OperationalError`` from :meth:`create` when the server cannot be reached.
    """

    def __init__(self, admin_url: str) -> None:
        self.admin_url = _libpq(admin_url)
        self.name = f"fbtest_{os.getpid()}_{secrets.token_hex(3)}"
        parts = urlsplit(self.admin_url)
        self.url = parts._replace(path=f"/{self.name}").geturl()
        self._schemas = 0

    def create(self) -> None:
        """Create the session's database."""
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))

    def drop(self) -> None:
        """Drop the session's database (closing whatever is still connected to it)."""
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )

    def fresh_schema(self) -> tuple[str, str]:
        """A new empty schema: ``(name, URL whose connections use it)``."""
        self._schemas += 1
        schema = f"t{self._schemas}"
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        return schema, with_search_path(self.url, schema)

    def drop_schema(self, schema: str) -> None:
        """Drop ``schema`` and everything in it."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET lock_timeout = '5s'")
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """Create the database ``<prefix>_<random hex>`` on the server of ``TEST_DATABASE_URL``,
    yield its SQLAlchemy URL (``postgresql+psycopg://…``), and drop it afterwards.

    Skips the test with :data:`SKIP_REASON` when ``TEST_DATABASE_URL`` is unset.
    """
    configured = configured_database_url()
    if configured is None:
        pytest.skip(SKIP_REASON)
    admin = _libpq(configured)
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        own = urlsplit(admin)._replace(path=f"/{name}").geturl()
        yield "postgresql+psycopg://" + own.split("://", 1)[1]
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def check_postgres(url: str) -> str | None:
    """``None`` when the server of ``url`` answers, else why not."""
    try:
        with psycopg.connect(_libpq(url), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def check_redis(url: str) -> str | None:
    """``None`` when the Redis server of ``url`` answers ``PING``, else why not."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 5) as s:
            s.sendall(b"PING\r\n")
            answer = s.recv(64)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    if not answer.startswith((b"+PONG", b"-NOAUTH")):
        return f"unexpected answer to PING: {answer!r}"
    return None
