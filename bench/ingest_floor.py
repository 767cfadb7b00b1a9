"""The floor of ``ingest``: a bare aiohttp server under the same client, beside Alertmanager.

``python -m bench.ingest_floor [--senders N] [--seconds S]`` (not one of ``python -m bench``'s)
answers the question the ``ingest`` target raises: how fast can *any* aiohttp server take one
request per event from this benchmark's client on these 2 cores? It runs, one after the other,
for ``S`` seconds each (default 10) with ``N`` concurrent senders (default 64):

1. a child process serving ``POST /events`` through aiohttp on uvloop exactly as the bridge's
   intake is set up (:mod:`bot.factory.intake`: ``AppRunner(access_log=None)``,
   ``keepalive_timeout=75``), whose handler reads the body and answers the bridge's 202 JSON:
   no signature check, no validation, nothing stored;
2. Alertmanager, one alert per request (:func:`bench.alertmanager.post_alerts`).

Both are fed the ``ingest`` benchmark's bodies by its client code
(:func:`bench.ingest.send_events`). It prints requests/s, the server's CPU per request (every
thread, ``/proc/<pid>/stat``) and the client's share of a core (``time.process_time`` of this
process). Bounded: two phases of ``S`` seconds and the start-up of each server; only
127.0.0.1. Needs Debian's ``prometheus-alertmanager`` for the second phase.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from bench.alertmanager import post_alerts, running_alertmanager
from bench.common import cpu_seconds, signed_pipeline_events
from bench.ingest import send_events
from sandbox.world import free_port

#: The child: a bare aiohttp app set up as the bridge's intake, on uvloop.
SERVER = """
import asyncio, sys
import uvloop
from aiohttp import web

async def events(request):
    await request.read()
    return web.json_response({"ok": True, "data": {"status": "accepted"}}, status=202)

async def main(port):
    app = web.Application()
    app.router.add_post("/events", events)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=75.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

uvloop.install()
asyncio.run(main(int(sys.argv[1])))
"""


def _line(what: str, requests: int, elapsed: float, server_cpu: float, client_cpu: float) -> str:
    rate = requests / elapsed if elapsed else 0.0
    per_request = 1e6 * server_cpu / requests if requests else float("nan")
    return (
        f"{what}: {rate:,.0f} requests/s; server {per_request:.0f} µs CPU per request "
        f"({server_cpu / elapsed:.2f} of a core); client {client_cpu / elapsed:.2f} of a core"
    )


async def main(senders: int, seconds: float) -> None:
    """Run both phases and print one line each (see the module docstring)."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        ready = await asyncio.wait_for(server.stdout.readline(), timeout=30)
        if ready.strip() != b"ready":
            raise RuntimeError("the bare aiohttp server did not start")
        events = signed_pipeline_events(int(12_000 * seconds))
        cpu, client = cpu_seconds(server.pid), time.process_time()
        accepted, other, elapsed = await send_events(
            f"http://127.0.0.1:{port}/events", events, senders=senders, duration=seconds
        )
        print(
            _line(
                f"bare aiohttp, {senders} senders",
                accepted + other,
                elapsed,
                cpu_seconds(server.pid) - cpu,
                time.process_time() - client,
            ),
            flush=True,
        )
    finally:
        server.kill()
        await server.wait()
    async with running_alertmanager(webhook=False) as manager:
        cpu, client = cpu_seconds(manager.pid), time.process_time()
        accepted, elapsed = await post_alerts(
            manager.base_url, senders=senders, per_request=1, duration=seconds
        )
        print(
            _line(
                f"Alertmanager, {senders} senders",
                accepted,
                elapsed,
                cpu_seconds(manager.pid) - cpu,
                time.process_time() - client,
            ),
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_floor", description=__doc__)
    parser.add_argument("--senders", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.senders, arguments.seconds))
