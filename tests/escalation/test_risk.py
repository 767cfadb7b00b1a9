"""Risk rules of ``escalation.risk`` (master plan §7 "Smart Batching")."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from escalation.models import Task, TaskContext, TestResults
from escalation.risk import Risk, RiskAssessment, assess_risk

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def results(**overrides: Any) -> TestResults:
    values: dict[str, Any] = {
        "total": 100,
        "passed": 100,
        "failed": 0,
        "skipped": 0,
        "coverage_percent": 90.0,
    }
    values.update(overrides)
    return TestResults(**values)


def make_task(
    test_results: TestResults | None = None,
    *,
    metrics: dict[str, float] | None = None,
    modal_config: dict[str, Any] | None = None,
) -> Task:
    return Task(
        id="t1",
        title="freshdesk",
        created_at=T0,
        context=TaskContext(
            test_results=test_results,
            metrics=metrics or {},
            modal_config=modal_config or {},
        ),
    )


def test_all_green_is_low() -> None:
    assert assess_risk(make_task(results())) == RiskAssessment(Risk.LOW, "tests pass")


def test_coverage_exactly_at_threshold_is_low() -> None:
    assert assess_risk(make_task(results(coverage_percent=80.0))).risk is Risk.LOW


def test_no_test_results_is_medium() -> None:
    assert assess_risk(make_task(None)) == RiskAssessment(Risk.MEDIUM, "no test results")


@pytest.mark.parametrize(("failed", "reason"), [(1, "1 failure"), (42, "42 failures")])
def test_failures_are_high(failed: int, reason: str) -> None:
    task = make_task(results(passed=100 - failed, failed=failed))
    assert assess_risk(task) == RiskAssessment(Risk.HIGH, reason)


def test_failures_win_over_low_coverage() -> None:
    task = make_task(results(passed=58, failed=42, coverage_percent=10.0))
    assert assess_risk(task) == RiskAssessment(Risk.HIGH, "42 failures")


def test_coverage_more_than_ten_points_below_is_high() -> None:
    task = make_task(results(coverage_percent=65.0))
    assert assess_risk(task) == RiskAssessment(Risk.HIGH, "coverage 65% < 80%")
    assert assess_risk(make_task(results(coverage_percent=69.9))).risk is Risk.HIGH


def test_coverage_exactly_ten_points_below_is_only_a_warning() -> None:
    task = make_task(results(coverage_percent=70.0))
    assert assess_risk(task) == RiskAssessment(Risk.MEDIUM, "1 warning")


def test_each_skipped_test_is_a_warning() -> None:
    assert assess_risk(make_task(results(passed=99, skipped=1))) == RiskAssessment(
        Risk.MEDIUM, "1 warning"
    )
    assert assess_risk(make_task(results(passed=98, skipped=2))) == RiskAssessment(
        Risk.MEDIUM, "2 warnings"
    )


def test_skipped_and_low_coverage_add_up() -> None:
    task = make_task(results(passed=99, skipped=1, coverage_percent=75.0))
    assert assess_risk(task) == RiskAssessment(Risk.MEDIUM, "2 warnings")


def test_no_test_ran_is_medium() -> None:
    task = make_task(results(total=0, passed=0, coverage_percent=100.0))
    assert assess_risk(task) == RiskAssessment(Risk.MEDIUM, "no tests ran")


def test_custom_threshold() -> None:
    assert assess_risk(make_task(results(coverage_percent=85.0)), min_coverage_percent=90).risk is (
        Risk.MEDIUM
    )
    assert assess_risk(
        make_task(results(coverage_percent=79.0)), min_coverage_percent=90
    ) == RiskAssessment(Risk.HIGH, "coverage 79% < 90%")


def test_coverage_is_truncated_not_rounded_in_reason() -> None:
    task = make_task(results(coverage_percent=79.96))
    assert assess_risk(task, min_coverage_percent=95).reason == "coverage 79.9% < 95%"


@pytest.mark.parametrize(
    ("stated", "risk"), [(0, Risk.LOW), (1, Risk.MEDIUM), (2, Risk.HIGH), (7, Risk.HIGH)]
)
def test_risk_stated_in_metrics_wins(stated: float, risk: Risk) -> None:
    failing = results(passed=58, failed=42)
    assert assess_risk(make_task(failing, metrics={"risk": stated})) == RiskAssessment(
        risk, "risk stated by factory"
    )


def test_stated_high_risk_wins_over_green_tests() -> None:
    assert assess_risk(make_task(results(), metrics={"risk": 2})).risk is Risk.HIGH


def test_stated_risk_applies_without_test_results() -> None:
    assert assess_risk(make_task(None, metrics={"risk": 0})).risk is Risk.LOW


@pytest.mark.parametrize(
    ("stated", "risk"),
    [("low", Risk.LOW), (" HIGH ", Risk.HIGH), ("Medium", Risk.MEDIUM), ("med", Risk.MEDIUM)],
)
def test_risk_stated_in_modal_config(stated: str, risk: Risk) -> None:
    task = make_task(results(passed=58, failed=42), modal_config={"risk": stated})
    assert assess_risk(task) == RiskAssessment(risk, "risk stated by factory")


def test_metrics_win_over_modal_config() -> None:
    task = make_task(results(), metrics={"risk": 2}, modal_config={"risk": "low"})
    assert assess_risk(task).risk is Risk.HIGH


@pytest.mark.parametrize("bad", ["extreme", "", 3])
def test_unrecognised_modal_config_risk_is_ignored(bad: object) -> None:
    task = make_task(results(passed=58, failed=42), modal_config={"risk": bad})
    assert assess_risk(task) == RiskAssessment(Risk.HIGH, "42 failures")


def test_non_finite_metric_risk_is_ignored() -> None:
    task = make_task(results(), metrics={"risk": math.nan})
    assert assess_risk(task) == RiskAssessment(Risk.LOW, "tests pass")


@pytest.mark.parametrize("bad", [-1.0, 100.5, math.nan])
def test_invalid_threshold_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="min_coverage_percent"):
        assess_risk(make_task(results()), min_coverage_percent=bad)
