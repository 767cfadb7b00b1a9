"""Escalation policy values (contract §5.3, Appendix B; issue: escalation ladder)."""

from __future__ import annotations

import ast
import math
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from escalation.models import Priority, TaskDecision
from escalation.policy import (
    DEFAULT_QUIET_HOURS,
    HARD_STEPS,
    LADDER_ORDER,
    REMINDER_STEPS,
    EscalationPolicy,
    QuietHours,
    SafeDefault,
    StepKind,
    as_aware_utc,
)

T = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
CORE_DIR = ROOT / "escalation"
#: The batching core (rules of smart batching), pure like escalation.
BATCHING_DIR = ROOT / "batching"
FORBIDDEN = {"discord", "twilio", "httpx", "aiohttp", "sqlalchemy", "apscheduler"}


def test_defaults_follow_the_contract() -> None:
    policy = EscalationPolicy()
    assert dict(policy.sla_seconds) == {
        Priority.CRITICAL: 3600.0,
        Priority.HIGH: 14400.0,
        Priority.MEDIUM: 86400.0,
        Priority.LOW: 259200.0,
    }
    assert policy.dm_after_seconds == 1800
    assert policy.mention_after_seconds == 7200
    assert policy.warning_threshold_percent == 25
    assert policy.critical_after_breach_seconds == 7200
    assert policy.safe_default is SafeDefault.NONE
    assert policy.bundle_seconds == 120
    assert policy.quiet_hours == QuietHours(time(22), time(8), "UTC", True)
    assert policy.quiet_hours is DEFAULT_QUIET_HOURS
    assert policy.quiet_hours_active


@pytest.mark.parametrize(
    ("priority", "hours"),
    [(Priority.CRITICAL, 1), (Priority.HIGH, 4), (Priority.MEDIUM, 24), (Priority.LOW, 72)],
)
def test_deadline_from_priority(priority: Priority, hours: int) -> None:
    assert EscalationPolicy().deadline_for(T, priority) == T + timedelta(hours=hours)


def test_deadline_prefers_the_task_sla_deadline_and_returns_utc() -> None:
    cet = timezone(timedelta(hours=1))
    given = datetime(2026, 1, 5, 12, 30, tzinfo=cet)
    deadline = EscalationPolicy().deadline_for(T, Priority.LOW, given)
    assert deadline == datetime(2026, 1, 5, 11, 30, tzinfo=UTC)
    assert deadline.tzinfo is UTC


def test_deadline_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="created_at"):
        EscalationPolicy().deadline_for(datetime(2026, 1, 5), Priority.LOW)
    with pytest.raises(ValueError, match="sla_deadline"):
        EscalationPolicy().deadline_for(T, Priority.LOW, datetime(2026, 1, 6))


def test_partial_sla_mapping_is_merged_and_read_only() -> None:
    policy = EscalationPolicy(sla_seconds={Priority.HIGH: 60, "low": 120})  # type: ignore[dict-item]
    assert policy.sla_seconds_for(Priority.HIGH) == 60.0
    assert policy.sla_seconds_for(Priority.LOW) == 120.0
    assert policy.sla_seconds_for(Priority.CRITICAL) == 3600.0
    with pytest.raises(TypeError):
        policy.sla_seconds[Priority.HIGH] = 1  # type: ignore[index]


def test_policy_is_hashable_and_comparable() -> None:
    assert EscalationPolicy() == EscalationPolicy()
    assert hash(EscalationPolicy()) == hash(EscalationPolicy())
    assert EscalationPolicy(dm_after_seconds=60) != EscalationPolicy()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dm_after_seconds": -1},
        {"mention_after_seconds": math.nan},
        {"critical_after_breach_seconds": math.inf},
        {"bundle_seconds": -0.5},
        {"sla_seconds": {Priority.HIGH: -1}},
        {"sla_seconds": {"urgent": 60}},
        {"warning_threshold_percent": 101},
        {"warning_threshold_percent": -1},
        {"warning_threshold_percent": math.nan},
    ],
)
def test_policy_refuses_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        EscalationPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"dm_after_seconds": "60"}, {"bundle_seconds": True}])
def test_policy_refuses_non_numbers(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        EscalationPolicy(**kwargs)  # type: ignore[arg-type]


def test_safe_default_never_approves() -> None:
    with pytest.raises(ValueError, match="approved"):
        SafeDefault("approved")
    with pytest.raises(ValueError, match="approved"):
        SafeDefault(" Approved ")
    with pytest.raises(ValueError, match="approved"):
        EscalationPolicy(safe_default="approved")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SafeDefault("maybe")


def test_safe_default_parsing_and_decision() -> None:
    assert SafeDefault("Deferred") is SafeDefault.DEFERRED
    assert SafeDefault(" REJECTED ") is SafeDefault.REJECTED
    assert SafeDefault("") is SafeDefault.NONE
    assert SafeDefault.NONE.decision is None
    assert SafeDefault.DEFERRED.decision is TaskDecision.DEFERRED
    assert SafeDefault.REJECTED.decision is TaskDecision.REJECTED
    policy = EscalationPolicy(safe_default="deferred")  # type: ignore[arg-type]
    assert policy.safe_default is SafeDefault.DEFERRED


def test_quiet_hours_validates_the_time_zone() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus_Mons"):
        QuietHours(time(22), time(8), "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="not a zone"):
        QuietHours(time(22), time(8), "not a zone")
    assert QuietHours(time(22), time(8), "Europe/Berlin").zone.key == "Europe/Berlin"


def test_quiet_hours_parses_wall_times() -> None:
    qh = QuietHours("22:00", "08:30", "UTC")  # type: ignore[arg-type]
    assert (qh.start, qh.end) == (time(22), time(8, 30))
    with pytest.raises(ValueError, match="wall time"):
        QuietHours("late", "08:00")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="naive"):
        QuietHours(time(22, tzinfo=UTC), time(8))


def test_quiet_hours_active() -> None:
    assert QuietHours(time(22), time(8)).active
    assert not QuietHours(time(22), time(8), enabled=False).active
    assert not QuietHours(time(8), time(8)).active
    assert not EscalationPolicy(quiet_hours=None).quiet_hours_active


def test_step_kinds_in_ladder_order() -> None:
    assert [k.value for k in LADDER_ORDER] == [
        "reminder_dm",
        "reminder_mention",
        "sla_warning",
        "sla_breach",
        "critical",
    ]
    assert [k.rank for k in LADDER_ORDER] == [0, 1, 2, 3, 4]
    assert REMINDER_STEPS == {StepKind.REMINDER_DM, StepKind.REMINDER_MENTION, StepKind.SLA_WARNING}
    assert HARD_STEPS == {StepKind.SLA_BREACH, StepKind.CRITICAL}
    assert StepKind.SLA_WARNING.is_reminder
    assert not StepKind.SLA_BREACH.is_reminder


def test_as_aware_utc() -> None:
    assert as_aware_utc(datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == datetime(
        2026, 1, 1, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="naive"):
        as_aware_utc(datetime(2026, 1, 1), "now")
    with pytest.raises(TypeError):
        as_aware_utc("2026-01-01", "now")  # type: ignore[arg-type]


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", ["policy", "ladder", "quiet_hours", "bundling"])
def test_core_modules_import_no_adapter_library(module: str) -> None:
    roots = {r.lower() for r in _imported_roots(CORE_DIR / f"{module}.py")}
    assert not roots & FORBIDDEN


@pytest.mark.parametrize("path", sorted(BATCHING_DIR.glob("*.py")), ids=lambda p: p.name)
def test_batching_core_imports_no_adapter_library(path: Path) -> None:
    roots = {r.lower() for r in _imported_roots(path)}
    assert not roots & (FORBIDDEN | {"bot", "sandbox"})


def test_the_batching_core_has_modules() -> None:
    assert {p.name for p in BATCHING_DIR.glob("*.py")} >= {"__init__.py", "batcher.py", "keys.py"}
