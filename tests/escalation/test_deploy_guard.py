"""The deploy guard: every signal alone and combined, the one way out, and how many approve."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from escalation.deploy_guard import (
    DeployApproval,
    GuardSignal,
    approvals_required,
    guard_signals,
    is_guarded,
)
from escalation.models import Approval, Task


def task(**fields: Any) -> Task:
    base: dict[str, Any] = {
        "id": "t",
        "title": "GHL MCP Server",
        "createdAt": datetime.now(UTC),
        "stageName": "review",
        "context": {"summary": "All tests pass."},
    }
    context = {**base["context"], **fields.pop("context", {})}
    return Task.model_validate({**base, **fields, "context": context})


def approval(kind: str | None, required: int = 1) -> Approval:
    return Approval(id="a1", task_id="t", type=kind, required_approvers=required)


# Each signal alone: (task fields, approval type, approval unread) -> the one signal expected.
SIGNALS: dict[GuardSignal, tuple[dict[str, Any], str | None, bool]] = {
    GuardSignal.PRODUCTION_STAGE: ({"stageName": "production"}, None, False),
    GuardSignal.STAGING_STAGE: ({"stageName": "staging"}, None, False),
    GuardSignal.DEPLOY_APPROVAL: ({}, "deploy", False),
    GuardSignal.APPROVAL_UNREAD: ({}, None, True),
    GuardSignal.TARGET_PRODUCTION: (
        {"context": {"modalConfig": {"target": "production"}}},
        None,
        False,
    ),
    GuardSignal.METRIC: ({"context": {"metrics": {"deploysToProduction": 1}}}, None, False),
    GuardSignal.NAMED: ({"title": "GHL MCP Server → Production"}, None, False),
}


def _signals(fields: dict[str, Any], kind: str | None, unread: bool) -> tuple[GuardSignal, ...]:
    return guard_signals(task(**fields), approval(kind) if kind else None, approval_unread=unread)


def test_an_ordinary_review_is_not_guarded() -> None:
    assert _signals({}, None, False) == ()
    assert _signals({}, "code_review", False) == ()
    assert not is_guarded(task(stageName="building"))


@pytest.mark.parametrize("signal", list(SIGNALS), ids=lambda s: s.name)
def test_each_signal_alone_guards(signal: GuardSignal) -> None:
    fields, kind, unread = SIGNALS[signal]
    assert _signals(fields, kind, unread) == (signal,)


@pytest.mark.parametrize(
    "pair",
    [  # a task has one stage: production and staging never combine
        p
        for p in itertools.combinations(SIGNALS, 2)
        if set(p) != {GuardSignal.PRODUCTION_STAGE, GuardSignal.STAGING_STAGE}
    ],
    ids=lambda p: f"{p[0].name}+{p[1].name}",
)
def test_signals_combined_are_all_reported(pair: tuple[GuardSignal, GuardSignal]) -> None:
    first, second = (SIGNALS[s] for s in pair)
    fields = {**first[0], **second[0]}
    if "context" in first[0] and "context" in second[0]:
        fields["context"] = {**first[0]["context"], **second[0]["context"]}
    got = _signals(fields, first[1] or second[1], first[2] or second[2])
    assert set(pair) <= set(got)


@pytest.mark.parametrize(
    "text",
    [
        "Promote to production",
        "prod deploy of ghl",
        "GHL → Production",
        "PRODUCTION hotfix",
        "(prod)",
    ],
)
def test_production_named_as_a_word_in_title_or_summary(text: str) -> None:
    assert is_guarded(task(title=text))
    assert is_guarded(task(context={"summary": text}))


@pytest.mark.parametrize("text", ["Product page copy", "productivity MCP", "reproducible build"])
def test_words_that_merely_contain_prod_do_not_guard(text: str) -> None:
    assert not is_guarded(task(title=text))


def test_explicit_staging_target_lifts_only_the_implicit_signals() -> None:
    staging = {"context": {"modalConfig": {"target": "staging"}}}
    assert not is_guarded(task(stageName="staging", **staging))
    assert not is_guarded(task(**staging), approval("deploy"))
    assert not is_guarded(task(**staging), None, approval_unread=True)
    # explicit production signals still guard
    assert is_guarded(task(stageName="production", **staging))
    assert is_guarded(task(title="ship to production", **staging))
    assert is_guarded(
        task(context={"modalConfig": {"target": "staging"}, "metrics": {"deploysToProduction": 1}})
    )


def test_metric_false_like_values_do_not_guard() -> None:
    assert not is_guarded(task(context={"metrics": {"deploysToProduction": 0}}))


def test_judged_from_the_task_alone_without_an_approval() -> None:
    assert is_guarded(task(stageName="staging"))
    assert not is_guarded(task())


def test_approvals_required_is_the_larger_of_setting_and_factory() -> None:
    prod = task(stageName="production")
    assert approvals_required(prod, None, 1) == 1
    assert approvals_required(prod, None, 2) == 2
    assert approvals_required(prod, approval("deploy", required=3), 2) == 3
    assert approvals_required(prod, approval("deploy", required=0), 1) == 1
    # an unguarded task needs one approver whatever is configured
    assert approvals_required(task(), approval("code_review", required=2), 2) == 1


def test_deploy_approval_round_trips_its_wire_shape() -> None:
    at = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    vote = DeployApproval(discord_user_id=42, name="alice", factory_user_id="u-alice", at=at)
    wire = vote.to_wire()
    assert wire == {
        "discordUserId": "42",
        "name": "alice",
        "factoryUserId": "u-alice",
        "at": "2026-11-28T12:00:00+00:00",
    }
    assert DeployApproval.from_wire(wire) == vote


@pytest.mark.parametrize(
    ("stage", "signal"),
    [
        ("production", GuardSignal.APPROVAL_PRODUCTION),
        ("Staging", GuardSignal.APPROVAL_STAGING),
    ],
)
def test_the_approvals_own_stage_guards_whatever_the_tasks(stage: str, signal: GuardSignal) -> None:
    """Contract §1.4: ``Approval.stageName`` is required; ``Task.stageName`` may be null or an
    earlier stage. A production stage gate is a deploy, needing its own approvers."""
    gate = Approval(id="a1", task_id="t", type="stage_gate", stage_name=stage, required_approvers=2)
    for fields in ({"stageName": None}, {"stageName": "review"}):
        assert guard_signals(task(**fields), gate) == (signal,)
        assert approvals_required(task(**fields), gate, 1) == 2
    # an explicit staging target lifts the staging gate, never the production one
    staging = {"context": {"modalConfig": {"target": "staging"}}}
    assert is_guarded(task(**staging), gate) is (signal is GuardSignal.APPROVAL_PRODUCTION)
