"""The bounded runner every provider uses: order, bound, errors, deadline, cancellation.

Real threads doing real waits; nothing is timed except against generous
deadlines, so the tests hold on a loaded machine.
"""

from __future__ import annotations

import threading
import time

import pytest

from secretinit import AccessDenied, FetchError, NotFound, Unreachable
from secretinit._runner import Cancel, run_bounded

LONG = 30.0


def test_every_item_gets_its_result() -> None:
    items = list(range(40))
    result = run_bounded(lambda n: n * n, items, concurrency=4, deadline=time.monotonic() + LONG)
    assert result == {n: n * n for n in items}


def test_no_more_than_concurrency_run_at_once() -> None:
    lock = threading.Lock()
    running = 0
    peak = 0

    def work(_n: int) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1

    run_bounded(work, list(range(30)), concurrency=3, deadline=time.monotonic() + LONG)
    assert 1 <= peak <= 3


def test_items_start_in_the_given_order() -> None:
    started: list[int] = []
    run_bounded(started.append, list(range(20)), concurrency=1, deadline=time.monotonic() + LONG)
    assert started == list(range(20))


def test_a_lone_item_runs_in_the_calling_thread() -> None:
    seen: list[threading.Thread] = []
    run_bounded(
        lambda _n: seen.append(threading.current_thread()),
        [1],
        concurrency=8,
        deadline=time.monotonic() + LONG,
    )
    assert seen == [threading.current_thread()]


def test_an_exception_is_that_items_result_only() -> None:
    def work(n: int) -> int:
        if n == 3:
            raise KeyError("the-raw-secret-value")
        return n

    result = run_bounded(work, list(range(6)), concurrency=2, deadline=time.monotonic() + LONG)
    failure = result[3]
    assert isinstance(failure, FetchError)
    assert "KeyError" in str(failure)
    assert "the-raw-secret-value" not in str(failure)
    assert {n: result[n] for n in (0, 1, 2, 4, 5)} == {0: 0, 1: 1, 2: 2, 4: 4, 5: 5}


def test_a_fetch_error_raised_passes_as_it_is_and_on_error_maps_the_rest() -> None:
    denied = AccessDenied("policy says no")

    def work(n: int) -> int:
        if n == 0:
            raise denied
        raise ValueError("boom")

    result = run_bounded(
        work,
        [0, 1],
        concurrency=2,
        deadline=time.monotonic() + LONG,
        on_error=lambda n, err: err if isinstance(err, FetchError) else NotFound(f"item {n}"),
    )
    assert result[0] is denied
    assert isinstance(result[1], NotFound)
    assert str(result[1]) == "item 1"


def test_a_broken_on_error_does_not_hang_the_batch() -> None:
    def on_error(_n: int, _err: Exception) -> FetchError:
        raise RuntimeError("bug in the mapping")

    result = run_bounded(
        lambda _n: 1 / 0,
        [1, 2],
        concurrency=2,
        deadline=time.monotonic() + LONG,
        on_error=on_error,
    )
    assert all(isinstance(r, FetchError) for r in result.values())


def test_what_has_no_answer_by_the_deadline_is_late() -> None:
    release = threading.Event()

    def work(n: int) -> int:
        if n == 0:
            release.wait(LONG)  # hangs like a dead server
        return n

    started = time.monotonic()
    try:
        result = run_bounded(work, [0, 1, 2], concurrency=2, deadline=time.monotonic() + 0.5)
    finally:
        release.set()
    assert time.monotonic() - started < LONG / 2
    assert isinstance(result[0], Unreachable)
    assert "deadline" in str(result[0])
    assert result[1] == 1
    assert result[2] == 2


def test_the_late_error_is_the_callers() -> None:
    late = Unreachable("no answer from the store before the deadline")
    release = threading.Event()
    try:
        result = run_bounded(
            lambda _n: release.wait(LONG),
            [0, 1],
            concurrency=2,
            deadline=time.monotonic() + 0.2,
            late=late,
        )
    finally:
        release.set()
    assert result == {0: late, 1: late}


def test_nothing_starts_after_the_deadline() -> None:
    started: list[int] = []
    result = run_bounded(started.append, [1, 2, 3], concurrency=2, deadline=time.monotonic() - 1)
    assert started == []
    assert all(isinstance(r, Unreachable) for r in result.values())
    assert run_bounded(started.append, [1], concurrency=2, deadline=time.monotonic() - 1)
    assert started == []


def test_cancel_stops_further_items() -> None:
    cancel = Cancel()
    started: list[int] = []

    def work(n: int) -> int:
        started.append(n)
        if n == 2:
            cancel.set()  # e.g. the store refused the credential: asking again is pointless
        return n

    result = run_bounded(
        work, list(range(10)), concurrency=1, deadline=time.monotonic() + LONG, cancel=cancel
    )
    assert started == [0, 1, 2]
    assert [result[n] for n in (0, 1, 2)] == [0, 1, 2]
    assert all(isinstance(result[n], Unreachable) for n in range(3, 10))


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        run_bounded(lambda n: n, [1], concurrency=0, deadline=time.monotonic() + LONG)


def test_cancel_with_a_reason_gives_it_to_every_item_never_started() -> None:
    cancel = Cancel()
    refused = AccessDenied("the store refused the credential")
    one_started, release = threading.Event(), threading.Event()

    def work(n: int) -> int:
        if n == 0:
            one_started.wait(LONG)
            cancel.set(refused)
            cancel.set(Unreachable("a later reason does not replace the first"))
            release.set()
            return n
        one_started.set()
        release.wait(LONG)  # item 1 is in flight when the batch is cancelled
        return n

    result = run_bounded(
        work, list(range(6)), concurrency=2, deadline=time.monotonic() + LONG, cancel=cancel
    )
    assert result[0] == 0
    assert result[1] == 1  # in flight when cancelled: its own answer, not the reason
    assert all(result[n] is refused for n in range(2, 6))
    assert cancel.reason is refused


def test_a_lone_item_after_a_cancel_with_a_reason_gets_it() -> None:
    cancel = Cancel()
    throttled = Unreachable("throttled")
    cancel.set(throttled)
    started: list[int] = []
    result = run_bounded(
        started.append, [1], concurrency=2, deadline=time.monotonic() + LONG, cancel=cancel
    )
    assert started == []
    assert result == {1: throttled}
