"""Fixtures every test directory shares: the database engines (SQLite and PostgreSQL).

A test (or fixture) that asks for ``database_url`` runs once per engine in
:data:`tests.support.databases.ENGINES`: on a fresh SQLite file, and on a fresh PostgreSQL
schema when ``TEST_DATABASE_URL`` is set (skipped with a reason otherwise). End-to-end tests
are slower, so under ``tests/e2e`` only modules or tests marked ``both_engines`` get the
PostgreSQL variant; the others run on SQLite.

With ``CI=true`` (``.ci/run``) a missing or unreachable ``TEST_DATABASE_URL`` or
``TEST_REDIS_URL`` stops the run with an error instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import (
    ENGINES,
    SKIP_REASON,
    PostgresServer,
    check_postgres,
    check_redis,
    configured_database_url,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_engines: an end-to-end test that also runs on PostgreSQL"
    )
    if os.environ.get("CI") != "true":
        return
    problems = []
    for name, check in (("TEST_DATABASE_URL", check_postgres), ("TEST_REDIS_URL", check_redis)):
        url = os.environ.get(name)
        if not url:
            problems.append(f"{name} is not set")
        elif (why := check(url)) is not None:
            problems.append(f"{name}={url.split('@')[-1]} cannot be reached: {why}")
    if problems:
        raise pytest.UsageError("CI=true needs its servers: " + "; ".join(problems))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_engine" not in metafunc.fixturenames:
        return
    e2e = Path(str(metafunc.definition.path)).parent.name == "e2e"
    engines = (
        ENGINES
        if not e2e or metafunc.definition.get_closest_marker("both_engines")
        else ("sqlite",)
    )
    metafunc.parametrize("db_engine", engines, indirect=True)


@pytest.fixture
def db_engine(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgresql`` (parametrized by ``pytest_generate_tests``)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | None]:
    """This session's database on the ``TEST_DATABASE_URL`` server (``None`` when unset)."""
    url = configured_database_url()
    if url is None:
        yield None
        return
    server = PostgresServer(url)
    server.create()
    try:
        yield server
    finally:
        server.drop()


@pytest.fixture
def database_url(db_engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL of an empty database for this test: an SQLite file or a fresh PostgreSQL schema."""
    if db_engine == "sqlite":
        yield f"sqlite:///{tmp_path / 'bridge.db'}"
        return
    server: PostgresServer | None = request.getfixturevalue("postgres_server")
    if server is None:
        pytest.skip(SKIP_REASON)
    schema, url = server.fresh_schema()
    yield url
    server.drop_schema(schema)
