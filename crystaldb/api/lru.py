"""A small least-recently-used map by text: what the server caches across requests."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class Lru(Generic[V]):
    """Values by text, forgetting the least recently used beyond `maxsize` entries or
    `max_bytes` of estimated memory (bounds, so clients sending ever new or ever larger texts
    cannot grow memory); safe to share between the server's threads.

    `weigh(key)` estimates the bytes an entry holds; an entry over an eighth of `max_bytes`
    is not kept at all, so one huge text cannot flush everything the server reuses.
    """

    def __init__(
        self,
        maxsize: int,
        max_bytes: int | None = None,
        weigh: Callable[[str], int] = len,
    ) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.weigh = weigh
        self.bytes = 0
        self._values: OrderedDict[str, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        """The value kept for key (now the most recent), or None."""
        with self._lock:
            found = self._values.get(key)
            if found is None:
                return None
            self._values.move_to_end(key)
            return found[0]

    def put(self, key: str, value: V) -> V:
        """Keep value for key (unless it alone would take over an eighth of max_bytes)."""
        weight = self.weigh(key)
        if self.max_bytes is not None and weight > self.max_bytes // 8:
            return value
        with self._lock:
            previous = self._values.pop(key, None)
            if previous is not None:
                self.bytes -= previous[1]
            self._values[key] = (value, weight)
            self.bytes += weight
            while len(self._values) > self.maxsize or (
                self.max_bytes is not None and self.bytes > self.max_bytes
            ):
                _, (_, dropped) = self._values.popitem(last=False)
                self.bytes -= dropped
        return value

    def __len__(self) -> int:
        return len(self._values)
