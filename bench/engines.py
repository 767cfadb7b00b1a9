"""The store engine a benchmark runs on: SQLite (a file per run) or PostgreSQL (a database per run).

``python -m bench --engine sqlite|postgres|both`` picks the engines; PostgreSQL needs
``BENCH_DATABASE_URL`` (e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/bench``): its server
and credentials are used, and every run creates a fresh database named ``bench_<hex>`` there
(plain ``CREATE DATABASE`` / ``DROP DATABASE … WITH (FORCE)``), which the bridge process gets as
``DATABASE_URL``. The database named in ``BENCH_DATABASE_URL`` itself is never written to.

The runner sets the engine with :func:`use_engine` before each benchmark's runs; a benchmark
asks :func:`store_url` for the URL of its run and :func:`query` to read the store.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

__all__ = [
    "ENGINES",
    "current_engine",
    "default_engines",
    "query",
    "store_url",
    "use_engine",
]

ENGINES = ("sqlite", "postgres")
#: Environment variable naming the PostgreSQL server to create the per-run databases on.
DATABASE_URL_VARIABLE = "BENCH_DATABASE_URL"

_current = "sqlite"


def default_engines() -> list[str]:
    """Both engines when ``BENCH_DATABASE_URL`` is set, else SQLite only."""
    return list(ENGINES) if os.environ.get(DATABASE_URL_VARIABLE) else ["sqlite"]


def use_engine(name: str) -> None:
    """Make ``name`` (one of :data:`ENGINES`) the engine of the following runs.

    Raises ``ValueError`` for another name, and for ``postgres`` without ``BENCH_DATABASE_URL``.
    """
    global _current
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    if name == "postgres" and not os.environ.get(DATABASE_URL_VARIABLE):
        raise ValueError(f"the postgres engine needs {DATABASE_URL_VARIABLE}")
    _current = name


def current_engine() -> str:
    """The engine of the runs now (``sqlite`` or ``postgres``)."""
    return _current


def _admin_url() -> Any:
    """BENCH_DATABASE_URL pointed at the maintenance database ``postgres``."""
    return make_url(os.environ[DATABASE_URL_VARIABLE]).set(database="postgres")


@contextmanager
def store_url(sqlite_file: Path) -> Iterator[str]:
    """The ``DATABASE_URL`` of one run: ``sqlite:///<sqlite_file>`` on SQLite; on PostgreSQL a
    fresh database, dropped (with any connection left) when the block ends."""
    if _current == "sqlite":
        url = f"sqlite:///{sqlite_file}"
        try:
            yield url
        finally:
            _forget(url)
        return
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        fresh = make_url(os.environ[DATABASE_URL_VARIABLE]).set(database=name)
        rendered = fresh.render_as_string(hide_password=False)
        try:
            yield rendered
        finally:
            _forget(rendered)
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


_readers: dict[str, Engine] = {}


def query(url: str, sql: str, params: dict[str, Any] | None = None) -> Sequence[tuple[Any, ...]]:
    """Rows of one read-only statement on the store at ``url`` (either engine); the engine is
    kept for the next query until the run's :func:`store_url` block ends."""
    engine = _readers.get(url)
    if engine is None:
        engine = _readers[url] = create_engine(url)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), params or {})]


def _forget(url: str) -> None:
    engine = _readers.pop(url, None)
    if engine is not None:
        engine.dispose()
