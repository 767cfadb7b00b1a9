"""Settings and `factory-bridge check-config`: precise errors, never a secret in the output."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.logs import configure_logging
from bot.settings import Settings, describe_validation_error
from bot.store.database import sync_url
from escalation.models import Priority

REQUIRED = {
    "DISCORD_BOT_TOKEN": "super-secret-token",
    "DISCORD_GUILD_ID": "1",
    "DISCORD_TASKS_CHANNEL_ID": "2",
    "FACTORY_API_KEY": "factory-secret-key",
    "FACTORY_WEBHOOK_SECRET": "hook-secret",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DISCORD_", "FACTORY_", "BRIDGE_", "TWILIO_", "SLA_", "ESCALATION_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_and_derived_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DISCORD_APPROVER_ROLE_IDS", "10, 11")
    settings = Settings()  # type: ignore[call-arg]
    assert settings.factory_api_url == "http://localhost:3100/v1"
    assert settings.discord_api_base_url == "https://discord.com/api/v10"
    assert settings.bridge_http_port == 8080
    assert settings.discord_approver_role_ids == frozenset({10, 11})
    assert settings.alerts_channel_id == 2  # defaults to the tasks channel
    assert settings.database_url == "sqlite:///./data/bridge.db"
    assert "super-secret-token" not in repr(settings)
    policy = settings.escalation_policy()
    assert policy.dm_after_seconds == 1800


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////abs/path.db", "sqlite:////abs/path.db"),
        ("sqlite+aiosqlite:////abs/path.db", "sqlite:////abs/path.db"),
        ("postgresql://u:p@db/bridge", "postgresql+psycopg://u:p@db/bridge"),
        ("postgres://u:p@db/bridge", "postgresql+psycopg://u:p@db/bridge"),
        ("postgresql+asyncpg://u:p@db/bridge", "postgresql+psycopg://u:p@db/bridge"),
        ("postgres+psycopg://u:p@db/bridge", "postgresql+psycopg://u:p@db/bridge"),
        ("postgres+asyncpg://u:p@db/bridge", "postgresql+psycopg://u:p@db/bridge"),
        ("postgresql+psycopg://u:p@db/bridge", "postgresql+psycopg://u:p@db/bridge"),
        ("sqlite+pysqlite:////abs/path.db", "sqlite+pysqlite:////abs/path.db"),
    ],
)
def test_database_url_gets_a_synchronous_driver(url: str, expected: str) -> None:
    assert sync_url(url) == expected


@pytest.mark.parametrize(
    ("url", "use"),
    [
        ("postgresql+psycopg2://u:S3cretPw@db/bridge", "use postgresql:// (psycopg 3)"),
        ("postgres+pg8000://u:S3cretPw@db/bridge", "use postgresql:// (psycopg 3)"),
        ("sqlite+pysqlcipher://:S3cretPw@/bridge.db", "use sqlite://"),
    ],
)
def test_a_database_driver_the_bridge_lacks_is_refused_at_load(
    url: str, use: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """check-config accepted any ``+driver``; ``run`` and ``db`` then died with a traceback."""
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ValidationError) as caught:
        Settings()  # type: ignore[call-arg]
    [line] = describe_validation_error(caught.value)
    assert line.startswith("DATABASE_URL: the driver ") and line.endswith(use)
    assert "S3cretPw" not in line
    for command in (["check-config"], ["db", "current"], ["run"]):
        result = run_cli(*command, env={**REQUIRED, "DATABASE_URL": url}, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        assert "DATABASE_URL: the driver " in result.stderr and use in result.stderr
        assert "Traceback" not in result.stderr and "S3cretPw" not in result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///./bridge.db",
        "sqlite+pysqlite:///./bridge.db",
        "sqlite+aiosqlite:///./bridge.db",
        "postgresql://u:p@db/bridge",
        "postgres://u:p@db/bridge",
        "postgresql+psycopg://u:p@db/bridge",
        "postgres+psycopg://u:p@db/bridge",
        "postgresql+asyncpg://u:p@db/bridge",
    ],
)
def test_the_database_urls_the_bridge_opens_are_accepted(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", url)
    assert Settings().database_url == url  # type: ignore[call-arg]


@pytest.mark.parametrize("name", ["HEARTBEAT_URL", "FACTORY_DASHBOARD_URL"])
def test_heartbeat_and_dashboard_urls_are_http_urls(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unchecked, a scheme-less heartbeat never pinged and Discord refused the Details link."""
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(name, "hc-ping.example.com/0f4e1d2c")
    with pytest.raises(ValidationError) as caught:
        Settings()  # type: ignore[call-arg]
    assert describe_validation_error(caught.value) == [
        f"{name}: expected an http:// or https:// URL"
    ]
    monkeypatch.setenv(name, "https://hc-ping.example.com/0f4e1d2c/")
    settings = Settings()  # type: ignore[call-arg]
    assert getattr(settings, name.lower()) == "https://hc-ping.example.com/0f4e1d2c"
    monkeypatch.setenv(name, "  ")  # empty: unset
    assert getattr(Settings(), name.lower()) is None  # type: ignore[call-arg]


def test_errors_name_the_variable_and_never_echo_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "super-secret-token")
    monkeypatch.setenv("DISCORD_GUILD_ID", "not-a-number")
    monkeypatch.setenv("DISCORD_APPROVER_ROLE_IDS", "12,abc")
    monkeypatch.setenv("QUIET_HOURS_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValidationError) as caught:
        Settings()  # type: ignore[call-arg]
    lines = describe_validation_error(caught.value)
    text = "\n".join(lines)
    assert "FACTORY_API_KEY: required but not set" in lines
    assert "DISCORD_TASKS_CHANNEL_ID: required but not set" in lines
    assert any(line.startswith("DISCORD_GUILD_ID:") for line in lines)
    assert any("DISCORD_APPROVER_ROLE_IDS" in line and "abc" in line for line in lines)
    assert any("QUIET_HOURS_TIMEZONE" in line and "Mars/Olympus" in line for line in lines)
    assert "super-secret-token" not in text


def test_safe_default_can_never_be_approved(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ESCALATION_SAFE_DEFAULT", "approved")
    with pytest.raises(ValidationError) as caught:
        Settings()  # type: ignore[call-arg]
    assert "ESCALATION_SAFE_DEFAULT" in "\n".join(describe_validation_error(caught.value))


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "FACTORY_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_reports_missing_settings_without_secrets(tmp_path: Path) -> None:
    result = run_cli("check-config", env={"DISCORD_BOT_TOKEN": "super-secret-token"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "DISCORD_GUILD_ID: required but not set" in result.stderr
    assert "FACTORY_WEBHOOK_SECRET: required but not set" in result.stderr
    assert "super-secret-token" not in result.stdout + result.stderr


def test_check_config_never_prints_the_credentials_of_the_factory_url(tmp_path: Path) -> None:
    url = "https://bridge:Pr0xyPassw0rd@factory.example.com/v1?api_token=tok_SECRET123"
    ok = run_cli("check-config", env={**REQUIRED, "FACTORY_API_URL": url}, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "factory https://[redacted]@factory.example.com/v1?api_token=[redacted]," in ok.stdout
    assert "Pr0xyPassw0rd" not in ok.stdout + ok.stderr
    assert "tok_SECRET123" not in ok.stdout + ok.stderr


def test_check_config_ok_and_roster_errors(tmp_path: Path) -> None:
    ok = run_cli("check-config", env=REQUIRED, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "configuration OK" in ok.stdout
    assert "DISCORD_APPROVER_ROLE_IDS is empty" in ok.stdout
    roster = tmp_path / "roster.toml"
    roster.write_text('[[operators]]\nname = "Jake"\nphone = "555-1234"\n')
    bad = run_cli("check-config", env={**REQUIRED, "BRIDGE_ROSTER_FILE": str(roster)}, cwd=tmp_path)
    assert bad.returncode == 2
    assert "operator #1" in bad.stderr and "phone" in bad.stderr


DURATIONS = sorted(name.upper() for name in Settings.model_fields if name.endswith("_seconds"))


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1e12", "must be at most 31622400 seconds (366 days)"),
        ("31622401", "must be at most 31622400 seconds (366 days)"),
        ("inf", "Input should be a finite number"),
        ("Infinity", "Input should be a finite number"),
        ("nan", "Input should be a finite number"),
    ],
)
def test_durations_are_finite_and_at_most_366_days(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, problem: str
) -> None:
    for required, setting in REQUIRED.items():
        monkeypatch.setenv(required, setting)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()  # type: ignore[call-arg]
    assert describe_validation_error(caught.value) == [f"{name}: {problem}"]


def test_366_days_is_accepted_everywhere_and_plans_a_ladder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert len(DURATIONS) >= 27  # the parametrized test above covers every one of them
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    for name in DURATIONS:
        monkeypatch.setenv(name, "31622400")
    settings = Settings()  # type: ignore[call-arg]
    policy = settings.escalation_policy()
    created = datetime(2030, 1, 1, tzinfo=UTC)
    assert policy.deadline_for(created, Priority.LOW) == created + timedelta(days=366)
    for name in DURATIONS:  # one second more is refused, whichever it is
        monkeypatch.setenv(name, "31622401")
    with pytest.raises(ValidationError) as caught:
        Settings()  # type: ignore[call-arg]
    assert sorted(describe_validation_error(caught.value)) == [
        f"{name}: must be at most 31622400 seconds (366 days)" for name in DURATIONS
    ]


def test_check_config_refuses_an_unbounded_duration(tmp_path: Path) -> None:
    env = {**REQUIRED, "ESCALATION_DM_AFTER_SECONDS": "1e12", "SLA_HIGH_SECONDS": "inf"}
    bad = run_cli("check-config", env=env, cwd=tmp_path)
    assert bad.returncode == 2
    assert "configuration OK" not in bad.stdout
    assert "ESCALATION_DM_AFTER_SECONDS: must be at most 31622400 seconds (366 days)" in bad.stderr
    assert "SLA_HIGH_SECONDS: Input should be a finite number" in bad.stderr


@pytest.mark.parametrize(
    ("url", "pieces"),
    [
        # a "/" in the password: urllib takes "S3cret" for the port, redis-py refuses the URL
        ("redis://:S3cret/Redis+x@127.0.0.1:6379/0", ("S3cret", "Redis+x")),
        ("rediss://bridge:S3cret/Redis+x@redis.example.com:6380/2", ("S3cret", "Redis+x")),
        # digits before the "/": redis-py would read it as a port of no host (localhost)
        ("redis://:6379/S3cretRedis@redis.example.com:6379/0", ("S3cretRedis",)),
        # ... or as host "bridge", port 1234, the rest a path
        ("redis://bridge:1234/S3cretRedis@redis.example.com:6379/0", ("S3cretRedis",)),
        ("redis://bridge:1234#S3cretRedis@redis.example.com:6379/0", ("S3cretRedis",)),
        ("redis://:S3cretRedis@redis.example.com:port/0", ("S3cretRedis",)),
    ],
)
def test_a_redis_url_redis_py_cannot_read_is_refused_without_quoting_it(
    monkeypatch: pytest.MonkeyPatch, url: str, pieces: tuple[str, ...]
) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FACTORY_REDIS_URL", url)
    with pytest.raises(ValidationError) as caught:
        Settings()  # type: ignore[call-arg]
    lines = describe_validation_error(caught.value)
    assert len(lines) == 1
    assert lines[0].startswith("FACTORY_REDIS_URL: not a valid redis:// or rediss:// URL (")
    assert lines[0].endswith("; percent-encode special characters in the password")
    for piece in (url, *pieces, "redis.example.com", "127.0.0.1"):
        assert piece not in lines[0]


def test_a_percent_encoded_redis_password_is_accepted_and_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FACTORY_REDIS_URL", "redis://:S3cret%2FRedis@redis.example.com:6379/0")
    settings = Settings()  # type: ignore[call-arg]
    assert {"S3cret%2FRedis", "S3cret/Redis"} <= set(settings.secret_values())


def test_check_config_refuses_a_redis_url_with_a_raw_slash_in_the_password(
    tmp_path: Path,
) -> None:
    env = {**REQUIRED, "FACTORY_REDIS_URL": "redis://:S3cret/Redis+x@127.0.0.1:6379/0"}
    bad = run_cli("check-config", env=env, cwd=tmp_path)
    assert bad.returncode == 2
    assert "configuration OK" not in bad.stdout
    assert "FACTORY_REDIS_URL: not a valid redis:// or rediss:// URL" in bad.stderr
    assert "percent-encode special characters in the password" in bad.stderr
    assert "S3cret" not in bad.stdout + bad.stderr
    assert "Redis+x" not in bad.stdout + bad.stderr


def test_the_user_info_and_password_parameters_of_every_url_are_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    # a password the URL parser cannot split out (a "/" not percent-encoded), a percent-encoded
    # one, and secrets in query parameters
    monkeypatch.setenv("DATABASE_URL", "postgresql://bridge:Db-S3cret/Pw@db.example.com/bridge")
    monkeypatch.setenv("FACTORY_REDIS_URL", "redis://:Rd-S3cret%2FPw@redis.example.com:6379/0")
    monkeypatch.setenv("HEARTBEAT_URL", "https://hc.example.com/ping?token=Hb-T0ken-123&x=1")
    monkeypatch.setenv("FACTORY_WS_URL", "wss://factory.example.com/ws?PASSWORD=Ws-Pa55-456")
    monkeypatch.setenv("FACTORY_DASHBOARD_URL", "https://dash-user:Dash-Pa55@dash.example.com/")
    settings = Settings()  # type: ignore[call-arg]
    out = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging("info", fmt="text", secrets=settings.secret_values(), stream=out)
        log = logging.getLogger("bot.test")
        log.info("database %s", settings.database_url)
        log.info("password as a driver quotes it: 'Db-S3cret/Pw', a port: 'Db-S3cret'")
        log.info("redis password decoded: Rd-S3cret/Pw")
        log.info("heartbeat %s, ws %s", settings.heartbeat_url, settings.factory_ws_url)
        log.info("dashboard %s", settings.factory_dashboard_url)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    text = out.getvalue()
    for secret in (
        "bridge:Db-S3cret/Pw",
        "Db-S3cret",
        "Rd-S3cret",
        "Hb-T0ken-123",
        "Ws-Pa55-456",
        "Dash-Pa55",
    ):
        assert secret not in text, secret
    assert "db.example.com/bridge" in text  # the rest of a URL stays readable
    assert "hc.example.com/ping?token=[redacted]&x=1" in text
