"""Running a batch of reads on a bounded number of threads, within a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from secretinit import FetchError, Unreachable


def run_bounded(
    work: Callable[[Any, float], Any], items: Sequence[Any], concurrency: int, deadline: float
) -> dict[Any, Any]:
    """``{item: work(item, deadline)}`` on at most ``concurrency`` threads, until the deadline.

    Daemon threads rather than a ThreadPoolExecutor: the interpreter joins an
    executor's threads at exit, so a hung SDK call would outlive ``--timeout``.
    """
    results: dict[Any, Any] = {}
    if not items:
        return results
    if len(items) == 1:
        # Alone (the first read of the only vault, most often), it runs here:
        # a thread hand-off costs scheduler wake-ups on a busy machine. The
        # SDK call is bounded by the deadline all the same; only a hung token
        # request would outlast it, and the core stops waiting at its deadline.
        return {items[0]: _guarded(work, items[0], deadline)}
    pending = list(reversed(items))
    lock = threading.Lock()
    done = threading.Event()

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                item = pending.pop()
            outcome = _guarded(work, item, deadline)
            with lock:
                results[item] = outcome
                if len(results) == len(items):
                    done.set()

    for _ in range(min(concurrency, len(items))):
        threading.Thread(target=worker, name="secretinit-azure-kv", daemon=True).start()
    done.wait(max(0.0, deadline - time.monotonic()))
    with lock:
        for item in items:
            results.setdefault(item, Unreachable("no answer from Key Vault within the deadline"))
        return dict(results)


def _guarded(work: Callable[[Any, float], Any], item: Any, deadline: float) -> Any:
    try:
        return work(item, deadline)
    except Exception as err:  # a bug must not leave fetch waiting for the deadline
        return FetchError(f"the azure-kv provider failed: {type(err).__name__}")
