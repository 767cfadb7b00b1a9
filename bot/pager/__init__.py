"""Paging adapters (Twilio SMS and voice) used when an escalation needs a phone."""

__all__: list[str] = []
