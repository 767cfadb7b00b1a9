"""The port a bridge is told to bind is one no outgoing connection can take meanwhile."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sandbox import world
from sandbox.world import free_port


def test_free_port_is_below_the_ephemeral_range_and_bindable() -> None:
    low, _high = world._ephemeral_range()
    port = free_port()
    assert 1024 <= port < low
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))  # still free: raises if not


def test_free_port_skips_a_port_someone_listens_on(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        # Two candidates, the busy port and the next: 20 blind draws would hit it.
        monkeypatch.setattr(world, "_ephemeral_range", lambda: (busy + 2, 60999))
        monkeypatch.setattr(world, "_WINDOW", 2)
        ports = {free_port() for _ in range(20)}
    assert busy not in ports


def test_free_port_without_a_readable_range_uses_linux_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(world, "Path", lambda _p: tmp_path / "missing")
    assert world._ephemeral_range() == (32768, 60999)
