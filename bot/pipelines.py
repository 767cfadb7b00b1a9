"""Pipeline names for the task message, and the stage transition a deploy makes.

A task names its pipeline only by id (contract §1.4 ``Task.pipelineId``); the embed shows the
pipeline's **name** (reference 002 §6.2: ``{name: "Pipeline", value: "ghl-mcp-server"}``).
:class:`PipelineNames` learns names from the events that carry them (``pipelineName`` of
deploy / stage / blocked events, ``pipeline.name`` of pipeline events, a ``pipelineName`` on an
event's task) and otherwise reads ``GET /v1/pipelines/{id}`` (contract §1.5) once, in the
background of the message being posted, with a short time limit. Names are kept in memory,
bounded (least recently used dropped first); a failed look-up is not retried for a while, and
the message shows the id meanwhile.

:func:`stage_text` shows a deploy as its transition (contract Appendix A: ``review → staging``,
``staging → production``), as in §6.2's ``{name: "Stage", value: "staging → production"}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.factory.events import FactoryEvent
from bot.keyed import BoundedMap
from escalation.models import Approval, PipelineStage, Task

__all__ = ["DEFAULT_LIMIT", "PipelineNames", "names_in_event", "stage_text"]

log = logging.getLogger(__name__)

#: Most pipeline names kept in memory.
DEFAULT_LIMIT = 2048

#: Deploy gates of contract Appendix A: the stage a deploy task promotes to, by current stage.
_PROMOTES_TO = {PipelineStage.REVIEW: "staging", PipelineStage.STAGING: "production"}
#: ... and the stage a deploy to a target comes from.
_COMES_FROM = {"staging": "review", "production": "staging"}


def names_in_event(event: FactoryEvent) -> dict[str, str]:
    """``{pipeline id: name}`` for every pipeline ``event`` names (contract §1.6 payloads).

    Read from the raw ``data``: ``pipelineId`` + ``pipelineName`` (deploy, stage-changed,
    blocked), ``pipeline`` ``{id, name}`` (pipeline events), and a task's ``pipelineId`` +
    ``pipelineName`` when the factory adds one (``task``).
    """
    found: dict[str, str] = {}
    data: Any = event.raw.get("data") if isinstance(event.raw, dict) else None
    if not isinstance(data, dict):
        return found
    candidates: list[tuple[Any, Any]] = [(data.get("pipelineId"), data.get("pipelineName"))]
    pipeline = data.get("pipeline")
    if isinstance(pipeline, dict):
        candidates.append((pipeline.get("id"), pipeline.get("name")))
    task = data.get("task")
    if isinstance(task, dict):
        candidates.append((task.get("pipelineId"), task.get("pipelineName")))
    for pipeline_id, name in candidates:
        if isinstance(pipeline_id, str) and isinstance(name, str) and pipeline_id and name:
            found[pipeline_id] = name[:200]
    return found


class PipelineNames:
    """Pipeline id → name, learned from events or read from the factory; bounded.

    Parameters
    ----------
    fetch
        Reads one pipeline's name (``GET /v1/pipelines/{id}``); may raise.
    limit
        Most names kept (least recently used dropped first).
    timeout_seconds
        Longest wait for ``fetch`` before the id is shown instead (seconds).
    retry_after_seconds
        How long a failed look-up is not repeated for the same id (seconds).
    clock
        Monotonic seconds (tests inject one).
    """

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[str]],
        *,
        limit: int = DEFAULT_LIMIT,
        timeout_seconds: float = 2.0,
        retry_after_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._names: BoundedMap[str, str] = BoundedMap(limit)
        self._failed: BoundedMap[str, float] = BoundedMap(limit)
        self._timeout = timeout_seconds
        self._retry_after = retry_after_seconds
        self._clock = clock
        #: look-ups sent to the factory so far
        self.fetches = 0

    def learn(self, pipeline_id: str, name: str) -> None:
        """Remember ``name`` for ``pipeline_id``."""
        self._names[pipeline_id] = name
        self._failed.pop(pipeline_id)

    def learn_from_event(self, event: FactoryEvent) -> None:
        """Remember every pipeline name ``event`` carries (:func:`names_in_event`)."""
        for pipeline_id, name in names_in_event(event).items():
            self.learn(pipeline_id, name)

    def get(self, pipeline_id: str | None) -> str | None:
        """The known name, or ``None`` (never asks the factory)."""
        return None if pipeline_id is None else self._names.get(pipeline_id)

    def __len__(self) -> int:
        return len(self._names)

    async def resolve(self, pipeline_id: str | None) -> str | None:
        """The name, reading it from the factory once when unknown; ``None`` when it cannot be
        had (no id, a recent failure, an error, or no answer within ``timeout_seconds``)."""
        if pipeline_id is None:
            return None
        known = self._names.get(pipeline_id)
        if known is not None:
            return known
        failed_at = self._failed.get(pipeline_id)
        if failed_at is not None and self._clock() - failed_at < self._retry_after:
            return None
        self.fetches += 1
        try:
            async with asyncio.timeout(self._timeout):
                name = await self._fetch(pipeline_id)
        except Exception as exc:  # a name is a nicety: the id is shown instead
            log.info("pipeline %s: name not read (%s)", pipeline_id, exc or type(exc).__name__)
            self._failed[pipeline_id] = self._clock()
            return None
        self.learn(pipeline_id, name)
        return name


def stage_text(task: Task, approval: Approval | None = None) -> str:
    """The Stage field: the stage, or for a deploy its transition (``staging → production``).

    A task is a deploy when its ``context.modalConfig.target`` is ``staging`` or
    ``production``, its stage is ``staging`` (Appendix A: staging → production creates a deploy
    task) or its approval's type is ``deploy``; the target is that ``target`` or,
    else, the next gate after the task's stage (Appendix A).

    Parameters
    ----------
    task
        The task (contract §1.4).
    approval
        Its approval, when known.
    """
    stage = task.stage_name.value if task.stage_name else None
    target = str(task.context.modal_config.get("target") or "").strip().lower()
    is_deploy = (
        target in _COMES_FROM
        or task.stage_name is PipelineStage.STAGING
        or (approval is not None and (approval.type or "").lower() == "deploy")
    )
    if not is_deploy:
        return stage or "—"
    if target not in _COMES_FROM:
        promoted = _PROMOTES_TO.get(task.stage_name) if task.stage_name else None
        if promoted is None:
            return stage or "—"
        target = promoted
    source = stage if stage and stage != target else _COMES_FROM[target]
    return f"{source} → {target}"
