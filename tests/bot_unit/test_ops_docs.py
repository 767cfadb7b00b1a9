"""The shipped Grafana dashboard and Prometheus alert rules query only metrics the bridge serves."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import BridgeMetrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
RULES = DOCS / "prometheus" / "alerts.yml"
DASHBOARD = DOCS / "grafana" / "factory-bridge.json"
METRIC = re.compile(r"\bfactory_bridge_[a-z_]+")


def served_names() -> set[str]:
    """Every series name ``/metrics`` can carry (families and their suffixes)."""
    body, _ = asyncio.run(BridgeMetrics().render())
    names: set[str] = set()
    for family in text_string_to_metric_families(body.decode()):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
    return names


def rule_expressions() -> list[str]:
    return [m.group(1) for m in re.finditer(r"^\s*expr:\s*(.+)$", RULES.read_text(), re.M)]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_queried_metric_is_served(source: str) -> None:
    expressions = rule_expressions() if source == "rules" else dashboard_expressions()
    assert len(expressions) >= 6
    served = served_names()
    queried = {name for expr in expressions for name in METRIC.findall(expr)}
    assert queried, "no factory_bridge_ metric queried"
    assert queried <= served, f"not served: {sorted(queried - served)}"


def test_the_rules_cover_down_heartbeat_decisions_429s_and_breaches() -> None:
    text = RULES.read_text()
    for alert in (
        "FactoryBridgeDown",
        "FactoryBridgeNoHeartbeat",
        "FactoryBridgeDecisionsFailing",
        "FactoryBridgeDiscordRateLimited",
        "FactoryBridgeBreachesRising",
    ):
        assert f"alert: {alert}" in text


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (Debian package 'prometheus'); the rules are checked there",
)
def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
