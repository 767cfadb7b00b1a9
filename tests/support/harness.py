"""Run the real bridge as a separate process, the way production runs it.

Used by the end-to-end tests and the benchmarks: the bridge is started with
``python -m bot run`` and configured only through environment variables.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

__all__ = ["BridgeProcess", "wait_until"]

# The repository root: tests/support/harness.py → ../..
_CHECKOUT = Path(__file__).resolve().parents[2]

#: Interval between two looks at a condition in :func:`wait_until` (seconds).
POLL_INTERVAL = 0.02


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 10.0,
    what: str = "condition",
) -> None:
    """Wait until ``predicate()`` is true, looking every 20 ms, for at most ``timeout`` seconds.

    Raises
    ------
    TimeoutError
        Naming ``what`` when the condition did not become true in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL)


class BridgeProcess:
    """``python -m bot run`` in a child process.

    Parameters
    ----------
    env:
        The bridge's settings as environment variables (added to the current environment).
    workdir:
        Working directory of the child (no stray ``.env`` is read); its log goes to
        ``workdir/bridge-<n>.log``.
    port:
        ``BRIDGE_HTTP_PORT``, polled on ``/healthz`` to know the bridge is up.
    name:
        Names its log files (``<name>-<n>.log``): several bridges may share one workdir
        (a leader and standbys on one PostgreSQL ``DATABASE_URL``).
    standby_ok:
        :meth:`start` returns once ``/healthz`` answers 200 even as a standby; otherwise
        (one bridge on a database, restarted after a crash: it waits a lease before it
        leads) it waits until the bridge says it is the leader.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        workdir: Path,
        port: int,
        *,
        name: str = "bridge",
        standby_ok: bool = False,
    ) -> None:
        self.env = {**env, "BRIDGE_HTTP_PORT": str(port)}
        self.workdir = Path(workdir)
        self.port = port
        self.name = name
        self.standby_ok = standby_ok
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.log_path: Path | None = None

    async def start(self, *, timeout: float = 30.0) -> None:
        """Start the child and wait until ``/healthz`` answers 200 (as the leader unless
        ``standby_ok``).

        Raises
        ------
        RuntimeError
            When the child exits or does not become healthy in time (with its log's tail).
        """
        self.starts += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}-{self.starts}.log"
        log = self.log_path.open("wb")
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        # The child must run the checkout these tests belong to, not whatever an
        # editable install points at (it starts in a scratch directory).
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (str(_CHECKOUT), env.get("PYTHONPATH", "")) if part
        )
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=str(self.workdir),
            env=env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        log.close()
        try:
            await wait_until(self._healthy, timeout=timeout, what="the bridge's /healthz")
        except TimeoutError:
            await self.kill()
            raise RuntimeError(f"bridge did not become healthy:\n{self.log_tail()}") from None

    async def _healthy(self) -> bool:
        if self.process is None or self.process.returncode is not None:
            raise RuntimeError(f"bridge exited early:\n{self.log_tail()}")
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                response = await client.get(f"http://127.0.0.1:{self.port}/healthz")
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            return False
        role = (response.json().get("data") or {}).get("role")
        return self.standby_ok or role in (None, "leader")

    async def health(self) -> tuple[int, dict[str, Any]]:
        """``GET /healthz``: (status code, JSON body).

        Raises
        ------
        httpx.HTTPError
            When the bridge does not answer.
        """
        async with httpx.AsyncClient(timeout=2.0) as client:
            response = await client.get(f"http://127.0.0.1:{self.port}/healthz")
        return response.status_code, response.json()

    async def role(self) -> str | None:
        """``"leader"`` / ``"standby"`` from a healthy ``/healthz``; ``None`` when it does not
        answer 200 (starting, taking over, gone)."""
        try:
            status, body = await self.health()
        except httpx.HTTPError:
            return None
        return str(body["data"]["role"]) if status == 200 else None

    def pause(self) -> None:
        """``SIGSTOP``: the process is frozen (no timers, no renewals) until :meth:`resume`."""
        assert self.process is not None and self.process.returncode is None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """``SIGCONT`` after :meth:`pause`."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGCONT)

    async def wait_exit(self, *, timeout: float = 15.0) -> int:
        """Wait for the child to exit by itself; its exit status.

        Raises
        ------
        TimeoutError
            When it still runs after ``timeout`` seconds.
        """
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout)

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the current log."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def kill(self) -> None:
        """``kill -9`` the child (no cleanup runs) and reap it."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def terminate(self, *, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait for a graceful exit (SIGKILL after ``timeout``); the exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.resume()  # a paused child would not see SIGTERM
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                await self.kill()
        return self.process.returncode
