"""Webhook secret rotation end to end (README "Rotating the webhook secret").

While ``FACTORY_WEBHOOK_SECRET_PREVIOUS`` is set, the bridge accepts deliveries signed by the old
or the new secret and its log says which; once it is unset, the old secret is refused (401).
"""

from __future__ import annotations

from collections.abc import Callable

from sandbox.world import TASKS_CHANNEL_ID, WEBHOOK_SECRET, World
from tests.support.harness import BridgeProcess

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
