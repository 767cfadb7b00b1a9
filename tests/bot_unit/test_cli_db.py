"""``factory-bridge db upgrade`` and ``db current`` on each engine, with only DATABASE_URL set;
no command prints a password of DATABASE_URL (in its user part or its query)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, make_url, text

from bot.cli import main
from bot.store.database import sync_url
from bot.store.migrate import SCRIPT_LOCATION, head_revision


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

    if database_url.startswith("sqlite"):  # `db current` creates no file; `db upgrade` does
        missing = Path(str(make_url(database_url).database))
        assert main(["db", "current"]) == 1
        assert capsys.readouterr().err.strip().endswith(f"there is no file {missing}")
        missing.touch()
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


def test_db_current_says_when_a_newer_build_migrated_the_database(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    migrated_by_a_newer_build(database_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)  # no .env file here

    assert main(["db", "current"]) == 4
    assert capsys.readouterr().out.strip() == (
        f"0099 (ahead: this build's newest is {head_revision()}; "
        "a newer build migrated this database: upgrade this bridge)"
    )


def test_db_current_on_another_alembic_application_says_so_not_ahead(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A revision not named like the bridge's was reported as "ahead: upgrade this bridge"."""
    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE alembic_version (version_num varchar(32))"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('3f2a9c1b7d4e')"))
    finally:
        engine.dispose()
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)  # no .env file here

    for db_command in ("current", "upgrade"):
        assert main(["db", db_command]) == 1
        out, err = capsys.readouterr()
        assert out == "" and "ahead" not in err and "newer build" not in err
        assert "'3f2a9c1b7d4e', which is not the bridge's" in err
        assert err.strip().endswith("use a database or schema of its own")


def test_db_on_a_database_with_another_applications_audit_table_refuses_it(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE audit (id integer, username text, event text)"))
    finally:
        engine.dispose()
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)  # no .env file here

    for db_command in ("current", "upgrade", "current"):
        assert main(["db", db_command]) == 1, db_command
        err = capsys.readouterr().err
        assert "DATABASE_URL holds tables named audit that are not the bridge's" in err


def test_db_current_on_a_missing_sqlite_file_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped path: ``db current`` made its directories and an empty database, then
    said "behind"."""
    path = tmp_path / "typo" / "bridge.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.chdir(tmp_path)  # no .env file here
    assert main(["db", "current"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == f"factory-bridge: database sqlite:///{path}: there is no file {path}"
    assert not (tmp_path / "typo").exists()


SECRET_PARAMETERS = ["password", "PASSWORD", "sslpassword", "passwd", "pwd", "token", "Secret"]


@pytest.mark.parametrize("key", SECRET_PARAMETERS)
@pytest.mark.parametrize("command", ["current", "upgrade"])
def test_db_never_prints_a_password_given_as_a_query_parameter(
    key: str, command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "DATABASE_URL", f"postgresql://bridge@127.0.0.1:1/bridge?{key}=S3cretPW&sslmode=disable"
    )
    assert main(["db", command]) == 1
    out, err = capsys.readouterr()
    assert "S3cretPW" not in out + err
    [line] = err.strip().splitlines()
    assert line.startswith("factory-bridge: database postgresql://bridge@127.0.0.1:1/bridge?")
    assert f"{key}=***" in line and "sslmode=disable" in line


@pytest.mark.parametrize("key", SECRET_PARAMETERS)
def test_check_config_never_prints_a_password_given_as_a_query_parameter(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith(("DISCORD_", "FACTORY_", "BRIDGE_", "TWILIO_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env file here
    for name, value in {
        "DISCORD_BOT_TOKEN": "bot-token",
        "DISCORD_GUILD_ID": "1",
        "DISCORD_TASKS_CHANNEL_ID": "2",
        "FACTORY_API_KEY": "factory-key",
        "FACTORY_WEBHOOK_SECRET": "hook-secret",
        "DATABASE_URL": f"postgresql://bridge:s3cret@db.example.com/bridge?{key}=S3cretPW",
    }.items():
        monkeypatch.setenv(name, value)

    assert main(["check-config"]) == 0
    out, err = capsys.readouterr()
    assert f"database postgresql://bridge:***@db.example.com/bridge?{key}=***" in out
    assert "S3cretPW" not in out + err and "s3cret" not in out + err


def test_check_config_never_prints_short_credentials_of_the_factory_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: the URLs ``check-config`` prints show no credentials, however short (``u:p``
    is under the four characters log redaction masks)."""
    for name in list(os.environ):
        if name.startswith(("DISCORD_", "FACTORY_", "BRIDGE_", "TWILIO_", "DATABASE_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env file here
    for name, value in {
        "DISCORD_BOT_TOKEN": "bot-token",
        "DISCORD_GUILD_ID": "1",
        "DISCORD_TASKS_CHANNEL_ID": "2",
        "FACTORY_API_KEY": "factory-key",
        "FACTORY_WEBHOOK_SECRET": "hook-secret",
        "FACTORY_API_URL": "https://u:p@f.example.com/v1",
    }.items():
        monkeypatch.setenv(name, value)

    assert main(["check-config"]) == 0
    out, err = capsys.readouterr()
    assert "factory https://[redacted]@f.example.com/v1" in out
    assert "u:p@" not in out + err


def test_run_on_a_database_a_newer_build_migrated_says_so_without_a_traceback(
    tmp_path: Path,
) -> None:
    from tests.bot_unit.test_settings import REQUIRED, run_cli

    url = f"sqlite:///{tmp_path / 'newer.db'}"
    migrated_by_a_newer_build(url)
    result = run_cli("run", env={**REQUIRED, "DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 2
    assert "0099" in result.stderr and "Traceback" not in result.stderr


def migrated_by_a_newer_build(url: str) -> None:
    """The database at ``url`` migrated to head, then to a revision this build does not know
    (``0099``), as a newer build would leave it."""
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(SCRIPT_LOCATION))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    finally:
        engine.dispose()
