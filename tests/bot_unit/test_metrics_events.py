"""``factory_bridge_events_total`` counts every event by source and outcome."""

from __future__ import annotations

from bot.metrics import BridgeMetrics


def test_events_are_counted_per_source_and_outcome() -> None:
    metrics = BridgeMetrics()
    for _ in range(3):
        metrics.observe_event("webhook", "accepted")
    metrics.observe_event("webhook", "rejected")
    metrics.observe_event("redis", "accepted")

    def count(source: str, outcome: str) -> float | None:
        return metrics.registry.get_sample_value(
            "factory_bridge_events_total", {"source": source, "outcome": outcome}
        )

    assert count("webhook", "accepted") == 3
    assert count("webhook", "rejected") == 1
    assert count("redis", "accepted") == 1
    assert count("websocket", "accepted") is None
