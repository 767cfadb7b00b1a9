"""``factory-bridge audit``: only reads (any build's database), shows the newest entries and says
what it left out, and answers bad input or a database it cannot reach with one clear line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, insert, text

from bot.cli import main
from bot.store import tables as t
from bot.store.database import sync_url
from bot.store.migrate import SCRIPT_LOCATION, current_revision, head_revision

REQUIRED = {
    "DISCORD_BOT_TOKEN": "bot-token",
    "DISCORD_GUILD_ID": "1",
    "DISCORD_TASKS_CHANNEL_ID": "2",
    "FACTORY_API_KEY": "factory-key",
    "FACTORY_WEBHOOK_SECRET": "hook-secret",
}


@pytest.fixture(autouse=True)
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DISCORD_", "FACTORY_", "BRIDGE_", "TWILIO_", "DATABASE_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)


def _run_sql(url: str, *statements: str) -> None:
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def _migrate_to(url: str, revision: str) -> None:
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(SCRIPT_LOCATION))
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return current_revision(conn)
    finally:
        engine.dispose()


def _add_entries(url: str, count: int, task_id: str = "t-x") -> None:
    rows = [
        {
            "at": 1_790_000_000.0 + i,
            "actor_name": "bridge",
            "via": "system",
            "action": "task.approved",
            "task_id": task_id,
            "outcome": "ok",
            "detail": f"entry {i}",
        }
        for i in range(count)
    ]
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(insert(t.audit), rows)
    finally:
        engine.dispose()


def _details(out: str) -> list[str]:
    return [line.rsplit("ok", 1)[1].strip() for line in out.splitlines() if "task=" in line]


def test_audit_reads_an_older_database_without_migrating_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _migrate_to(database_url, "0002")
    _add_entries(database_url, 3)
    monkeypatch.setenv("DATABASE_URL", database_url)

    assert main(["audit"]) == 0
    out, err = capsys.readouterr()
    assert _details(out) == ["entry 0", "entry 1", "entry 2"]
    assert "the database is at revision 0002" in err and "factory-bridge db upgrade" in err
    assert _revision(database_url) == "0002"  # it was not migrated


def test_audit_reads_the_database_of_a_newer_build(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _migrate_to(database_url, head_revision())
    _add_entries(database_url, 2)
    _run_sql(
        database_url,
        "UPDATE alembic_version SET version_num = '0099'",
        "ALTER TABLE audit ADD COLUMN tenant VARCHAR(20)",  # what a newer build may have done
        "ALTER TABLE audit DROP COLUMN batch_id",
    )
    monkeypatch.setenv("DATABASE_URL", database_url)

    assert main(["audit", "--task", "t-x"]) == 0
    out, err = capsys.readouterr()
    assert _details(out) == ["entry 0", "entry 1"]
    assert "revision 0099" in err and "a newer build migrated it" in err
    assert "Traceback" not in err
    assert _revision(database_url) == "0099"


def test_audit_says_why_it_cannot_read_a_trail_without_the_columns_it_needs(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _migrate_to(database_url, head_revision())
    _run_sql(
        database_url,
        "UPDATE alembic_version SET version_num = '0099'",
        "ALTER TABLE audit RENAME COLUMN actor_name TO actor",
    )
    monkeypatch.setenv("DATABASE_URL", database_url)

    assert main(["audit"]) == 1
    err = capsys.readouterr().err
    [line] = err.strip().splitlines()
    assert line.startswith("factory-bridge: cannot read the audit trail of ")
    assert line.endswith(
        "its audit table has no column actor_name: "
        "read it with the factory-bridge build that migrated it"
    )


def test_audit_shows_the_newest_entries_and_says_how_many_it_left_out(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _migrate_to(database_url, head_revision())
    _add_entries(database_url, 1005)
    monkeypatch.setenv("DATABASE_URL", database_url)

    assert main(["audit", "--task", "t-x"]) == 0
    out, err = capsys.readouterr()
    assert _details(out) == [f"entry {i}" for i in range(5, 1005)]  # newest 1000, oldest first
    assert "5 earlier entries left out" in err and "--limit 1005" in err and "--since" in err

    assert main(["audit", "--limit", "3"]) == 0
    out, err = capsys.readouterr()
    assert _details(out) == ["entry 1002", "entry 1003", "entry 1004"]
    assert "1002 earlier entries left out" in err

    assert main(["audit", "--limit", "1005"]) == 0
    out, err = capsys.readouterr()
    assert len(_details(out)) == 1005 and "left out" not in err


@pytest.mark.parametrize("limit", ["-1", "0", "ten"])
def test_audit_refuses_a_limit_below_one(limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["audit", "--limit", limit])
    assert exited.value.code == 2
    assert f"argument --limit: expected a whole number from 1 to 2147483647, got '{limit}'" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("since", ["99999999999d", "1000000d"])
def test_audit_refuses_a_since_too_far_back(
    since: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bridge.db'}")
    assert main(["audit", "--since", since]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip()
        == f"--since: {since!r} reaches back before the year 1: give a shorter span or a date"
    )


def test_audit_says_in_one_line_that_the_database_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "DATABASE_URL", "postgresql://bridge:s3cret@127.0.0.1:1/bridge?sslpassword=S3cretPW"
    )
    assert main(["audit"]) == 1
    out, err = capsys.readouterr()
    [line] = err.strip().splitlines()
    assert line.startswith(
        "factory-bridge: database postgresql://bridge:***@127.0.0.1:1/bridge?sslpassword=***: "
    )
    assert "Connection refused" in line or "connection failed" in line
    assert "s3cret" not in out + err and "S3cretPW" not in out + err


def test_audit_does_not_create_a_missing_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data" / "bridge.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    assert main(["audit"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"factory-bridge: database sqlite:///{path}: there is no file {path}"
    )
    assert not path.exists() and not path.parent.exists()


def test_audit_of_head_database_prints_no_note(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _migrate_to(database_url, head_revision())
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["audit"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "no audit entries" and err == ""
