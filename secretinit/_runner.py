"""One bounded runner for a provider's concurrent requests, under a deadline.

Every provider that reads a batch as several requests (a Vault path each, 20
AWS secrets a call, one Key Vault read per secret) runs them here:

- at most ``concurrency`` at once, in the order given;
- on daemon threads, not a ``ThreadPoolExecutor``: the interpreter joins an
  executor's threads at exit, so one request hung past the deadline would
  hold ``secretinit fetch`` open until its read timeout;
- a lone item runs in the calling thread (the core already gives each
  provider a thread of its own, and a hand-off costs scheduler wake-ups);
- once the deadline has passed, or :meth:`Cancel.set` was called, no further
  item starts; an item never started gets the reason given to
  :meth:`Cancel.set`, if any; whatever else has no result when
  :func:`run_bounded` returns gets the ``late`` error, and requests still in
  flight are abandoned (their threads are daemons and their results are
  dropped).

An exception raised by ``work`` becomes that item's result through
``on_error``: one failing request never stalls or fails the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from secretinit._errors import FetchError, Unreachable

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["Cancel", "run_bounded"]


class Cancel:
    """Tells :func:`run_bounded` to start nothing more (a fatal answer, a stop)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: FetchError | None = None

    def set(self, reason: FetchError | None = None) -> None:
        """Start no further item; items in flight finish or are abandoned at the deadline.

        ``reason`` becomes the result of every item left unstarted: the answer
        that made asking again pointless (a refused credential, which must not
        read as a transient "no answer", or a throttled request, which the core
        retries after its backoff). The first reason given is kept. Without
        one, unstarted items get the ``late`` error.
        """
        if self.reason is None:
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._event.is_set()


def _default_error(_item: object, err: Exception) -> FetchError:
    if isinstance(err, FetchError):
        return err
    return FetchError(f"the provider failed: {type(err).__name__}")


def run_bounded(
    work: Callable[[T], R],
    items: Sequence[T],
    *,
    concurrency: int,
    deadline: float,
    on_error: Callable[[T, Exception], FetchError] = _default_error,
    late: FetchError | None = None,
    cancel: Cancel | None = None,
    name: str = "secretinit-worker",
) -> dict[T, R | FetchError]:
    """``{item: work(item)}`` for each of ``items``, at most ``concurrency`` at a time.

    ``deadline`` is a :func:`time.monotonic` instant. ``on_error`` turns an
    exception of ``work`` into the item's :class:`FetchError` (by default a
    ``FetchError`` passes as it is and anything else is named by its type,
    never its message, which may echo a value). ``late`` is the result of an
    item that had none by the deadline, or was never started because of a
    ``cancel`` set without a reason (default: :class:`Unreachable`, "no
    answer before the deadline"). Items must be hashable and distinct.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    late_error = late if late is not None else Unreachable("no answer before the deadline")
    results: dict[T, R | FetchError] = {}
    if not items:
        return results
    if len(items) == 1:
        item = items[0]
        if cancel is not None and cancel.is_set():
            return {item: cancel.reason or late_error}
        if time.monotonic() >= deadline:
            return {item: late_error}
        return {item: _guarded(work, on_error, item)}

    pending = list(reversed(items))  # pop() from the end takes them in order
    lock = threading.Lock()
    finished = threading.Event()
    running = 0

    def stopped() -> bool:
        return (cancel is not None and cancel.is_set()) or time.monotonic() >= deadline

    def worker() -> None:
        nonlocal running
        while True:
            with lock:
                if not pending or stopped():
                    running -= 1
                    if running == 0:
                        finished.set()  # nothing in flight and nothing more will start
                    return
                item = pending.pop()
            outcome = _guarded(work, on_error, item)
            with lock:
                results[item] = outcome

    threads = min(concurrency, len(items))
    running = threads
    for _ in range(threads):
        threading.Thread(target=worker, name=name, daemon=True).start()
    while not finished.wait(max(0.0, deadline - time.monotonic())):
        if time.monotonic() >= deadline:
            break
    with lock:
        unstarted = set(pending)
        pending.clear()  # workers still in a request take no further item
        reason = cancel.reason if cancel is not None else None
        return {
            item: results.get(
                item, reason if reason is not None and item in unstarted else late_error
            )
            for item in items
        }


def _guarded(
    work: Callable[[T], R], on_error: Callable[[T, Exception], FetchError], item: T
) -> R | FetchError:
    try:
        return work(item)
    except Exception as err:  # one request's failure is its item's result, never the batch's
        try:
            return on_error(item, err)
        except Exception as mapping_error:  # a bug in the mapping must not hang the batch
            return FetchError(f"the provider failed: {type(mapping_error).__name__}")
