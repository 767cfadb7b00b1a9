"""``factory-bridge`` command line: ``run``, ``sandbox``, ``check-config``, ``audit``,
``webhooks``, ``db upgrade``, ``db current`` and ``test-page``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from bot.cli_db import positive_limit, safe_db_url

if TYPE_CHECKING:
    from bot.settings import Settings

__all__ = [
    "build_parser",
    "cmd_audit",
    "cmd_check_config",
    "cmd_db",
    "cmd_run",
    "cmd_sandbox",
    "cmd_test_page",
    "cmd_webhooks",
    "main",
]


def _configure_logging(
    level: str, fmt: str | None = "text", secrets: list[str] | None = None
) -> None:
    from bot.logs import configure_logging

    configure_logging(level, fmt=fmt, secrets=secrets or ())


def _without_userinfo(url: str) -> str:
    """``url`` with its user info (``user:password@``), however short, shown as ``[redacted]``
    (:func:`bot.logs.redact` leaves values under four characters alone)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"[redacted]@{host}").geturl()


def _shown(text: object, settings: Settings) -> str:
    """``text`` as the command line prints it: every secret of ``settings`` (its secrets and
    the credentials of its URLs, such as a password in ``FACTORY_API_URL``) masked by
    :func:`bot.logs.redact`."""
    from bot.logs import redact

    return redact(str(text), settings.secret_values())


def _load_settings_or_exit() -> object:
    from bot.settings import describe_validation_error, load_settings

    try:
        return load_settings()
    except ValidationError as exc:
        print("factory-bridge: the configuration is not valid:", file=sys.stderr)
        for line in describe_validation_error(exc):
            print(f"  - {line}", file=sys.stderr)
        print("See README.md, 'Settings', for every variable and its default.", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate every setting and the roster; print what is missing or wrong (never secrets).

    With ``--live`` also connect to Discord, the factory and Twilio (:mod:`bot.live_check`):
    exit 0 only when every check passes, 1 otherwise, 2 for an invalid configuration."""
    from bot.roster import RosterError, load_roster
    from bot.settings import Settings

    settings = _load_settings_or_exit()
    assert isinstance(settings, Settings)
    problems: list[str] = []
    warnings: list[str] = []
    try:
        roster = load_roster(settings.bridge_roster_file)
    except RosterError as exc:
        problems.append(f"BRIDGE_ROSTER_FILE: {exc}")
        roster = None
    if not settings.discord_approver_role_ids and not settings.discord_deploy_approver_role_ids:
        warnings.append(
            "DISCORD_APPROVER_ROLE_IDS is empty: nobody will be able to decide tasks from Discord"
        )
    if not settings.discord_deploy_approver_role_ids:
        warnings.append(
            "DISCORD_DEPLOY_APPROVER_ROLE_IDS is empty: production deploys cannot be approved from Discord"
        )
    twilio_parts = [
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        settings.twilio_from_number,
    ]
    if any(twilio_parts) and not all(twilio_parts):
        problems.append(
            "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER must be set together"
        )
    elif not any(twilio_parts):
        warnings.append("Twilio is not configured: SMS and call steps will be logged as skipped")
    if roster is not None and not roster.on_call:
        warnings.append("the roster names no on-call operator: escalations have nobody to page")
    for line in warnings:
        print(f"warning: {line}")
    if problems:
        print("factory-bridge: the configuration is not valid:", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 2
    database = safe_db_url(settings.database_url)  # never print credentials of a DB URL
    factory = _shown(_without_userinfo(settings.factory_api_url), settings)  # nor of another
    print(
        f"configuration OK: guild {settings.discord_guild_id}, "
        f"tasks channel {settings.discord_tasks_channel_id}, "
        f"factory {factory}, database {database}"
    )
    if getattr(args, "live", False):
        from bot.live_check import format_check, run_live_checks

        checks = asyncio.run(run_live_checks(settings))
        for check in checks:
            print(_shown(format_check(check), settings))
        return 0 if all(check.ok for check in checks) else 1
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (a dependency except on Windows), else asyncio's.

    uvloop runs the same asyncio programs on libuv; its socket I/O and callback scheduling
    cost a fraction of the pure-Python selector loop's CPU, which every webhook, Discord
    request and database wake-up goes through.
    """
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def cmd_run(_: argparse.Namespace) -> int:
    """Run the service until SIGTERM/SIGINT."""
    from bot.app import run_service
    from bot.settings import Settings

    settings = _load_settings_or_exit()
    assert isinstance(settings, Settings)
    _configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    from aiohttp import ClientError
    from discord import HTTPException, LoginFailure

    from bot.leadership import DatabaseInUse
    from bot.roster import RosterError
    from bot.store.migrate import MigrationError

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(run_service(settings))
    except (DatabaseInUse, RosterError, MigrationError) as exc:  # what to fix, not a traceback
        print(f"factory-bridge: {_shown(exc, settings)}", file=sys.stderr)
        return 2
    except LoginFailure:
        print(
            "factory-bridge: Discord refused DISCORD_BOT_TOKEN (401 Unauthorized)", file=sys.stderr
        )
        return 2
    except (OSError, TimeoutError, ClientError, HTTPException) as exc:  # logged where it happened
        # Discord unreachable at start, the HTTP port taken: one line, exit 1 for the supervisor
        print(f"factory-bridge: could not start: {_shown(repr(exc), settings)}", file=sys.stderr)
        return 1


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Run the emulators, the real bridge and a scenario; print a transcript."""
    from sandbox.runner import run_sandbox

    _configure_logging("WARNING" if not args.verbose else "INFO")
    return asyncio.run(run_sandbox(verbose=args.verbose))


def cmd_audit(args: argparse.Namespace) -> int:
    """Print the audit trail's newest ``--limit`` entries (optionally one task's, or since a
    time), oldest first, without migrating or writing the database (:mod:`bot.cli_db`).

    Exit 0; 1 when the database cannot be reached or read; 2 for bad input or configuration."""
    from bot.cli_db import run_audit
    from bot.settings import Settings

    settings = _load_settings_or_exit()
    assert isinstance(settings, Settings)
    return run_audit(settings.database_url, task=args.task, since=args.since, limit=args.limit)


def cmd_db(args: argparse.Namespace) -> int:
    """``db upgrade``: apply the schema migrations (what ``run`` does at start, under the same
    lock); ``db current``: print the database's revision and this build's newest.

    Exit 0 on success; 1 when the database cannot be reached or migrated, belongs to another
    application, or (``current``) is an SQLite file that does not exist (the reason on stderr,
    never the URL's credentials); 2 for an invalid ``DATABASE_URL``; ``current`` exits
    3 when the database is behind, 4 when it is ahead (a newer build migrated it).
    """
    from bot.cli_db import run_db
    from bot.settings import DatabaseSettings, describe_validation_error

    try:
        settings = DatabaseSettings()
    except ValidationError as exc:
        for line in describe_validation_error(exc):
            print(f"factory-bridge: {line}", file=sys.stderr)
        return 2
    return run_db(settings.database_url, args.db_command)


def cmd_webhooks(args: argparse.Namespace) -> int:
    """List the webhooks registered at the factory; ``--register`` / ``--replace`` register."""
    from bot.factory.client import FactoryClient, FactoryError, FactoryUnavailable
    from bot.factory.webhooks import WebhookRegistrar, endpoint_url
    from bot.settings import Settings

    settings = _load_settings_or_exit()
    assert isinstance(settings, Settings)
    if (args.register or args.replace) and not settings.bridge_public_url:
        print("--register/--replace need BRIDGE_PUBLIC_URL", file=sys.stderr)
        return 2
    ours = endpoint_url(settings.bridge_public_url) if settings.bridge_public_url else None

    async def run() -> int:
        factory = FactoryClient(
            settings.factory_api_url,
            settings.factory_api_key.get_secret_value(),
            timeout_seconds=settings.factory_timeout_seconds,
        )
        try:
            if args.register or args.replace:
                assert settings.bridge_public_url is not None
                registrar = WebhookRegistrar(
                    factory,
                    public_url=settings.bridge_public_url,
                    secret=settings.factory_webhook_secret.get_secret_value(),
                )
                done = await (registrar.replace() if args.replace else registrar.ensure())
                shown = _shown(registrar.url, settings)
                print(f"{done.outcome}: webhook {done.webhook.get('id')} for {shown}")
            hooks = await factory.list_webhooks()
        except (FactoryError, FactoryUnavailable) as exc:
            print(f"factory-bridge: {_shown(exc, settings)}", file=sys.stderr)
            return 1
        finally:
            await factory.aclose()
        if not hooks:
            print("no webhooks registered")
        for hook in hooks:
            events = hook.get("events") or []
            mark = "  (this bridge)" if ours and str(hook.get("url")).rstrip("/") == ours else ""
            active = "active" if hook.get("active", True) else "inactive"
            url = _shown(hook.get("url"), settings)
            print(f"{hook.get('id')}  {url}  {len(events)} events  {active}{mark}")
        return 0

    return asyncio.run(run())


def cmd_test_page(args: argparse.Namespace) -> int:
    """One test SMS and one test DM to the roster operator ``args.name`` (README "Phone"); prints
    what Twilio and Discord answered (:mod:`bot.page_check`)."""
    from bot.page_check import send_test_page
    from bot.roster import RosterError, load_roster
    from bot.settings import Settings

    settings = _load_settings_or_exit()
    assert isinstance(settings, Settings)
    try:
        roster = load_roster(settings.bridge_roster_file)
    except RosterError as exc:
        print(f"BRIDGE_ROSTER_FILE: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(send_test_page(settings, roster, args.name))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="factory-bridge",
        description="Brings the AI software factory's decisions to Discord and carries answers back.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run", help="run the bridge (configured through environment variables)"
    ).set_defaults(func=cmd_run)
    sandbox = sub.add_parser(
        "sandbox", help="run emulators + the real bridge + a scenario, print a transcript"
    )
    sandbox.add_argument("--verbose", action="store_true", help="also print the bridge's logs")
    sandbox.set_defaults(func=cmd_sandbox)
    check = sub.add_parser("check-config", help="validate every setting and say what is wrong")
    check.add_argument(
        "--live",
        action="store_true",
        help="also log in to Discord, the factory and Twilio and check permissions and keys",
    )
    check.set_defaults(func=cmd_check_config)
    audit = sub.add_parser("audit", help="print the audit trail")
    audit.add_argument("--task", help="only this task id")
    audit.add_argument("--since", help="e.g. 2h, 30m, 7d or an ISO 8601 date")
    audit.add_argument(
        "--limit",
        type=positive_limit,
        default=1000,
        help="the newest this many entries (default 1000; says how many earlier ones it left out)",
    )
    audit.set_defaults(func=cmd_audit)
    webhooks = sub.add_parser("webhooks", help="list the webhooks registered at the factory")
    action = webhooks.add_mutually_exclusive_group()
    action.add_argument(
        "--register", action="store_true", help="register BRIDGE_PUBLIC_URL/events unless it is"
    )
    action.add_argument(
        "--replace",
        action="store_true",
        help="delete this bridge's webhooks and register anew (gives the factory a new secret)",
    )
    webhooks.set_defaults(func=cmd_webhooks)
    db = sub.add_parser("db", help="the database schema (Alembic migrations)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser(
        "upgrade", help="apply the schema migrations (run does it at start too)"
    ).set_defaults(func=cmd_db)
    db_sub.add_parser(
        "current",
        help="print the database's schema revision (exit 3 when behind, 4 when ahead)",
    ).set_defaults(func=cmd_db)
    page = sub.add_parser(
        "test-page", help="send one test SMS and one test DM to a roster operator"
    )
    page.add_argument("name", help="the operator's name in the roster")
    page.set_defaults(func=cmd_test_page)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``factory-bridge`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))
