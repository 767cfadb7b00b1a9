"""Discord-facing pieces of Factory Bridge."""
