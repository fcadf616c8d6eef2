"""GraphQL execution on an event loop of its own, beside the server's.

Parsing, validating, costing and resolving a request are Python work that holds the event
loop while it runs: a costly request on the server's loop would keep `/health` and every
other connection waiting, and a timeout on that loop could not fire until the work yielded.
Run on a second loop in a daemon thread, the work shares the interpreter (the GIL hands the
server's loop a turn every few milliseconds), the server's loop keeps accepting and answering,
and its timeout fires on time whatever the execution is doing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running forever in a daemon thread; coroutines are submitted to it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        """The thread's whole life: this loop."""
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule the coroutine there; cancelling the future cancels its task."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)


_lock = threading.Lock()
_execution: LoopThread | None = None


def execution_loop() -> LoopThread:
    """This process's execution loop, started on first use (after any fork)."""
    global _execution
    with _lock:
        if _execution is None or not _execution.thread.is_alive():
            _execution = LoopThread("crystaldb-graphql")
        return _execution
