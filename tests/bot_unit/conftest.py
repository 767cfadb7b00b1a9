"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.store import Store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A fresh store on each engine (an SQLite file, a PostgreSQL schema), schema created."""
    s = Store(database_url)
    await s.create_schema()
    try:
        yield s
    finally:
        await s.close()
