"""Factory Bridge: the adapters (Discord, the factory API, Twilio, the store) and the composition
root around the pure core in :mod:`escalation`. See docs/ARCHITECTURE.md."""

__all__: list[str] = []
