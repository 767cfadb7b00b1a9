"""``GET /metrics`` end to end: what happened shows in the counters an operator scrapes.

The bridge runs as a separate process against the emulators; each test makes something
happen (a decision by button, a ladder that breaches and pages by SMS, a Discord 429) and reads
the matching series from ``/metrics`` in the Prometheus text format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until
from tests.support.reading import task_messages


async def scrape(bridge: BridgeProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``: (name, labels) → value."""
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{bridge.port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def test_a_decision_by_button_is_counted_with_its_source_and_timing(
    world: World, bridge: BridgeProcess
) -> None:
    task = await world.factory.create_task(
        title="Linear MCP Server v2 release", priority="medium", stageName="review"
    )
    await world.discord.wait_for(lambda: len(task_messages(world)) >= 1, 10)
    before = await scrape(bridge)
    assert value(before, "factory_bridge_tasks_open", priority="medium") == 1
    assert value(before, "factory_bridge_events_total", source="webhook", outcome="accepted") >= 1

    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.alice)
    await click.response()
    await wait_until(lambda: world.factory.tasks[task["id"]]["status"] == "completed")

    async def counted() -> bool:
        samples = await scrape(bridge)
        return (
            value(samples, "factory_bridge_decisions_total", decision="approved", source="button")
            == 1
        )

    await wait_until(counted, timeout=10, what="the decision counted")
    after = await scrape(bridge)
    assert value(after, "factory_bridge_tasks_open", priority="medium") == 0
    assert value(after, "factory_bridge_time_to_decision_seconds_count", priority="medium") == 1
    assert (
        value(
            after,
            "factory_bridge_factory_requests_total",
            endpoint="POST tasks/{id}/complete",
            status="200",
        )
        >= 1
    )
    assert total(after, "factory_bridge_discord_requests_total") >= 1
    # the log lines written while handling the task carry its id (contract §7.2 LogEntry)
    assert bridge.log_path is not None
    entries = [json.loads(line) for line in read_lines(bridge.log_path) if line.startswith("{")]
    assert any(entry.get("taskId") == task["id"] for entry in entries)
    # the click was acknowledged once, well within Discord's 3 s
    assert value(after, "factory_bridge_interaction_ack_seconds_count") == 1
    assert value(after, "factory_bridge_interaction_ack_seconds_bucket", le="3.0") == 1


async def test_a_breach_counts_the_steps_the_lateness_the_breach_and_the_sms(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(
        ESCALATION_DM_AFTER_SECONDS=1,
        ESCALATION_MENTION_AFTER_SECONDS=2,
        ESCALATION_CRITICAL_AFTER_BREACH_SECONDS=60,
        ESCALATION_BUNDLE_SECONDS=1,
    )
    await bridge.start()
    now = datetime.now(UTC)
    await world.factory.create_task(
        title="Stripe MCP Server → Production",
        priority="high",
        createdAt=iso(now),
        slaDeadline=iso(now + timedelta(seconds=4)),
    )
    await wait_until(lambda: len(world.twilio.messages) >= 1, timeout=15, what="breach SMS")

    async def counted() -> bool:
        samples = await scrape(bridge)
        return value(samples, "factory_bridge_twilio_requests_total", kind="sms", status="201") >= 1

    await wait_until(counted, timeout=10, what="the SMS counted")
    samples = await scrape(bridge)
    assert value(samples, "factory_bridge_sla_breaches_total", priority="high") == 1
    assert (
        value(samples, "factory_bridge_escalation_steps_total", step="sla_breach", outcome="taken")
        == 1
    )
    assert (
        value(samples, "factory_bridge_escalation_steps_total", step="reminder_dm", outcome="taken")
        == 1
    )
    assert value(samples, "factory_bridge_ladder_lateness_seconds_count") >= 3


async def test_a_discord_429_is_counted_and_the_message_still_goes_out(
    world: World, bridge: BridgeProcess
) -> None:
    world.discord.fail_next("POST", rf"/channels/{TASKS_CHANNEL_ID}/messages", 429)
    await world.factory.create_task(title="Notion MCP Server review", priority="low")
    await world.discord.wait_for(lambda: len(task_messages(world)) >= 1, 15)

    async def counted() -> bool:
        samples = await scrape(bridge)
        return value(samples, "factory_bridge_discord_rate_limited_total") >= 1

    await wait_until(counted, timeout=10, what="the 429 counted")
    samples = await scrape(bridge)
    assert (
        value(
            samples,
            "factory_bridge_discord_requests_total",
            route="POST /channels/{channel_id}/messages",
            status="2xx",
        )
        >= 1
    )


DOCS = Path(__file__).resolve().parents[2] / "docs"
_METRIC = re.compile(r"\bfactory_bridge_[a-z_]+")


def read_lines(path: Path) -> list[str]:
    """The lines of a file."""
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def queried_metric_names() -> set[str]:
    """Every ``factory_bridge_`` name the alert rules and the dashboard query."""
    queried = set(_METRIC.findall((DOCS / "prometheus" / "alerts.yml").read_text()))
    dashboard = json.loads((DOCS / "grafana" / "factory-bridge.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queried.update(_METRIC.findall(target["expr"]))
    return queried


async def test_the_dashboard_and_alert_rules_query_only_what_a_running_bridge_serves(
    bridge: BridgeProcess,
) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{bridge.port}/metrics")
    served: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    for family in text_string_to_metric_families(response.text):
        served.add(family.name)
        served.update(family.name + s for s in suffixes.get(family.type, ()))
    queried = queried_metric_names()
    assert len(queried) >= 10
    assert queried <= served, f"not served: {sorted(queried - served)}"
