"""Every time in a contract entity is aware UTC (factory contract §1.4: ISO 8601 UTC).

A time without a zone is UTC in every model, not only in ``Task``: a naive ``Pipeline.updatedAt``
mixed with the aware clock of the bridge broke ``/factory blockers``. A time with an offset is
converted to UTC; one past year 9999 once in UTC is the last instant.
"""

from __future__ import annotations

import importlib
import pkgutil
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, get_args, get_origin

import pytest
from pydantic import AfterValidator

import bot
import escalation
from escalation import models
from escalation.models import ContractModel, Pipeline, Task
from escalation.policy import LAST_INSTANT

AT = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "attribute"),
    [("updatedAt", "updated_at"), ("createdAt", "created_at"), ("slaDeadline", "sla_deadline")],
)
def test_a_pipeline_time_without_a_zone_is_utc(field: str, attribute: str) -> None:
    pipeline = Pipeline.model_validate(
        {"id": "p-1", "name": "Stripe MCP", field: "2026-11-21T10:00:00"}
    )
    value = getattr(pipeline, attribute)
    assert value == AT and value.tzinfo is UTC
    assert AT - value == timedelta(0)  # comparable with the bridge's aware clock


def test_a_pipeline_time_with_an_offset_is_converted_to_utc() -> None:
    pipeline = Pipeline.model_validate(
        {"id": "p-1", "name": "Stripe MCP", "updatedAt": "2026-11-21T11:00:00+01:00"}
    )
    assert pipeline.updated_at == AT and pipeline.updated_at.tzinfo is UTC


def test_a_pipeline_time_past_year_9999_in_utc_is_the_last_instant() -> None:
    pipeline = Pipeline.model_validate(
        {"id": "p-1", "name": "Stripe MCP", "slaDeadline": "9999-12-31T23:59:59-05:00"}
    )
    assert pipeline.sla_deadline == LAST_INSTANT


def test_a_model_built_in_python_is_normalised_too() -> None:
    local = datetime(2026, 11, 21, 5, 0, tzinfo=timezone(timedelta(hours=-5)))
    pipeline = Pipeline(
        id="p-1", name="Stripe MCP", created_at=local, updated_at=AT.replace(tzinfo=None)
    )
    assert pipeline.created_at == AT and pipeline.created_at.tzinfo is UTC
    assert pipeline.updated_at == AT and pipeline.updated_at.tzinfo is UTC


def test_every_task_time_is_aware_utc() -> None:
    task = Task.model_validate(
        {
            "id": "t-1",
            "title": "Release",
            "createdAt": "2026-11-21T10:00:00",
            "updatedAt": "2026-11-21T10:00:00",
            "slaDeadline": "2026-11-21T11:00:00+01:00",
            "claimedAt": "2026-11-21T10:00:00Z",
            "decidedAt": "2026-11-21T10:00:00",
        }
    )
    for value in (
        task.created_at,
        task.updated_at,
        task.sla_deadline,
        task.claimed_at,
        task.decided_at,
    ):
        assert value == AT and value.tzinfo is UTC


def _contract_models() -> list[type[ContractModel]]:
    # every contract model the bridge defines: import every module of the two packages that
    # hold them, then walk ContractModel's subclasses
    for package in (escalation, bot):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not module.name.endswith(".__main__"):  # runs the CLI when imported
                importlib.import_module(module.name)
    found: list[type[ContractModel]] = []
    pending = list(ContractModel.__subclasses__())
    while pending:
        model = pending.pop()
        found.append(model)
        pending.extend(model.__subclasses__())
    return found


def _plain_datetime_in(annotation: object) -> bool:
    """Whether ``annotation`` holds a ``datetime`` not typed :data:`UtcDatetime`."""
    if annotation is datetime:
        return True
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        if base is datetime and any(
            isinstance(m, AfterValidator) and m.func is models._in_utc for m in metadata
        ):
            return False
    return any(_plain_datetime_in(arg) for arg in get_args(annotation))


def test_no_contract_model_has_a_plain_datetime_field() -> None:
    # the UTC rule lives in the UtcDatetime type: a new model or field typed plain ``datetime``
    # would keep a naive or local time the ladder then compares with its aware clock
    plain = []
    for model in _contract_models():
        for name, field in model.model_fields.items():
            utc = any(
                isinstance(m, AfterValidator) and m.func is models._in_utc for m in field.metadata
            )
            if _plain_datetime_in(field.annotation) and not utc:
                plain.append(f"{model.__qualname__}.{name}")
    assert plain == []
    assert len(_contract_models()) >= 17  # the walk found the models (contract §1.4, events)
