"""A bridge started while its PostgreSQL server is unreachable (restarting, failing over: the
leader it deposed is being restarted at the same moment) waits for it, saying so, instead of
exiting at once and being restarted until its supervisor gives up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from sandbox.world import free_port
from tests.bot_unit.test_settings import REQUIRED
from tests.support.harness import wait_until

_CHECKOUT = Path(__file__).resolve().parents[2]


async def test_run_waits_for_an_unreachable_postgresql_and_stops_when_asked(
    tmp_path: Path,
) -> None:
    closed = free_port()  # nothing listens there
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "FACTORY_"))},
        **REQUIRED,
        "DATABASE_URL": f"postgresql://postgres:pw@127.0.0.1:{closed}/bridge",
        "BRIDGE_HTTP_PORT": str(free_port()),
        "LOG_FORMAT": "text",
        "PYTHONPATH": str(_CHECKOUT),
    }
    log = tmp_path / "bridge.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, cwd=tmp_path, stdout=out, stderr=out
        )
    try:

        def waited_twice() -> bool:
            assert process.returncode is None, log.read_text()[-2000:]  # waiting, not exited
            return log.read_text().count("database unreachable") >= 2

        await wait_until(waited_twice, timeout=20, what="two waits for the database")
        text = log.read_text()
        assert "trying again in 1 s" in text and "trying again in 2 s" in text
        assert "pw@" not in text  # the password is not logged
        process.send_signal(signal.SIGTERM)
        # it never started, and it ends as a stop asked for does (README "run": exit 0), with
        # no traceback (it raised the last connection error before)
        assert await asyncio.wait_for(process.wait(), 15) == 0
        assert "Traceback" not in log.read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
