"""``factory-bridge db upgrade`` and ``db current`` on each engine, with only DATABASE_URL set."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.store.migrate import head_revision


def test_db_current_then_upgrade_then_current(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("DISCORD_BOT_TOKEN", "FACTORY_API_KEY", "FACTORY_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)  # a migration job needs no secrets
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)  # no .env file here

    assert main(["db", "current"]) == 3
    assert capsys.readouterr().out.strip() == f"none (behind: head is {head_revision()})"

    assert main(["db", "upgrade"]) == 0
    assert f"upgraded from nothing to {head_revision()}" in capsys.readouterr().out

    assert main(["db", "upgrade"]) == 0
    assert f"already at {head_revision()}" in capsys.readouterr().out

    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.strip() == f"{head_revision()} (head)"


def test_db_upgrade_says_why_when_the_database_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://bridge:s3cret@127.0.0.1:1/bridge")
    assert main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert "127.0.0.1:1/bridge" in err and "s3cret" not in err
