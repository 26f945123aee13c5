"""Resolving declared secrets: providers run concurrently, under one deadline.

Each provider gets every distinct reference of its scheme in one call, on its
own thread. Transient failures are retried with exponential backoff and full
jitter until the deadline; permanent ones are final at once. A provider that
overruns the deadline is abandoned (its thread is a daemon): secretinit never
waits past ``--timeout`` for a hung SDK.
"""

from __future__ import annotations

import string
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from secretinit._declaration import SecretSpec
from secretinit._errors import Failure, FetchError, NotChecked, Unreachable
from secretinit._log import REDACTOR, log
from secretinit._provider import Provider
from secretinit._reference import SecretRef

BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0
MAX_REASON_LENGTH = 300


@dataclass
class Resolution:
    """What a run resolved: values by secret name, and what failed or was skipped."""

    values: dict[str, bytes] = field(default_factory=dict)
    failures: dict[str, Failure] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    #: Secrets ``check`` did not try on purpose (a single-use credential), with why.
    unchecked: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

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
    value = string.Template(spec.template).substitute(mapping).encode("utf-8")
    REDACTOR.register(value)
    resolution.values[spec.name] = value


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > MAX_REASON_LENGTH:
        text = text[: MAX_REASON_LENGTH - 3] + "..."
    return REDACTOR.redact(text)


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
    pending = list(refs)
    started = time.monotonic()
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

        delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))  # noqa: S311 - jitter, not cryptography
        if time.monotonic() + delay >= deadline:
            elapsed = time.monotonic() - started
            for ref in retry:
                error = outcome[ref]
                assert isinstance(error, FetchError)  # _is_transient said so
                results[ref] = Unreachable(
                    f"{_reason(error)} (gave up after {attempt} attempts in {elapsed:.1f} s)"
                )
            break
        log(
            "debug",
            f"{provider.scheme}: {len(retry)} transient failures, retrying in {delay:.2f} s",
            event="retry",
            provider=provider.scheme,
            attempt=attempt,
        )
        time.sleep(delay)
        pending = retry
    return results


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
