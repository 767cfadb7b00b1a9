"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store on an SQLite file in the test's temporary directory (schema created)."""
    s = Store(f"sqlite:///{tmp_path / 'bridge.db'}")
    await s.create_schema()
    try:
        yield s
    finally:
        await s.close()
