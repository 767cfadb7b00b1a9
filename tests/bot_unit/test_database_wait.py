"""A bridge started while its PostgreSQL server is unreachable (restarting, failing over: the
leader it deposed is being restarted at the same moment) waits for it, saying so, instead of
exiting at once and being restarted until its supervisor gives up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sandbox.world import free_port
from tests.bot_unit.test_settings import REQUIRED

_CHECKOUT = Path(__file__).resolve().parents[2]


def test_run_waits_for_an_unreachable_postgresql_and_stops_when_asked(tmp_path: Path) -> None:
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
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and log.read_text().count("database unreachable") < 2:
            assert process.poll() is None, log.read_text()[-2000:]  # still waiting, not exited
            time.sleep(0.2)
        text = log.read_text()
        assert text.count("database unreachable") >= 2, text[-2000:]
        assert "trying again in 1 s" in text and "trying again in 2 s" in text
        assert "pw@" not in text  # the password is not logged
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) != 0  # it never started; it says so and ends
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
