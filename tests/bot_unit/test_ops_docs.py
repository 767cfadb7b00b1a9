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


def no_heartbeat_fires(samples: dict[str, float], now: float) -> bool:
    """Evaluate FactoryBridgeNoHeartbeat's expression for one bridge's samples: a conjunction
    (``and``) of comparisons ``[time() -] <metric> <op> <number>``, all on the same labels."""
    text = RULES.read_text()
    rule = text[text.index("alert: FactoryBridgeNoHeartbeat") :]
    expr = re.search(r"expr:\s*(.+)$", rule, re.M)
    assert expr is not None
    ops = {">": float.__gt__, "<": float.__lt__, "==": float.__eq__}
    for part in expr.group(1).split(" and "):
        found = re.fullmatch(
            r"\s*(time\(\) - )?(factory_bridge_[a-z_]+) (>|<|==) ([0-9.]+)\s*", part
        )
        assert found is not None, f"not a comparison this test reads: {part!r}"
        since, name, op, number = found.groups()
        value = now - samples[name] if since else samples[name]
        if not ops[op](float(value), float(number)):
            return False
    return True


def test_no_heartbeat_pages_only_for_a_leader_that_sends_them() -> None:
    """Only the leader pings HEARTBEAT_URL: a standby, or a bridge without HEARTBEAT_URL,
    exports 0 and must not page; a leader whose last accepted ping (or whose start of pinging)
    is over 5 minutes old must."""
    now = 2_000_000_000.0
    gauge = "factory_bridge_heartbeat_last_success_timestamp_seconds"
    leader = "factory_bridge_is_leader"
    assert not no_heartbeat_fires({gauge: 0.0, leader: 0.0}, now)  # a standby
    assert not no_heartbeat_fires({gauge: 0.0, leader: 1.0}, now)  # no HEARTBEAT_URL
    assert not no_heartbeat_fires({gauge: now - 60, leader: 1.0}, now)
    assert no_heartbeat_fires({gauge: now - 301, leader: 1.0}, now)
    assert not no_heartbeat_fires({gauge: now - 301, leader: 0.0}, now)  # deposed since


async def test_the_heartbeat_metric_starts_when_the_leader_starts_pinging() -> None:
    """A monitor that never accepts a ping is noticed 5 minutes after the heartbeat started
    (the metric is the start time until the first accepted ping), not ignored as 0."""
    import time

    from bot.heartbeat import Heartbeat

    started: list[float] = []

    async def failing_check() -> dict[str, bool | str]:
        return {"discord": "down"}

    heartbeat = Heartbeat(
        "https://hc-ping.example/abc",
        interval_seconds=3600,
        checks=failing_check,
        on_start=started.append,
    )
    before = time.time()
    await heartbeat.start()
    await heartbeat.stop()
    assert len(started) == 1 and started[0] >= before
