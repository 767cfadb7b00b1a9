"""Webhooks end to end: secret rotation (README "Rotating the webhook secret") and
registration with the factory (``BRIDGE_PUBLIC_URL``, contract §1.5 ``/v1/webhooks``).

While ``FACTORY_WEBHOOK_SECRET_PREVIOUS`` is set, the bridge accepts deliveries signed by the old
or the new secret and its log says which; once it is unset, the old secret is refused (401).
The bridge registers its ``POST /events`` once, however often and in how many replicas it starts.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

from bot.factory.client import FactoryClient
from bot.factory.webhooks import HANDLED_EVENTS, WebhookRegistrar
from sandbox.world import FACTORY_API_KEY, TASKS_CHANNEL_ID, WEBHOOK_SECRET, World
from tests.support.harness import BridgeProcess, wait_until

NEW_SECRET = "sandbox-webhook-secret-2"


def _task_messages(world: World) -> int:
    return len([m for m in world.discord.messages(TASKS_CHANNEL_ID) if m.embeds and not m.deleted])


async def test_previous_secret_accepted_during_rotation_and_refused_after(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(
        factory_webhook_secret=NEW_SECRET, factory_webhook_secret_previous=WEBHOOK_SECRET
    )
    await bridge.start()
    # the factory still signs with the old secret: accepted, logged as "previous"
    await world.factory.create_task(title="signed by the old secret")
    await world.discord.wait_for(lambda: _task_messages(world) == 1, 10)
    assert [d.status for d in world.factory.deliveries] == [202]
    assert "signed with the previous webhook secret" in bridge.log_tail(200)
    # the factory switched: accepted, logged as "current"
    world.factory.webhook_secret = NEW_SECRET
    await world.factory.create_task(title="signed by the new secret")
    await world.discord.wait_for(lambda: _task_messages(world) == 2, 10)
    assert "signed with the current webhook secret" in bridge.log_tail(200)
    await bridge.terminate()

    # rotation over: the previous secret is unset, a delivery signed with it is refused
    after = make_bridge(factory_webhook_secret=NEW_SECRET)
    await after.start()
    world.factory.webhook_secret = WEBHOOK_SECRET
    results = await world.factory.emit("task.created", {"task": {"id": "t-old", "title": "x"}})
    assert [r.status for r in results if r.target == "webhook"] == [401]
    world.factory.webhook_secret = NEW_SECRET
    await world.factory.create_task(title="new secret still fine")
    await world.discord.wait_for(lambda: _task_messages(world) == 3, 10)


# --- registration (BRIDGE_PUBLIC_URL, contract §1.5 /v1/webhooks) -------------------------

WEBHOOKS = r"/v1/webhooks"
CHECKOUT = str(Path(__file__).resolve().parents[2])  # the CLI child runs this checkout


async def webhooks_cli(world: World, *args: str) -> str:
    env = {**os.environ, **world.env(bridge_public_url=world.bridge_url)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (CHECKOUT, env.get("PYTHONPATH", "")) if p)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "webhooks",
        *args,
        cwd=str(world.workdir),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_registers_once_across_two_starts_and_events_arrive_through_it(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    world.factory.webhook_url = None  # only what the bridge registers is delivered
    first = make_bridge(bridge_public_url=world.bridge_url)
    await first.start()
    await wait_until(lambda: len(world.factory.webhooks) == 1, timeout=10, what="registration")
    [hook] = world.factory.webhooks.values()
    assert hook["url"] == f"{world.bridge_url}/events"
    assert hook["secret"] == WEBHOOK_SECRET
    assert set(HANDLED_EVENTS) == set(hook["events"])
    assert "task.created" in hook["events"] and "deploy.failed" in hook["events"]
    await world.factory.create_task(title="delivered to the registered webhook")
    await world.discord.wait_for(lambda: _task_messages(world) == 1, 10)
    await first.terminate()

    second = make_bridge(bridge_public_url=world.bridge_url)
    await second.start()
    await wait_until(
        lambda: "already registered" in second.log_tail(300), timeout=10, what="the second start"
    )
    assert len(world.factory.webhooks) == 1
    assert len(world.factory.calls("POST", WEBHOOKS)) == 1
    listing = await webhooks_cli(world)
    assert f"{hook['id']}  {world.bridge_url}/events" in listing and "(this bridge)" in listing


async def test_replicas_starting_together_register_one_webhook_and_a_deleted_one_comes_back(
    world: World,
) -> None:
    factory = FactoryClient(world.factory.base_url, FACTORY_API_KEY)
    try:

        def registrar() -> WebhookRegistrar:
            return WebhookRegistrar(factory, public_url=world.bridge_url, secret=WEBHOOK_SECRET)

        results = await asyncio.gather(registrar().ensure(), registrar().ensure())
        assert len(world.factory.webhooks) == 1
        assert {r.webhook["id"] for r in results} == set(world.factory.webhooks)
        # deleted by hand at the factory: the next start registers it again (not a stale replay)
        await factory.delete_webhook(results[0].webhook["id"])
        again = await registrar().ensure()
        assert again.outcome == "registered"
        assert list(world.factory.webhooks) == [again.webhook["id"]]
        # an older registration lacking event types is replaced by a complete one
        old = WebhookRegistrar(
            factory, public_url=world.bridge_url, secret=WEBHOOK_SECRET, events=["task.created"]
        )
        await factory.delete_webhook(again.webhook["id"])
        await old.ensure()
        upgraded = await registrar().ensure()
        assert upgraded.outcome == "replaced"
        assert [h["events"] for h in world.factory.webhooks.values()] == [list(HANDLED_EVENTS)]
        # rotation: --replace gives the factory the new secret under a fresh webhook
        rotated = WebhookRegistrar(factory, public_url=world.bridge_url, secret="new-secret-2")
        replaced = await rotated.replace()
        assert replaced.outcome == "replaced"
        [hook] = world.factory.webhooks.values()
        assert hook["id"] == replaced.webhook["id"] and hook["secret"] == "new-secret-2"
    finally:
        await factory.aclose()
