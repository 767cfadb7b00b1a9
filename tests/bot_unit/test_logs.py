"""Logs: the contract's levels (§7.2), JSON lines in its LogEntry shape, and no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.logs import configure_logging, log_context, parse_log_level, task_log_context
from bot.settings import Settings

BASE = {
    "DISCORD_BOT_TOKEN": "bot-token-AAAA.BBBB.CCCC",
    "DISCORD_GUILD_ID": "1",
    "DISCORD_TASKS_CHANNEL_ID": "2",
    "FACTORY_API_URL": "http://127.0.0.1:1/v1",
    "FACTORY_API_KEY": "factory-api-key-123",
    "FACTORY_WEBHOOK_SECRET": "whsec-current-456",
    "FACTORY_WEBHOOK_SECRET_PREVIOUS": "whsec-previous-789",
    "TWILIO_AUTH_TOKEN": "twilio-auth-token-000",
}


@pytest.fixture()
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("info", "INFO"),
        ("INFO", "INFO"),
        (" Warn ", "WARNING"),
        ("warning", "WARNING"),
        ("fatal", "CRITICAL"),
        ("Debug", "DEBUG"),
        ("error", "ERROR"),
    ],
)
def test_log_level_accepts_any_case_and_the_contract_spellings(value: str, expected: str) -> None:
    assert parse_log_level(value) == expected
    settings = Settings(**{k.lower(): v for k, v in BASE.items()}, log_level=value)  # type: ignore[arg-type]
    assert settings.log_level == expected


def test_an_unknown_log_level_is_refused_with_the_accepted_values() -> None:
    with pytest.raises(ValueError, match="debug, info, warn, error or fatal"):
        parse_log_level("loud")


def test_json_lines_follow_the_log_entry_shape(restore_root_logger: None) -> None:
    out = io.StringIO()
    configure_logging("info", fmt="json", stream=out)
    log = logging.getLogger("bot.test")
    log.info("task %s posted", "t-1", extra={"task_id": "t-1", "duration_ms": 12.5, "channel": 7})
    log.debug("not shown at info")
    try:
        raise RuntimeError("factory said no")
    except RuntimeError:
        log.exception("decision failed", extra={"event_id": "e-9"})
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["level"] == "info"
    assert first["message"] == "task t-1 posted"
    assert first["service"] == "discord-bridge"
    assert first["taskId"] == "t-1"
    assert first["durationMs"] == 12.5
    assert first["data"] == {"logger": "bot.test", "channel": 7}
    assert first["timestamp"].endswith("Z")
    assert second["level"] == "error"
    assert second["eventId"] == "e-9"
    assert second["error"]["name"] == "RuntimeError"
    assert second["error"]["message"] == "factory said no"
    assert "Traceback" in second["error"]["stack"]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_no_secret_appears_in_any_line(fmt: str, restore_root_logger: None) -> None:
    settings = Settings(**{k.lower(): v for k, v in BASE.items()})  # type: ignore[arg-type]
    out = io.StringIO()
    configure_logging("debug", fmt=fmt, secrets=settings.secret_values(), stream=out)
    log = logging.getLogger("bot.test")
    log.info("connecting with %s", settings.discord_bot_token.get_secret_value())
    log.warning("key in message: factory-api-key-123, settings: %r", settings)
    log.info("signature", extra={"secret": "whsec-previous-789"})
    try:
        raise ValueError("bad token twilio-auth-token-000 / whsec-current-456")
    except ValueError:
        log.exception("failed")
    text = out.getvalue()
    for secret in BASE.values():
        if "secret" in secret or "token" in secret or "key" in secret:
            assert secret not in text
    assert "[redacted]" in text
    assert text.count("\n") >= 4


def test_without_a_format_a_terminal_gets_text_and_a_pipe_gets_json(
    restore_root_logger: None,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Terminal(), io.StringIO()
    configure_logging("info", stream=tty)
    logging.getLogger("bot.test").info("hello")
    configure_logging("info", stream=pipe)
    logging.getLogger("bot.test").info("hello")
    assert " INFO bot.test: hello" in tty.getvalue()
    assert json.loads(pipe.getvalue())["message"] == "hello"


def test_task_and_event_ids_come_from_the_context_being_handled(
    restore_root_logger: None,
) -> None:
    out = io.StringIO()
    configure_logging("info", fmt="json", stream=out)
    log = logging.getLogger("bot.test")

    class Protocol:
        @task_log_context
        async def decide(self, task_id: str, decision: str) -> None:
            log.info("deciding %s", decision)

    async def handle() -> None:
        with log_context(event_id="evt-1", task_id="t-outer"):
            log.info("event handled")
            await Protocol().decide("t-inner", "approved")
            log.info("explicit wins", extra={"task_id": "t-extra"})
        log.info("after")

    asyncio.run(handle())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e.get("eventId"), e.get("taskId")) for e in lines] == [
        ("evt-1", "t-outer"),
        ("evt-1", "t-inner"),
        ("evt-1", "t-extra"),
        (None, None),
    ]


#: Secrets holding what JSON and ``repr`` escape: a quote, a backslash, a tab, a newline, and
#: non-ASCII letters (escaped as ``\uXXXX`` by a JSON encoder with its default ``ensure_ascii``).
AWKWARD_SECRETS = (
    'Ab"cd-1234',
    "back\\slash-5678",
    "tab\there-9012",
    "new\nline-3456",
    "pässwörd-ü789",
)


def _texts(value: object) -> Iterator[str]:
    """Every text in a decoded JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_secret_is_masked_whatever_characters_it_holds(
    fmt: str, restore_root_logger: None
) -> None:
    out = io.StringIO()
    configure_logging("debug", fmt=fmt, secrets=AWKWARD_SECRETS, stream=out)
    log = logging.getLogger("bot.test")
    for secret in AWKWARD_SECRETS:
        log.info("connecting with %s", secret)
        log.warning("bad value %r", secret)
        log.info("factory body %s", json.dumps({"token": secret}))
        log.info("signature", extra={"secret": secret, "nested": {"values": [secret]}})
        try:
            raise ValueError(f"rejected {secret!r} / {secret}")
        except ValueError:
            log.exception("failed")
    text = out.getvalue()
    if fmt == "json":
        entries = [json.loads(line) for line in text.splitlines()]  # still one object a line
        assert len(entries) == 5 * len(AWKWARD_SECRETS)
        decoded = "\x00".join(t for entry in entries for t in _texts(entry))
        assert decoded.count("[redacted]") >= 6 * len(AWKWARD_SECRETS)
        assert entries[0]["message"] == "connecting with [redacted]"
    else:
        decoded = text
        assert "connecting with [redacted]\n" in text
    for secret in AWKWARD_SECRETS:
        for spelling in (secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]):
            assert spelling not in text, spelling
            assert spelling not in decoded, spelling
