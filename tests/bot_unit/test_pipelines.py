"""bot.pipelines: the names cache (bounded, one look-up, failures remembered) and stage_text."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bot.pipelines import PipelineNames, stage_text
from escalation.models import Approval, Task


def task(**fields: object) -> Task:
    return Task.model_validate(
        {"id": "t-1", "title": "x", "createdAt": datetime(2026, 1, 1, tzinfo=UTC), **fields}
    )


async def test_names_are_read_once_bounded_and_failures_wait() -> None:
    calls: list[str] = []
    now = [0.0]

    async def fetch(pipeline_id: str) -> str:
        calls.append(pipeline_id)
        if pipeline_id == "bad":
            raise RuntimeError("404")
        return f"name-{pipeline_id}"

    names = PipelineNames(fetch, limit=2, retry_after_seconds=60, clock=lambda: now[0])
    assert await names.resolve("a") == "name-a"
    assert await names.resolve("a") == "name-a"
    assert calls == ["a"]
    assert await names.resolve("bad") is None
    assert await names.resolve("bad") is None  # not asked again within a minute
    now[0] = 61
    assert await names.resolve("bad") is None
    assert calls == ["a", "bad", "bad"]
    await names.resolve("b")
    await names.resolve("c")
    assert len(names) == 2 and names.get("a") is None  # least recently used dropped
    assert await names.resolve(None) is None


async def test_a_slow_factory_costs_at_most_the_timeout() -> None:
    async def fetch(pipeline_id: str) -> str:
        await asyncio.Event().wait()  # never answers
        return "never"

    names = PipelineNames(fetch, timeout_seconds=0.01)
    assert await names.resolve("slow") is None


def test_stage_text_shows_a_deploy_as_its_transition() -> None:
    assert stage_text(task(stageName="review")) == "review"
    assert stage_text(task()) == "—"
    assert stage_text(task(stageName="staging")) == "staging → production"
    assert (
        stage_text(task(stageName="review", context={"modalConfig": {"target": "staging"}}))
        == "review → staging"
    )
    assert stage_text(task(context={"modalConfig": {"target": "production"}})) == (
        "staging → production"
    )
    deploy = Approval.model_validate(
        {"id": "a1", "taskId": "t-1", "status": "pending", "type": "deploy"}
    )
    assert stage_text(task(stageName="review"), deploy) == "review → staging"
