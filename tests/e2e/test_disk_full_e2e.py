"""A database that answers reads but takes no write (a full disk): ``/healthz`` says so with the
reason (503), clicks are answered with the truth (the bridge could not record the decision, so
nothing was sent), and everything works again once writes succeed.

The full disk is the bridge process's file-size limit (``RLIMIT_FSIZE``, set on the running
child with ``prlimit``): every write that extends a file fails (EFBIG), as with ENOSPC; SQLite
reports a disk I/O error.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from sandbox.discord_emulator import RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until

COMPLETE = r"/v1/tasks/[^/]+/complete"


@contextmanager
def disk_full(bridge: BridgeProcess) -> Iterator[None]:
    """No file of the bridge process can grow while inside (soft limit only: restorable)."""
    assert bridge.process is not None
    pid = bridge.process.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, hard))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))


async def healthz(world: World) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=world.bridge_url, timeout=10) as client:
        response = await client.get("/healthz")
    return response.status_code, response.json()


def task_message(world: World) -> RecordedMessage | None:
    found = [m for m in world.discord.messages(TASKS_CHANNEL_ID) if m.embeds and not m.ephemeral]
    return found[0] if found else None


async def test_disk_full_is_unhealthy_and_clicks_are_told_the_truth(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge()
    await bridge.start()
    task = await world.factory.create_task(title="Release", priority="high", type="review")
    await world.discord.wait_for(lambda: task_message(world) is not None, 10)
    message = task_message(world)
    assert message is not None
    assert (await healthz(world))[0] == 200
    with disk_full(bridge):
        status, body = await healthz(world)
        assert status == 503
        assert body["checks"]["database"] == "up"  # reads still work …
        assert body["checks"]["database_write"].startswith("down: ")  # … writes do not
        assert len(body["checks"]["database_write"]) > len("down: ")  # with the reason
        click = await world.discord.press_button(
            TASKS_CHANNEL_ID, "Approve", user=world.people.alice
        )
        await click.response()
        await wait_until(
            lambda: "could not record" in (click.reply_content or ""), what="the answer"
        )
        assert "nothing was sent" in (click.reply_content or "")
        assert world.factory.calls("POST", COMPLETE) == []
        assert "Approve" in message.button_labels
    await wait_until(lambda: _healthy(world), timeout=10, what="healthy again")
    again = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.alice)
    await again.response()
    await wait_until(lambda: "approved" in (again.reply_content or ""), what="the decision")
    assert world.factory.tasks[task["id"]]["decision"] == "approved"


async def _healthy(world: World) -> bool:
    return (await healthz(world))[0] == 200
