"""``factory-bridge run`` runs on uvloop when it is installed, on asyncio's loop otherwise."""

from __future__ import annotations

import sys

import pytest

from bot.cli import _loop_factory


def test_the_service_loop_is_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    factory = _loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
        assert loop.run_until_complete(_answer()) == 42
    finally:
        loop.close()


def test_without_uvloop_asyncio_s_loop_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop → ImportError
    assert _loop_factory() is None


async def _answer() -> int:
    return 42
