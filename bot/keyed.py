"""Per-key state that is forgotten as soon as nobody uses it (memory stays flat).

The bridge serialises work per task (message edits, ladder steps) and remembers a little about
what it showed. Kept in plain dicts keyed by task id, that state grew with every task ever
seen (about 2.4 KB each, for good). :class:`KeyedLocks` drops a key's lock when its last user
leaves; :class:`BoundedMap` keeps only the most recently used entries.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable, Iterator
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

__all__ = ["BoundedMap", "KeyedLocks"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class KeyedLocks(Generic[K]):
    """One :class:`asyncio.Lock` per key, existing only while someone holds or awaits it.

    ``async with locks(key):`` serialises the callers of one key; a key nobody holds nor
    waits for takes no memory.
    """

    def __init__(self) -> None:
        self._entries: dict[K, _Entry] = {}

    @asynccontextmanager
    async def __call__(self, key: K, *, wait_seconds: float | None = None) -> AsyncIterator[None]:
        """Hold the lock of ``key`` for the ``async with`` block.

        Raises ``TimeoutError`` (nothing held) when ``wait_seconds`` is given and the lock
        was not had within that many seconds."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.users += 1
        try:
            async with asyncio.timeout(wait_seconds):
                await entry.lock.acquire()
            try:
                yield
            finally:
                entry.lock.release()
        finally:
            entry.users -= 1
            if entry.users == 0 and self._entries.get(key) is entry:
                del self._entries[key]

    def __len__(self) -> int:
        """Keys held or awaited right now."""
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries


class BoundedMap(Generic[K, V]):
    """A mapping that keeps at most ``limit`` entries, forgetting the least recently used.

    For caches whose loss costs only a little extra work (e.g. one more message edit).

    Parameters
    ----------
    limit:
        The most entries kept (at least 1).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key`` (marked as recently used), or ``default``."""
        if key not in self._data:
            return default
        self._data.move_to_end(key)
        return self._data[key]

    def __setitem__(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.limit:
            self._data.popitem(last=False)

    def __getitem__(self, key: K) -> V:
        value = self._data[key]
        self._data.move_to_end(key)
        return value

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove ``key`` and return its value (``default`` when absent)."""
        return self._data.pop(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))
