"""The Pipeline field shows the pipeline's name, not its UUID (reference 002 §6.2), read once.

The name comes from an event that carries it or from ``GET /v1/pipelines/{id}`` (contract §1.5),
cached in memory; a deploy's Stage shows its transition (Appendix A, ``staging → production``).
"""

from __future__ import annotations

from sandbox.discord_emulator import RecordedMessage
from sandbox.world import World
from tests.support.harness import BridgeProcess
from tests.support.reading import fields, task_messages

GET_PIPELINE = r"/v1/pipelines/[^/]+"


def message_of(world: World, task_id: str) -> RecordedMessage | None:
    return next((m for m in task_messages(world) if f"task {task_id}" in str(m.embeds[0])), None)


async def shown(world: World, task_id: str) -> RecordedMessage:
    await world.discord.wait_for(lambda: message_of(world, task_id) is not None, 10)
    message = message_of(world, task_id)
    assert message is not None
    return message


async def test_pipeline_name_is_read_once_and_shown(world: World, bridge: BridgeProcess) -> None:
    pipeline = world.factory.create_pipeline(name="stripe-mcp")
    first = await world.factory.create_task(title="Review A", pipelineId=pipeline["id"])
    second = await world.factory.create_task(title="Review B", pipelineId=pipeline["id"])
    for task in (first, second):
        message = await shown(world, task["id"])
        assert fields(message)["Pipeline"] == "stripe-mcp"
        assert pipeline["id"] not in fields(message)["Pipeline"]
    assert len(world.factory.calls("GET", GET_PIPELINE)) == 1


async def test_name_from_an_event_needs_no_lookup_and_unknown_ids_stay_ids(
    world: World, bridge: BridgeProcess
) -> None:
    await world.factory.emit(
        "pipeline.stage_changed",
        {
            "pipelineId": "pl-7",
            "pipelineName": "hubspot-mcp",
            "fromStage": "review",
            "toStage": "staging",
            "triggeredBy": "agent-qa",
        },
        channel="pipeline:*",
    )
    deploy = await world.factory.create_task(
        title="HubSpot to production", pipelineId="pl-7", stageName="staging"
    )
    message = await shown(world, deploy["id"])
    assert fields(message)["Pipeline"] == "hubspot-mcp"
    assert fields(message)["Stage"] == "staging → production"
    assert world.factory.calls("GET", GET_PIPELINE) == []
    # the factory does not know this one: the id is shown
    lost = await world.factory.create_task(title="Orphan", pipelineId="pl-missing")
    assert fields(await shown(world, lost["id"]))["Pipeline"] == "pl-missing"
