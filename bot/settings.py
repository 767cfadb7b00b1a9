"""Settings: the only module that reads the environment.

Every setting is an environment variable (or a line of a ``.env`` file in the working directory).
The names are a public interface; README.md documents each with its default. Secrets are
``SecretStr`` so they never appear in ``repr``, logs or error messages.
"""

from __future__ import annotations

import re
import socket
from datetime import time
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from redis.connection import parse_url as parse_redis_url

from bot.logs import parse_log_level, redact, url_secrets
from escalation.models import Priority
from escalation.policy import MAX_REPEATS, EscalationPolicy, QuietHours, SafeDefault

__all__ = ["DatabaseSettings", "Settings", "describe_validation_error", "load_settings"]

RoleIds = Annotated[frozenset[int], NoDecode]
StreamNames = Annotated[tuple[str, ...], NoDecode]
Priorities = Annotated[frozenset[Priority], NoDecode]

#: The ``DATABASE_URL`` schemes the bridge opens: SQLite, and PostgreSQL through psycopg 3
#: (``bot.store.database.sync_url`` maps the async and short forms to the drivers it uses).
DATABASE_SCHEMES = re.compile(
    r"^(sqlite(\+(pysqlite|aiosqlite))?|postgres(ql)?(\+(psycopg|asyncpg))?)://"
)
#: The upper bound of every duration setting, in seconds: 366 days.
MAX_SECONDS = 31_622_400
#: A duration setting in seconds: a finite number of at most :data:`MAX_SECONDS` (366 days),
#: so that no deadline or sleep computed from it overflows ``datetime`` arithmetic; the lower
#: bound (``gt=0`` or ``ge=0``) is set per field.
Seconds = Annotated[float, Field(le=MAX_SECONDS, allow_inf_nan=False)]


def _parse_id_list(value: object) -> object:
    """Turn ``"123, 456"`` (comma-separated Discord ids) into ``{123, 456}``."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        bad = [p for p in parts if not p.isdigit()]
        if bad:
            raise ValueError(f"expected comma-separated numeric role ids, got {', '.join(bad)!r}")
        return frozenset(int(p) for p in parts)
    return value


class Settings(BaseSettings):
    """All settings of the bridge, read from the environment (and ``.env``).

    Raises
    ------
    pydantic.ValidationError
        When a setting is missing or malformed (a duration in seconds that is not finite or is
        over :data:`MAX_SECONDS`, 366 days, too); :func:`describe_validation_error` turns it
        into lines that name the variable and the problem without echoing secret values.
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- Discord (contract §7.3) -------------------------------------------------------------
    discord_bot_token: SecretStr
    discord_guild_id: int
    discord_tasks_channel_id: int
    discord_alerts_channel_id: int | None = None
    discord_deploys_channel_id: int | None = None
    discord_feed_channel_id: int | None = None
    discord_approver_role_ids: RoleIds = frozenset()
    discord_deploy_approver_role_ids: RoleIds = frozenset()
    #: distinct deploy approvers a guarded task needs (escalation.deploy_guard; 2 = two-person rule)
    deploy_required_approvers: int = Field(default=1, ge=1, le=10)
    discord_api_base_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg"
    discord_guild_ready_timeout_seconds: Seconds = Field(default=2.0, ge=0)
    discord_channel_rate_limit: int = Field(default=5, ge=1)
    discord_channel_rate_window_seconds: Seconds = Field(default=5.0, gt=0)
    #: message edits the bridge sends per channel per DISCORD_CHANNEL_RATE_WINDOW_SECONDS
    #: (bot.discord.edit_queue; Discord: edits are rate limited per channel too)
    discord_edit_rate_limit: int = Field(default=5, ge=1)
    #: feed lines kept waiting per channel before the oldest are dropped (and said so in the
    #: channel; bot.discord.feed)
    discord_feed_max_pending: int = Field(default=500, ge=1)
    #: first pause, in seconds, of edits to a channel's messages older than 1 h after Discord
    #: answered 30046 (doubles while it keeps answering so, up to 15 min; bot.discord.edit_queue)
    discord_old_edit_backoff_seconds: Seconds = Field(default=60.0, gt=0)
    #: a channel the bridge cannot use (10003/50001/50013): its waiting tasks are retried this
    #: often, in seconds (bot.channel_access)
    discord_channel_retry_seconds: Seconds = Field(default=60.0, gt=0)

    # --- Factory API (contract §1.1, §7.1) ---------------------------------------------------
    factory_api_url: str = "http://localhost:3100/v1"
    factory_api_key: SecretStr
    factory_webhook_secret: SecretStr
    #: the secret being rotated out: accepted beside the current one while set (README)
    factory_webhook_secret_previous: SecretStr | None = None
    factory_dashboard_url: str | None = None
    factory_ws_url: str | None = None
    #: JWT sent as ``?token=`` on the WebSocket (contract §1.6), besides ``X-API-Key``
    factory_ws_token: SecretStr | None = None
    factory_timeout_seconds: Seconds = Field(default=10.0, gt=0)
    factory_retry_base_seconds: Seconds = Field(default=1.0, ge=0)
    factory_max_concurrent_requests: int = Field(default=16, ge=1, le=100)
    reconcile_interval_seconds: Seconds = Field(default=300.0, gt=0)
    factory_ws_reconnect_base_seconds: Seconds = Field(default=1.0, gt=0)  # contract §4.5
    reconcile_history_limit: int = Field(default=1000, ge=0)

    # --- The factory's event bus: Redis Streams (contract §7.7) -------------------------------
    #: ``redis://`` or ``rediss://`` URL of the factory's Redis (secret: it may hold a password);
    #: unset: the streams are not read (bot.factory.redis_intake)
    factory_redis_url: SecretStr | None = None
    #: streams read as consumer group ``discord-bridge``; comma-separated names
    factory_redis_streams: StreamNames = (
        "factory.tasks",
        "factory.pipelines",
        "factory.deploys",
        "factory.agents",
        "factory.notifications",
    )
    #: this process's consumer name in the group; unset: ``<hostname>-<pid>``
    factory_redis_consumer: str | None = Field(default=None, max_length=200)
    #: seconds an entry stays pending with another consumer before this one claims it
    #: (``XAUTOCLAIM`` min-idle-time; a dead consumer's entries are handled after this)
    factory_redis_claim_idle_seconds: Seconds = Field(default=30.0, ge=0)
    #: entries read per ``XREADGROUP`` and stored in one transaction
    factory_redis_batch_size: int = Field(default=500, ge=1, le=10_000)
    #: first delay before reconnecting to Redis after a failure; doubles up to 30 s, with jitter
    factory_redis_reconnect_base_seconds: Seconds = Field(default=1.0, gt=0)

    # --- The bridge's own service --------------------------------------------------------------
    bridge_http_host: str = "0.0.0.0"
    bridge_http_port: int = Field(default=8080, ge=0, le=65535)
    bridge_http_body_timeout_seconds: Seconds = Field(default=30.0, gt=0)
    #: the bridge's address as the factory and Twilio reach it: POST /events is registered
    #: there (§1.5); with Twilio configured it also makes the phone two-way (README "Phone":
    #: /twilio/sms, /twilio/voice/gather, /twilio/voice/status, signatures checked against it)
    bridge_public_url: str | None = None
    #: this process's HTTP port as the other replicas reach it (README "Production"): a
    #: standby hands the Twilio webhooks it receives to the leader there; unset:
    #: ``http://<BRIDGE_HTTP_HOST, or this host's name for 0.0.0.0 / ::>:<BRIDGE_HTTP_PORT>``
    bridge_internal_url: str | None = None
    database_url: str = "sqlite:///./data/bridge.db"
    #: PostgreSQL with autovacuum off: seconds between two checks of the bridge's tables for
    #: ``ANALYZE`` by autovacuum's own rule and naptime; 0 turns it off (bot.store.statistics)
    database_analyze_seconds: Seconds = Field(default=60.0, ge=0)
    #: seconds a standby waits without seeing the leader renew its lease before it takes over;
    #: the leader renews every third of it (README "Production", "Replicas"; :mod:`bot.leadership.lease`)
    bridge_leader_lease_seconds: Seconds = Field(default=10.0, gt=0)
    bridge_roster_file: Path | None = None
    #: any case; the contract's ``warn`` and ``fatal`` too (§7.2); stored as Python's level name
    log_level: str = "INFO"
    #: ``json`` (contract §7.2 ``LogEntry`` lines) or ``text``; unset: text on a terminal, else json
    log_format: Literal["json", "text"] | None = None
    #: dead man's switch: requested every HEARTBEAT_INTERVAL_SECONDS while healthy (bot.heartbeat)
    heartbeat_url: str | None = None
    heartbeat_interval_seconds: Seconds = Field(default=60.0, gt=0)
    #: Discord session down this long → one SMS to the on-call admins (bot.self_watch)
    self_alert_after_seconds: Seconds = Field(default=300.0, gt=0)

    # --- SLA and escalation (contract §5.3, Appendix B) --------------------------------------
    sla_critical_seconds: Seconds = Field(default=3600, gt=0)
    sla_high_seconds: Seconds = Field(default=14400, gt=0)
    sla_medium_seconds: Seconds = Field(default=86400, gt=0)
    sla_low_seconds: Seconds = Field(default=259200, gt=0)
    sla_warning_threshold_percent: float = Field(default=25, ge=0, le=100)
    escalation_enabled: bool = True
    escalation_dm_after_seconds: Seconds = Field(default=1800, ge=0)
    escalation_mention_after_seconds: Seconds = Field(default=7200, ge=0)
    escalation_critical_after_breach_seconds: Seconds = Field(default=7200, ge=0)
    escalation_safe_default: SafeDefault = SafeDefault.NONE
    escalation_bundle_seconds: Seconds = Field(default=120, ge=0)
    #: an unanswered critical call (no-answer, busy, failed, or ended without a 1): seconds
    #: before the next on-call operator is called (README "Phone"; needs BRIDGE_PUBLIC_URL)
    escalation_call_next_after_seconds: Seconds = Field(default=60, ge=0)
    #: after the critical step, the breach page (SMS + call) repeats this often while the task
    #: has neither a decision nor an acknowledgement (README "Phone") ...
    escalation_repeat_seconds: Seconds = Field(default=1800, gt=0)
    #: ... at most this many times (0 turns repeats off; at most escalation.policy.MAX_REPEATS)
    escalation_repeat_limit: int = Field(default=3, ge=0, le=MAX_REPEATS)
    quiet_hours_enabled: bool = True
    quiet_hours_start: time = time(22, 0)
    quiet_hours_end: time = time(8, 0)
    quiet_hours_timezone: str = "UTC"
    #: priorities whose breach SMS and critical call are never held for quiet hours (README "Phone")
    quiet_hours_bypass_priorities: Priorities = frozenset({Priority.CRITICAL, Priority.HIGH})

    # --- Twilio (SMS and calls) ----------------------------------------------------------------
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None
    twilio_api_base_url: str = "https://api.twilio.com"

    # --- Smart batching (master plan §7) -------------------------------------------------------
    batch_enabled: bool = True
    batch_group_wait_seconds: Seconds = Field(default=30, ge=0)
    batch_group_interval_seconds: Seconds = Field(default=300, ge=0)
    batch_min_coverage_percent: float = Field(default=80, ge=0, le=100)

    @field_validator("quiet_hours_bypass_priorities", mode="before")
    @classmethod
    def _split_priorities(cls, value: object) -> object:
        """``"critical, high"`` → ``{critical, high}`` (empty: none bypass)."""
        if isinstance(value, str):
            parts = [p.strip().lower() for p in value.split(",") if p.strip()]
            known = {p.value for p in Priority}
            bad = [p for p in parts if p not in known]
            if bad:
                raise ValueError(
                    f"expected comma-separated priorities ({', '.join(sorted(known))}), "
                    f"got {', '.join(bad)!r}"
                )
            return frozenset(Priority(p) for p in parts)
        return value

    _split_role_ids = field_validator(
        "discord_approver_role_ids", "discord_deploy_approver_role_ids", mode="before"
    )(_parse_id_list)

    @field_validator(
        "discord_alerts_channel_id",
        "discord_deploys_channel_id",
        "discord_feed_channel_id",
        "factory_dashboard_url",
        "factory_ws_url",
        "bridge_roster_file",
        "twilio_account_sid",
        "twilio_auth_token",
        "twilio_from_number",
        "factory_webhook_secret_previous",
        "factory_ws_token",
        "bridge_public_url",
        "bridge_internal_url",
        "factory_redis_url",
        "factory_redis_consumer",
        "heartbeat_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        return parse_log_level(value)

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        return value.strip().lower() or None if isinstance(value, str) else value

    def secret_values(self) -> list[str]:
        """Every configured secret's value (for redaction from logs, ``bot.logs``).

        Besides each ``SecretStr`` setting, the secrets every URL setting (``*_URL``:
        ``DATABASE_URL``, ``FACTORY_REDIS_URL``, …) carries, parsable or not
        (:func:`bot.logs.url_secrets`): its whole user info, the password and its pieces, and
        password-like query parameters (``password``, ``passwd``, ``pwd``, ``token``,
        ``secret``).

        Returns
        -------
        list[str]
            The values, without empty ones.
        """
        values: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
                values.append(value)
            if name.endswith("_url") and isinstance(value, str):
                values.extend(url_secrets(value))
        return [v for v in dict.fromkeys(values) if v]

    @field_validator("quiet_hours_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("quiet_hours_start", "quiet_hours_end")
    @classmethod
    def _wall_time(cls, value: time) -> time:
        # a wall time of QUIET_HOURS_TIMEZONE (README "Settings"); escalation.policy.
        # QuietHours refuses one with an offset, which would otherwise fail only at `run`
        if value.tzinfo is not None:
            raise ValueError(
                f"must be a wall time without an offset, like '22:00', got"
                f" {value.isoformat()!r}; the zone is QUIET_HOURS_TIMEZONE"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        """A scheme the bridge opens (:data:`DATABASE_SCHEMES`); another driver is refused."""
        if DATABASE_SCHEMES.match(value):
            return value
        dialect, plus, driver = value.partition("://")[0].partition("+")
        if plus and driver.isidentifier() and dialect in ("sqlite", "postgresql", "postgres"):
            use = "sqlite://" if dialect == "sqlite" else "postgresql:// (psycopg 3)"
            raise ValueError(f"the driver {driver!r} is not supported: use {use}")
        raise ValueError("expected a sqlite:// or postgresql:// URL")

    @field_validator(
        "factory_api_url",
        "discord_api_base_url",
        "twilio_api_base_url",
        "bridge_public_url",
        "bridge_internal_url",
        "factory_dashboard_url",
        "heartbeat_url",
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://", value):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("discord_gateway_url", "factory_ws_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^wss?://", value):
            raise ValueError("expected a ws:// or wss:// URL")
        return value

    @field_validator("factory_redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        """A URL redis-py reads as it was meant: ``redis://`` or ``rediss://``, with a host.

        Checked with redis-py's own parser, so that a URL it would refuse (or read otherwise:
        a password holding ``/``, ``?``, ``#`` or ``@`` not percent-encoded, whose rest is
        then taken for the port or path) is refused here instead of retried for ever. The
        message never quotes the URL or a part of it (the parser's reason is given without
        what it quotes, and with every secret of the URL masked).
        """
        if value is None:
            return None
        url = value.get_secret_value()
        reason: str | None = None
        if not re.match(r"^rediss?://", url):
            reason = "the scheme is neither redis:// nor rediss://"
        else:
            try:
                options = parse_redis_url(url)
                parts = urlsplit(url)
            except ValueError as exc:
                # its message may quote a piece of the URL (a password taken for the port):
                # quoted parts are dropped, and whatever else is secret is masked
                unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "…", str(exc))
                reason = redact(unquoted, [url, *url_secrets(url)]) or type(exc).__name__
            else:
                if not options.get("host"):
                    reason = "no host"
                elif "@" in parts.path + parts.query + parts.fragment:
                    reason = "an @ after the host"
        if reason is not None:
            raise ValueError(
                f"not a valid redis:// or rediss:// URL ({reason}); "
                "percent-encode special characters in the password"
            )
        return value

    @field_validator("factory_redis_streams", mode="before")
    @classmethod
    def _stream_names(cls, value: object) -> object:
        """Turn ``"factory.tasks, factory.deploys"`` into a tuple of distinct stream names."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            names = tuple(dict.fromkeys(str(name) for name in value))
            if not names:
                raise ValueError("expected at least one stream name")
            return names
        return value

    # --- derived values ------------------------------------------------------------------------
    @property
    def alerts_channel_id(self) -> int:
        """Channel for alerts: ``DISCORD_ALERTS_CHANNEL_ID`` or, unset, the tasks channel."""
        return self.discord_alerts_channel_id or self.discord_tasks_channel_id

    @property
    def internal_url(self) -> str:
        """Where the other replicas reach this process's HTTP port: ``BRIDGE_INTERNAL_URL``,
        else ``http://<host>:<BRIDGE_HTTP_PORT>`` with ``BRIDGE_HTTP_HOST`` as the host, or
        this machine's host name when it listens on every address (``0.0.0.0``, ``::``)."""
        if self.bridge_internal_url is not None:
            return self.bridge_internal_url
        host = self.bridge_http_host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        elif ":" in host:  # an IPv6 address
            host = f"[{host}]"
        return f"http://{host}:{self.bridge_http_port}"

    @property
    def twilio_configured(self) -> bool:
        """True when SID, auth token and sender number are all set."""
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from_number)

    def escalation_policy(self) -> EscalationPolicy:
        """Build the core's :class:`~escalation.policy.EscalationPolicy` from these settings."""
        quiet = QuietHours(
            start=self.quiet_hours_start,
            end=self.quiet_hours_end,
            timezone=self.quiet_hours_timezone,
            enabled=self.quiet_hours_enabled,
        )
        return EscalationPolicy(
            sla_seconds={
                Priority.CRITICAL: self.sla_critical_seconds,
                Priority.HIGH: self.sla_high_seconds,
                Priority.MEDIUM: self.sla_medium_seconds,
                Priority.LOW: self.sla_low_seconds,
            },
            dm_after_seconds=self.escalation_dm_after_seconds,
            mention_after_seconds=self.escalation_mention_after_seconds,
            warning_threshold_percent=self.sla_warning_threshold_percent,
            critical_after_breach_seconds=self.escalation_critical_after_breach_seconds,
            safe_default=self.escalation_safe_default,
            quiet_hours=quiet,
            bundle_seconds=self.escalation_bundle_seconds,
            quiet_bypass_priorities=self.quiet_hours_bypass_priorities,
            repeat_seconds=self.escalation_repeat_seconds,
            repeat_limit=self.escalation_repeat_limit,
        )


def describe_validation_error(error: ValidationError) -> list[str]:
    """Turn a settings ``ValidationError`` into one plain line per problem.

    Each line names the environment variable (upper case) and what is wrong with it. The
    offending value is never echoed, so a mistyped secret does not end up in a log.
    """
    lines = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper() or "SETTINGS"
        if item["type"] == "missing":
            lines.append(f"{name}: required but not set")
        elif item["type"] == "less_than_equal" and item.get("ctx", {}).get("le") == MAX_SECONDS:
            lines.append(f"{name}: must be at most {MAX_SECONDS} seconds (366 days)")
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{name}: {message}")
    return lines


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; keyword ``overrides`` win (used by the sandbox).

    Raises
    ------
    pydantic.ValidationError
        When a required setting is missing or a value is malformed.
    """
    return Settings(**overrides)  # type: ignore[arg-type]


class DatabaseSettings(BaseSettings):
    """Only ``DATABASE_URL`` (same default, validation and ``.env`` file as :class:`Settings`):
    what ``factory-bridge db upgrade`` / ``db current`` need, so that a migration job runs
    without the Discord and factory secrets.

    Raises ``pydantic.ValidationError`` for a URL :data:`DATABASE_SCHEMES` refuses (neither
    ``sqlite://`` nor ``postgresql://`` / ``postgres://``, or a driver the bridge lacks).
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    database_url: str = Settings.model_fields["database_url"].default

    _supported_database = field_validator("database_url")(
        Settings._supported_database.__func__  # type: ignore[attr-defined]
    )
