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


def test_a_factory_request_is_labelled_by_its_route_whatever_its_ids_hold() -> None:
    """An id holding ``/`` (``acme/stripe-mcp``) is one path segment on the wire
    (``acme%2Fstripe-mcp``) and one ``{id}`` in the label: a label value per pipeline would be
    a time series per pipeline in Prometheus."""
    import httpx

    from bot.factory.transport import segment
    from bot.metrics import factory_endpoint

    labels = {
        factory_endpoint(
            httpx.Request("GET", f"http://factory/v1/pipelines/{segment('acme/' + name)}")
        )
        for name in ("ghl-mcp-server", "stripe-mcp", "notion-mcp")
    }
    assert labels == {"GET pipelines/{id}"}
    complete = httpx.Request("POST", "http://factory/v1/tasks/t-1/complete?x=1")
    assert factory_endpoint(complete) == "POST tasks/{id}/complete"
    assert factory_endpoint(httpx.Request("GET", "http://factory/v1/tasks/stats")) == (
        "GET tasks/stats"
    )


def test_a_decision_settled_by_a_re_send_is_counted_under_resume() -> None:
    """README "Metrics" lists every ``source`` a decision is counted under; a decision left in
    flight and settled by a re-send is one of them."""
    metrics = BridgeMetrics()
    metrics.observe_audit({"action": "task.approved", "outcome": "ok", "via": "resume"})
    value = metrics.registry.get_sample_value(
        "factory_bridge_decisions_total", {"decision": "approved", "source": "resume"}
    )
    assert value == 1
