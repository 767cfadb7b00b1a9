"""The pure core of Factory Bridge: the factory contract's models and the rules of escalation,
batching, risk, permissions and the deploy guard (no Discord, Twilio, HTTP or database)."""

__all__: list[str] = []
