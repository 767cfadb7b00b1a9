"""Who may decide: approver roles, deploy-approver roles for production, fail closed."""

from __future__ import annotations

from datetime import UTC, datetime

from escalation.models import Task
from escalation.permissions import decision_refusal, needs_deploy_confirmation

APPROVER, DEPLOYER = 1, 2


def task(**fields: object) -> Task:
    return Task.model_validate({"id": "t", "title": "x", "createdAt": datetime.now(UTC), **fields})


def refusal(t: Task, decision: str, roles: set[int]) -> str | None:
    return decision_refusal(
        t, decision, roles, approver_role_ids={APPROVER}, deploy_approver_role_ids={DEPLOYER}
    )


def test_approver_may_decide_ordinary_tasks() -> None:
    assert refusal(task(), "approved", {APPROVER}) is None
    assert refusal(task(), "rejected", {APPROVER}) is None


def test_member_without_role_is_refused_with_reason() -> None:
    reason = refusal(task(), "approved", set())
    assert reason is not None and "approver role" in reason


def test_production_approval_needs_deploy_role_but_rejection_does_not() -> None:
    prod = task(stageName="production")
    assert "deploy-approver" in (refusal(prod, "approved", {APPROVER}) or "")
    assert refusal(prod, "approved", {DEPLOYER}) is None  # a deploy approver is an approver
    assert refusal(prod, "rejected", {APPROVER}) is None


def test_context_can_say_it_deploys_to_production() -> None:
    via_config = task(
        stageName="staging", context={"summary": "", "modalConfig": {"target": "production"}}
    )
    via_metric = task(context={"summary": "", "metrics": {"deploysToProduction": 1}})
    assert needs_deploy_confirmation(via_config, "approved")
    assert needs_deploy_confirmation(via_metric, "approved")
    assert not needs_deploy_confirmation(via_metric, "rejected")
    # the staging gate promotes to production (contract Appendix A): guarded
    assert needs_deploy_confirmation(task(stageName="staging"), "approved")
    assert not needs_deploy_confirmation(task(stageName="review"), "approved")


def test_a_caller_that_knows_the_approval_passes_the_guard_verdict() -> None:
    plain = task(stageName="review")
    assert needs_deploy_confirmation(plain, "approved", guarded=True)
    assert "deploy-approver" in (
        decision_refusal(
            plain,
            "approved",
            {APPROVER},
            approver_role_ids={APPROVER},
            deploy_approver_role_ids={DEPLOYER},
            guarded=True,
        )
        or ""
    )


def test_no_roles_configured_fails_closed() -> None:
    reason = decision_refusal(
        task(), "approved", {1, 2}, approver_role_ids=(), deploy_approver_role_ids=()
    )
    assert reason is not None and "No approver roles" in reason
