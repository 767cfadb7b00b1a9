"""Failed pipelines at a stage or priority this bridge does not know are still reported.

A newer factory may add stages and priorities (contract §1.4 enums grow): a pipeline that
failed at ``security-scan``, or whose priority is ``urgent``, is listed by
``/factory pipelines`` and ``/factory blockers`` like any other (the unknown priority counts
as high, the unknown stage as no known stage), never left out so that the report says
"Nothing is stuck".
"""

from __future__ import annotations

from sandbox.world import World
from tests.e2e.test_commands_e2e import command, listing
from tests.support.harness import BridgeProcess


async def test_failed_pipelines_at_a_new_stage_or_priority_are_listed_and_blocking(
    world: World, bridge: BridgeProcess
) -> None:
    world.factory.create_pipeline(name="ghl", status="active")
    world.factory.create_pipeline(
        name="stripe-broken", status="failed", currentStage="security-scan"
    )
    world.factory.create_pipeline(name="shop-broken", status="failed", priority="urgent")

    pipelines = await listing(
        world, await command(world, "factory pipelines", user=world.people.alice)
    )
    [embed] = pipelines.embeds
    assert embed["title"] == "🏗️ Pipelines (3)"
    assert embed["description"].splitlines() == [
        "❌ **shop-broken** · 🟠 high · review 5/8 ▰▰▰▰▰▱▱▱ · failed",
        "❌ **stripe-broken** · 🟡 medium · stage — · failed",
        "▶️ **ghl** · 🟡 medium · review 5/8 ▰▰▰▰▰▱▱▱ · active",
    ]

    blockers = await listing(
        world, await command(world, "factory blockers", user=world.people.alice)
    )
    [embed] = blockers.embeds
    assert embed["title"] == "🧱 Blockers (2)"
    assert "Nothing is stuck" not in embed["description"]
    lines = embed["description"].splitlines()
    assert [line.split(" · ")[0] for line in lines] == [
        "🟠 **shop-broken — review failed**",
        "🟡 **stripe-broken — a stage failed**",
    ]
    assert all("**Stage failed — requires intervention**" in line for line in lines)
    assert world.discord.errors == []
