"""A fresh PostgreSQL database per test, dropped afterwards (issue 15's replica tests).

The server is ``TEST_DATABASE_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``,
the test machines' and CI's server: user ``postgres``, trust auth). A test that needs it is
skipped, with the way to run it, when no server answers.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import make_url

__all__ = ["DEFAULT_TEST_DATABASE_URL", "fresh_postgres_database"]

DEFAULT_TEST_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    return url


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """Create the database ``<prefix>_<random hex>``, yield its SQLAlchemy URL, drop it.

    Skips the test (``pytest.skip``) when the server cannot be reached, saying how to run it.
    """
    import psycopg

    server = make_url(_server_url())
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(
            f"no PostgreSQL server at {server.host}:{server.port} ({exc}); start one, or set "
            "TEST_DATABASE_URL=postgresql://user@host:port/db, to run this test"
        )
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
