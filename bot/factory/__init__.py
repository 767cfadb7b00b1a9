"""Adapters that speak to the factory: its REST API, its events (webhook and WebSocket)."""

__all__: list[str] = []
