"""The one cache: bounded in entries and bytes, and safe when threads share it."""

from __future__ import annotations

import threading

from crystaldb.core.lru import Lru


def test_the_lru_forgets_the_least_recently_used() -> None:
    """Bounded: beyond maxsize the entry used longest ago goes."""
    lru: Lru[str, int] = Lru(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1
    lru.put("c", 3)
    assert (lru.get("a"), lru.get("b"), lru.get("c")) == (1, None, 3)


def test_an_entry_over_an_eighth_of_the_bytes_is_not_kept() -> None:
    """One huge entry cannot flush everything else."""
    lru: Lru[str, int] = Lru(100, max_bytes=1000, weigh=len)
    lru.put("x" * 200, 1)
    assert lru.get("x" * 200) is None and lru.bytes == 0
    lru.put("y" * 100, 2)
    assert lru.get("y" * 100) == 2 and lru.bytes == 100


def test_get_or_put_makes_a_missing_value_once() -> None:
    """Keys need not be text: model caches key by (id, sha256)."""
    made: list[tuple[int, str]] = []

    def make(key: tuple[int, str]) -> str:
        made.append(key)
        return f"weights {key}"

    lru: Lru[tuple[int, str], str] = Lru(8)
    for _ in range(3):
        assert lru.get_or_put((1, "abc"), lambda: make((1, "abc"))) == "weights (1, 'abc')"
    assert made == [(1, "abc")]


def test_threads_sharing_it_never_break_it_or_its_bounds() -> None:
    """Eight threads putting and getting at once, as the API's worker threads do."""
    lru: Lru[tuple[int, int], int] = Lru(16, max_bytes=64, weigh=lambda key: key[1] % 5)
    errors: list[BaseException] = []

    def hammer(thread: int) -> None:
        try:
            for i in range(5000):
                key = (thread, i % 40)
                assert (
                    lru.get_or_put(key, lambda k=key: k[0] * 1000 + k[1]) == key[0] * 1000 + key[1]
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(lru) <= 16 and 0 <= lru.bytes <= 64
    assert lru.bytes == sum(key[1] % 5 for key in list(lru._values))
