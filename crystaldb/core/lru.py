"""The one in-memory cache of crystaldb: a bounded least-recently-used map, safe across threads.

Every cache that lives longer than a call uses it (the API's parsed documents and compiled
filters, model weights and built modules kept per process), so none can grow without bound
and none breaks when the server's threads share it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _unweighed(key: Any) -> int:
    """No estimate: the cache is bounded by its number of entries only."""
    return 0


class Lru(Generic[K, V]):
    """Values by key, forgetting the least recently used beyond `maxsize` entries or
    `max_bytes` of estimated memory (bounds, so clients sending ever new or ever larger keys
    cannot grow memory); safe to share between threads.

    `weigh(key)` estimates the bytes an entry holds; an entry over an eighth of `max_bytes`
    is not kept at all, so one huge entry cannot flush everything the server reuses.
    """

    def __init__(
        self,
        maxsize: int,
        max_bytes: int | None = None,
        weigh: Callable[[K], int] = _unweighed,
    ) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.weigh = weigh
        self.bytes = 0
        self._values: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value kept for key (now the most recent), or None."""
        with self._lock:
            found = self._values.get(key)
            if found is None:
                return None
            self._values.move_to_end(key)
            return found[0]

    def put(self, key: K, value: V) -> V:
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

    def get_or_put(self, key: K, make: Callable[[], V]) -> V:
        """The value kept for key, or `make()` kept and returned.

        `make` runs outside the lock, so a slow load never blocks readers of other keys; two
        threads missing the same key at once may both make it, and the last one is kept.
        """
        found = self.get(key)
        return found if found is not None else self.put(key, make())

    def __len__(self) -> int:
        return len(self._values)
