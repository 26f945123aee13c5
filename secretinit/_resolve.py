"""Resolving declared secrets: providers run concurrently, under one deadline.

Each provider gets every distinct reference of its scheme in one call, on its
own thread. Transient failures are retried with exponential backoff and full
jitter until the deadline; permanent ones are final at once. A throttled
request (a store's rate limit) backs off on a slower schedule, and never
sooner than the ``Retry-After`` the store asked for. A provider that
overruns the deadline is abandoned (its thread is a daemon): secretinit never
waits past ``--timeout`` for a hung SDK.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from secretinit._errors import (
    Failure,
    FetchError,
    NotChecked,
    Throttled,
    Unreachable,
    shorten,
)
from secretinit._log import REDACTOR, log

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from secretinit._declaration import SecretSpec
    from secretinit._provider import Provider
    from secretinit._reference import SecretRef

BACKOFF_BASE = 0.1
BACKOFF_GROWTH = 2.0
BACKOFF_CAP = 5.0
# Throttling is a fleet asking too fast, not a blip: back off on a slower
# schedule, full jitter in a window of 1 s, then 3 s, 9 s and at most 12 s.
# Tripling finds a fleet's pace in fewer refused requests than doubling, and
# the 12 s cap keeps the last waiting processes from sleeping through a store
# that has room again. bench/fleet chose it: against the AWS SDKs' schedule
# (doubling to 20 s) it drains a fleet sooner with fewer requests, for Vault
# and AWS alike (bench/fleet/model.py explores the alternatives).
THROTTLED_BASE = 1.0
THROTTLED_GROWTH = 3.0
THROTTLED_CAP = 12.0
# The last retry starts at least this long before the deadline (at most a
# fifth of the time there was), so that it has time for its answer.
LAST_TRY = 0.5
MAX_REASON_LENGTH = 300


class Resolution:
    """What a run resolved: values by secret name, and what failed or was skipped."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.failures: dict[str, Failure] = {}
        self.skipped: dict[str, str] = {}
        #: Secrets ``check`` did not try on purpose (a single-use credential), with why.
        self.unchecked: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def fail(self, spec: SecretSpec, kind: str, reason: str) -> None:
        """Record that required secret ``spec`` failed: ``kind`` (not found, ...) and why."""
        self.failures[spec.name] = Failure(spec.name, spec.origin, spec.source, kind, reason)


def resolve(
    specs: Sequence[SecretSpec], providers: Mapping[str, Provider], timeout: float
) -> Resolution:
    """Fetch every referenced secret, then render templates from the results."""
    deadline = time.monotonic() + timeout
    # A dict per scheme de-duplicates in linear time and keeps the declared order.
    by_scheme: dict[str, dict[SecretRef, None]] = {}
    for spec in specs:
        if spec.ref is not None:
            by_scheme.setdefault(spec.ref.scheme, {})[spec.ref] = None
    results = _fetch_all(
        {scheme: list(refs) for scheme, refs in by_scheme.items()}, providers, deadline
    )

    resolution = Resolution()
    for spec in specs:
        if spec.ref is None:
            continue
        result = results[spec.ref]
        if isinstance(result, NotChecked):
            resolution.unchecked[spec.name] = _reason(result)
        elif isinstance(result, FetchError):
            _record_failure(resolution, spec, result.kind, _reason(result))
        else:
            REDACTOR.register(result)
            resolution.values[spec.name] = result
            resolution.counts[spec.ref.scheme] = resolution.counts.get(spec.ref.scheme, 0) + 1
    for spec in specs:
        if spec.template is not None:
            _render(resolution, spec)
    return resolution


def _record_failure(resolution: Resolution, spec: SecretSpec, kind: str, reason: str) -> None:
    if spec.optional:
        resolution.skipped[spec.name] = f"{kind}: {reason}"
        log(
            "warning",
            f"optional secret {spec.name} skipped: {kind}: {reason}",
            event="secret_skipped",
            secret=spec.name,
            reference=spec.origin,
            kind=kind,
            reason=reason,
        )
    else:
        resolution.fail(spec, kind, reason)


def _render(resolution: Resolution, spec: SecretSpec) -> None:
    assert spec.template is not None
    mapping: dict[str, str] = {}
    for name in spec.template_names:
        if name in resolution.unchecked:
            resolution.unchecked[spec.name] = f"uses secret {name}, which was not checked"
            return
        if name not in resolution.values:
            _record_failure(
                resolution, spec, "template", f"needs secret {name}, which was not resolved"
            )
            return
        try:
            mapping[name] = resolution.values[name].decode("utf-8")
        except UnicodeDecodeError:
            _record_failure(
                resolution,
                spec,
                "template",
                f"secret {name} is not UTF-8 text, so no template can use it",
            )
            return
    from string import Template  # only templates need it: it compiles a pattern

    value = Template(spec.template).substitute(mapping).encode("utf-8")
    REDACTOR.register(value)
    resolution.values[spec.name] = value


def _reason(error: BaseException) -> str:
    return REDACTOR.redact(shorten(str(error), MAX_REASON_LENGTH) or type(error).__name__)


def _fetch_all(
    by_scheme: Mapping[str, list[SecretRef]],
    providers: Mapping[str, Provider],
    deadline: float,
) -> dict[SecretRef, bytes | FetchError]:
    results: dict[SecretRef, bytes | FetchError] = {}
    lock = threading.Lock()
    threads = []
    for scheme, refs in by_scheme.items():

        def work(provider: Provider = providers[scheme], refs: list[SecretRef] = refs) -> None:
            outcome = fetch_with_retries(provider, refs, deadline)
            with lock:
                results.update(outcome)

        thread = threading.Thread(target=work, name=f"secretinit-{scheme}", daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 0.5)
    with lock:
        for refs in by_scheme.values():
            for ref in refs:
                results.setdefault(ref, Unreachable(f"no answer within the {ref.scheme} deadline"))
        return dict(results)


def fetch_with_retries(
    provider: Provider, refs: Sequence[SecretRef], deadline: float
) -> dict[SecretRef, bytes | FetchError]:
    """Call ``provider.fetch`` until every result is final or the deadline passes."""
    results: dict[SecretRef, bytes | FetchError] = {}
    earlier: dict[SecretRef, FetchError] = {}  # each reference's first transient failure
    pending = list(refs)
    started = time.monotonic()
    last_try = min(LAST_TRY, (deadline - started) / 5)
    attempt = 0
    while pending:
        attempt += 1
        remaining = max(0.001, deadline - time.monotonic())
        outcome = _fetch_once(provider, pending, remaining)
        results.update(outcome)
        retry = [ref for ref in pending if _is_transient(outcome[ref])]
        if not retry:
            break
        import random  # only once something failed: it costs start-up time

        errors = [error for ref in retry if isinstance(error := outcome[ref], FetchError)]
        for ref, error in zip(retry, errors, strict=True):
            earlier.setdefault(ref, error)
        floor, delay = retry_delay(attempt, errors, random.uniform)
        remaining = deadline - time.monotonic()
        if floor + last_try >= remaining:
            elapsed = time.monotonic() - started
            why = f"; the store asked to wait {floor:g} s, past the deadline" if floor else ""
            tries = f"{attempt} attempt" + ("s" if attempt > 1 else "")
            for ref, error in zip(retry, errors, strict=True):
                # A last try cut short by the deadline says less than what came before it.
                first = _reason(earlier[ref])
                before = f"; first: {first}" if first != _reason(error) else ""
                text = f"{_reason(error)} (gave up after {tries} in {elapsed:.1f} s{why}{before})"
                results[ref] = (
                    Throttled(text, error.retry_after)
                    if isinstance(error, Throttled)
                    else Unreachable(text)
                )
            break
        # Never past the deadline: a draw beyond it becomes one last try just before it.
        delay = min(delay, remaining - last_try)
        throttled = sum(isinstance(error, Throttled) for error in errors)
        log(
            "debug",
            f"{provider.scheme}: {len(retry)} transient failure{'s' if len(retry) > 1 else ''}"
            + (f" ({throttled} throttled)" if throttled else "")
            + f", retrying in {delay:.2f} s"
            + (f" (the store asked for {floor:g} s)" if floor else "")
            + f"; first: {_reason(errors[0])}",
            event="retry",
            provider=provider.scheme,
            attempt=attempt,
            throttled=throttled,
            delay=round(delay, 3),
        )
        time.sleep(delay)
        pending = retry
    return results


def retry_delay(
    attempt: int, errors: Sequence[FetchError], uniform: Callable[[float, float], float]
) -> tuple[float, float]:
    """``(floor, delay)``: how long to wait after failed attempt ``attempt``.

    Full jitter (``uniform(0, window)``, the window growing per attempt) on
    top of the longest ``Retry-After`` among ``errors`` (the floor): never
    sooner than a store asked, and spread after it, so that a fleet told to
    come back in one second does not come back in the same millisecond.
    """
    throttled = [error for error in errors if isinstance(error, Throttled)]
    base, growth, cap = (
        (THROTTLED_BASE, THROTTLED_GROWTH, THROTTLED_CAP)
        if throttled
        else (BACKOFF_BASE, BACKOFF_GROWTH, BACKOFF_CAP)
    )
    floor = max((error.retry_after or 0.0 for error in throttled), default=0.0)
    return floor, floor + uniform(0, min(cap, base * growth ** (attempt - 1)))


def _is_transient(result: bytes | FetchError) -> bool:
    return isinstance(result, FetchError) and result.transient


def _fetch_once(
    provider: Provider, refs: Sequence[SecretRef], timeout: float
) -> dict[SecretRef, bytes | FetchError]:
    try:
        outcome = dict(provider.fetch(refs, timeout))
    except FetchError as err:
        return dict.fromkeys(refs, err)
    except Exception as err:  # a provider bug or an SDK error it did not map
        failure = FetchError(
            f"{provider.scheme} provider failed: {type(err).__name__}: {_reason(err)}"
        )
        return dict.fromkeys(refs, failure)
    for ref in refs:
        if ref not in outcome:
            outcome[ref] = FetchError(f"the {provider.scheme} provider returned no result")
    return outcome
