"""Risk of one routine decision, derived from the evidence the factory attached to it.

The batch message of master plan §7 "Smart Batching" shows a risk per item
(``✅ freshdesk (low risk, tests pass)``, ``⚠️ stripe (med risk, 1 warning)``,
``❌ ghl (high risk, 42 failures)``) and offers "Approve All Low-Risk". This module computes
that risk and its short reason from the task alone; it is pure and reads no clock.

Rules, first match wins (``T`` is ``min_coverage_percent``, setting
``BATCH_MIN_COVERAGE_PERCENT``, default 80):

1. **Stated by the factory.** ``context.metrics["risk"]`` (0 = low, 1 = medium, 2 = high, the
   convention of :class:`escalation.models.TaskContext`; other finite numbers are rounded to the
   nearest level and clamped to 0..2, NaN/inf are ignored), else
   ``context.modal_config["risk"]`` as a string ``"low" | "medium" | "med" | "high"``
   (case-insensitive; anything else is ignored). Reason ``"risk stated by factory"``.
2. **No test results** → medium, ``"no test results"``.
3. **Failing tests** (``failed > 0``) → high, ``"N failure(s)"``.
4. **Coverage more than 10 points below T** (``coverage < T - 10``) → high,
   ``"coverage 65% < 80%"``.
5. **No test ran** (``total == 0``) → medium, ``"no tests ran"`` (a green run of nothing is no
   evidence; this rule is an addition to the contract's rules).
6. **Warnings** → medium, ``"N warning(s)"``. Each skipped test is one warning, and coverage below
   T (but within 10 points) is one more.
7. Otherwise low, ``"tests pass"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from escalation.models import Task

__all__ = [
    "DEFAULT_MIN_COVERAGE_PERCENT",
    "HIGH_RISK_COVERAGE_GAP",
    "Risk",
    "RiskAssessment",
    "assess_risk",
]

#: Default coverage threshold in percent (setting ``BATCH_MIN_COVERAGE_PERCENT``).
DEFAULT_MIN_COVERAGE_PERCENT = 80.0

#: Coverage more than this many percentage points below the threshold is high risk.
HIGH_RISK_COVERAGE_GAP = 10.0

_STATED_REASON = "risk stated by factory"


class Risk(StrEnum):
    """Risk level of one item of a batch message."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


_RISK_BY_LEVEL: tuple[Risk, Risk, Risk] = (Risk.LOW, Risk.MEDIUM, Risk.HIGH)
_RISK_BY_NAME: dict[str, Risk] = {
    "low": Risk.LOW,
    "medium": Risk.MEDIUM,
    "med": Risk.MEDIUM,
    "high": Risk.HIGH,
}


@dataclass(frozen=True)
class RiskAssessment:
    """A risk level and the short human reason shown next to it.

    Attributes
    ----------
    risk : Risk
        The level.
    reason : str
        A few words for the message line, e.g. ``"tests pass"``, ``"1 warning"``,
        ``"42 failures"``, ``"coverage 65% < 80%"``, ``"risk stated by factory"``.
    """

    risk: Risk
    reason: str


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _percent(value: float) -> str:
    """Format a percentage truncated (not rounded) to one decimal, so 79.96 never shows as 80."""
    truncated = math.floor(value * 10 + 1e-9) / 10
    return f"{truncated:g}%"


def _stated_risk(task: Task) -> Risk | None:
    """The risk the factory states itself, or ``None`` (rule 1 of the module docstring)."""
    raw = task.context.metrics.get("risk")
    if raw is not None:
        value = float(raw)
        if math.isfinite(value):
            level = min(max(round(value), 0), 2)
            return _RISK_BY_LEVEL[level]
    named = task.context.modal_config.get("risk")
    if isinstance(named, str):
        return _RISK_BY_NAME.get(named.strip().lower())
    return None


def assess_risk(
    task: Task, *, min_coverage_percent: float = DEFAULT_MIN_COVERAGE_PERCENT
) -> RiskAssessment:
    """Classify a task as low, medium or high risk by the rules of the module docstring.

    Parameters
    ----------
    task : Task
        The task; only ``task.context`` (``metrics``, ``modal_config``, ``test_results``) is read.
    min_coverage_percent : float, optional
        Coverage threshold T in percent (0..100), setting ``BATCH_MIN_COVERAGE_PERCENT``,
        default 80. Below T is a warning; below T - 10 is high risk.

    Returns
    -------
    RiskAssessment
        The level and its short reason.

    Raises
    ------
    ValueError
        If ``min_coverage_percent`` is not a number in 0..100.
    """
    if not (0.0 <= min_coverage_percent <= 100.0):
        raise ValueError(f"min_coverage_percent must be within 0..100, got {min_coverage_percent}")

    stated = _stated_risk(task)
    if stated is not None:
        return RiskAssessment(stated, _STATED_REASON)

    results = task.context.test_results
    if results is None:
        return RiskAssessment(Risk.MEDIUM, "no test results")
    if results.failed > 0:
        return RiskAssessment(Risk.HIGH, _plural(results.failed, "failure"))
    coverage = results.coverage_percent
    if coverage < min_coverage_percent - HIGH_RISK_COVERAGE_GAP:
        return RiskAssessment(
            Risk.HIGH, f"coverage {_percent(coverage)} < {_percent(min_coverage_percent)}"
        )
    if results.total == 0:
        return RiskAssessment(Risk.MEDIUM, "no tests ran")
    warnings = results.skipped + (1 if coverage < min_coverage_percent else 0)
    if warnings:
        return RiskAssessment(Risk.MEDIUM, _plural(warnings, "warning"))
    return RiskAssessment(Risk.LOW, "tests pass")
