"""Discord-facing pieces of Factory Bridge."""

__all__: list[str] = []
