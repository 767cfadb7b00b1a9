"""A stop (SIGTERM) while Discord does not answer the login stops the bridge at once.

README: ``factory-bridge run`` stops on SIGTERM, and a graceful stop hands the lease over. A
bridge starting during a Discord or network outage waited for the login (aiohttp's 5-minute
timeout) before it looked at the stop, so ``docker stop`` (10 s) or systemd ended in SIGKILL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.app import build_app
from bot.settings import Settings


def bridge_settings(**overrides: Any) -> Settings:
    """A bridge on 127.0.0.1 (a free HTTP port) whose factory is unreachable."""
    return Settings(
        _env_file=None,
        discord_bot_token="token",
        discord_guild_id=1,
        discord_tasks_channel_id=100,
        factory_api_key="key",
        factory_webhook_secret="secret",
        factory_api_url="http://127.0.0.1:9/v1",
        bridge_http_host="127.0.0.1",
        bridge_http_port=0,
        **overrides,
    )


async def test_a_stop_while_the_login_hangs_ends_the_run(tmp_path: Path) -> None:
    connected = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # until the bridge closes the connection
        writer.close()

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    settings = bridge_settings(
        discord_api_base_url=f"http://127.0.0.1:{port}/api/v10",
        database_url=f"sqlite:///{tmp_path / 'bridge.db'}",
    )
    app = build_app(settings)
    run = asyncio.create_task(app.run_until_stopped())
    try:
        await asyncio.wait_for(connected.wait(), timeout=30)  # the login is under way
        app.request_stop()  # what SIGTERM does
        await asyncio.wait_for(run, timeout=30)  # was: 5 minutes
    finally:
        run.cancel()
        silent.close()
        await silent.wait_closed()
    assert app.exit_code == 0


def test_a_token_discord_refuses_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """README: ``run`` exits 2 with one line (no traceback, whatever ``LOG_FORMAT``) when
    Discord refuses ``DISCORD_BOT_TOKEN`` at start."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.bot_unit.test_settings import REQUIRED, run_cli

    class Refuses(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # GET /users/@me: Discord's answer to a bad token
            body = json.dumps({"message": "401: Unauthorized", "code": 0}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {
            **REQUIRED,
            "DISCORD_API_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}/api/v10",
            "FACTORY_API_URL": "http://127.0.0.1:9/v1",
            "BRIDGE_HTTP_PORT": "0",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
            "LOG_FORMAT": "json",
        }
        result = run_cli("run", env=env, cwd=tmp_path)
    finally:
        server.shutdown()
    assert result.returncode == 2, result.stderr[-2000:]
    # every other line is one JSON log object (a traceback only inside one, as "stack")
    plain = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert plain == ["factory-bridge: Discord refused DISCORD_BOT_TOKEN (401 Unauthorized)"]


async def test_a_stop_while_waiting_for_postgresql_ends_the_run_cleanly(tmp_path: Path) -> None:
    """A bridge waiting for an unreachable PostgreSQL (restarting, failing over) stops on
    SIGTERM with exit 0, not with the connection error's traceback."""
    import logging

    waiting = asyncio.Event()

    class Waiting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "database unreachable" in record.getMessage():
                waiting.set()

    settings = bridge_settings(
        database_url="postgresql://postgres@127.0.0.1:9/nowhere"  # nothing listens there
    )
    handler = Waiting()
    logging.getLogger("bot").addHandler(handler)
    app = build_app(settings)
    run = asyncio.create_task(app.run_until_stopped())
    try:
        await asyncio.wait_for(waiting.wait(), timeout=30)
        app.request_stop()
        await asyncio.wait_for(run, timeout=30)  # was: the OperationalError raised
    finally:
        run.cancel()
        logging.getLogger("bot").removeHandler(handler)
    assert app.exit_code == 0
