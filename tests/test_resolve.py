"""The core's resolution: concurrency, retries, the deadline, templates, optional secrets.

The providers here are real subclasses of :class:`Provider` that behave as a
store would (fail twice, hang, raise); they stand for the contract, not for
any SDK.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence

import pytest

from secretinit import (
    FetchError,
    NotChecked,
    NotFound,
    Provider,
    SecretRef,
    Throttled,
    Unreachable,
)
from secretinit._declaration import SecretSpec
from secretinit._errors import Failure, SecretsUnavailable
from secretinit._provider import FetchResult
from secretinit._resolve import (
    THROTTLED_CAP,
    fetch_with_retries,
    resolve,
    retry_delay,
)


class Scripted(Provider):
    """Answers from a table; fails transiently ``flaky`` times first."""

    def __init__(self, scheme: str, values: dict[str, bytes], flaky: int = 0) -> None:
        super().__init__(scheme, {}, {})
        self.values = values
        self.flaky = flaky
        self.calls: list[list[str]] = []

    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        self.calls.append([ref.location for ref in refs])
        if len(self.calls) <= self.flaky:
            return {ref: Unreachable("connection refused") for ref in refs}
        return {
            ref: self.values[ref.location]
            if ref.location in self.values
            else NotFound("no such secret")
            for ref in refs
        }


class Hanging(Provider):
    def __init__(self) -> None:
        super().__init__("hang", {}, {})
        self.release = threading.Event()

    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        self.release.wait(30)
        return {}


class Raising(Provider):
    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        raise RuntimeError("socket said: the-raw-secret-value")


class Forgetful(Provider):
    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        return {}


class Meeting(Provider):
    """Returns only once every other Meeting provider is inside fetch too."""

    def __init__(self, scheme: str, barrier: threading.Barrier) -> None:
        super().__init__(scheme, {}, {})
        self.barrier = barrier

    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        self.barrier.wait(10)
        return dict.fromkeys(refs, b"met")


def spec(
    name: str, ref: str | None = None, template: str | None = None, optional: bool = False
) -> SecretSpec:
    parsed = None
    if ref is not None:
        scheme, _, location = ref.partition("://")
        parsed = SecretRef(scheme, location)
    return SecretSpec(
        name, f"test {name}", ref=parsed, template=template, file=name, optional=optional
    )


def test_transient_failures_are_retried_until_they_pass() -> None:
    provider = Scripted("s", {"a": b"A"}, flaky=2)
    result = fetch_with_retries(provider, [SecretRef("s", "a")], time.monotonic() + 20)
    assert result == {SecretRef("s", "a"): b"A"}
    assert len(provider.calls) == 3


def test_permanent_failures_are_not_retried() -> None:
    provider = Scripted("s", {})
    result = fetch_with_retries(provider, [SecretRef("s", "a")], time.monotonic() + 20)
    assert isinstance(result[SecretRef("s", "a")], NotFound)
    assert len(provider.calls) == 1


def test_only_the_transient_references_are_retried() -> None:
    class HalfFlaky(Scripted):
        def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
            self.calls.append([ref.location for ref in refs])
            if len(self.calls) == 1:
                return {SecretRef("s", "a"): b"A", SecretRef("s", "b"): Unreachable("429")}
            return dict.fromkeys(refs, b"B")

    provider = HalfFlaky("s", {})
    result = fetch_with_retries(
        provider, [SecretRef("s", "a"), SecretRef("s", "b")], time.monotonic() + 20
    )
    assert result == {SecretRef("s", "a"): b"A", SecretRef("s", "b"): b"B"}
    assert provider.calls == [["a", "b"], ["b"]]


def test_transient_failures_give_up_at_the_deadline() -> None:
    provider = Scripted("s", {"a": b"A"}, flaky=10**6)
    result = fetch_with_retries(provider, [SecretRef("s", "a")], time.monotonic() + 0.5)
    error = result[SecretRef("s", "a")]
    assert isinstance(error, Unreachable)
    assert "connection refused (gave up after" in str(error)
    assert len(provider.calls) > 1


def test_a_hung_provider_is_abandoned_at_the_deadline() -> None:
    hanging = Hanging()
    try:
        resolution = resolve([spec("A", "hang://a")], {"hang": hanging}, timeout=0.3)
    finally:
        hanging.release.set()
    assert "no answer within the hang deadline" in resolution.failures["A"].reason


def test_an_unexpected_exception_fails_its_batch_without_leaking() -> None:
    from secretinit._log import REDACTOR

    REDACTOR.register(b"the-raw-secret-value")
    resolution = resolve([spec("A", "boom://a")], {"boom": Raising("boom")}, timeout=5)
    assert "boom provider failed: RuntimeError" in resolution.failures["A"].reason
    assert "the-raw-secret-value" not in resolution.failures["A"].line()


def test_a_provider_that_forgets_a_reference_is_reported() -> None:
    resolution = resolve([spec("A", "f://a")], {"f": Forgetful("f")}, timeout=5)
    assert "returned no result" in resolution.failures["A"].reason


def test_providers_run_concurrently() -> None:
    barrier = threading.Barrier(2)
    providers = {"one": Meeting("one", barrier), "two": Meeting("two", barrier)}
    resolution = resolve([spec("A", "one://a"), spec("B", "two://b")], providers, timeout=15)
    assert resolution.values == {"A": b"met", "B": b"met"}, resolution.failures


def test_each_reference_is_fetched_once() -> None:
    provider = Scripted("s", {"a": b"A"})
    resolution = resolve([spec("A", "s://a"), spec("B", "s://a")], {"s": provider}, timeout=5)
    assert resolution.values == {"A": b"A", "B": b"A"}
    assert provider.calls == [["a"]]


def test_templates_and_optional_secrets() -> None:
    provider = Scripted("s", {"user": b"app", "pw": b"p@ss", "bin": b"\xff"})
    specs = [
        spec("USER", "s://user"),
        spec("PW", "s://pw"),
        spec("BIN", "s://bin"),
        spec("EXTRA", "s://absent", optional=True),
        spec("URL", template="postgres://${USER}:${PW}@db/app $$5"),
        spec("NEEDS_EXTRA", template="x${EXTRA}"),
        spec("NEEDS_BIN", template="x${BIN}"),
    ]
    resolution = resolve(specs, {"s": provider}, timeout=5)
    assert resolution.values["URL"] == b"postgres://app:p@ss@db/app $5"
    assert "EXTRA" in resolution.skipped and "EXTRA" not in resolution.failures
    assert "needs secret EXTRA, which was not resolved" in resolution.failures["NEEDS_EXTRA"].reason
    assert "secret BIN is not UTF-8 text" in resolution.failures["NEEDS_BIN"].reason
    assert resolution.counts == {"s": 3}


def test_failure_lines_name_secret_reference_and_source() -> None:
    resolution = resolve([spec("A", "s://absent")], {"s": Scripted("s", {})}, timeout=5)
    failure = resolution.failures["A"]
    assert failure == Failure("A", "s://absent", "test A", "not found", "no such secret")
    assert failure.line() == "A (s://absent, test A): not found: no such secret"


def test_failures_of_one_cause_share_one_line() -> None:
    """Issue 14, item 11: a server down is one line naming every secret it failed."""
    down = Failure("", None, "", "unreachable", "cannot reach Vault at https://v: refused")
    failures = [
        Failure(f"S{i}", f"vault://app/s{i}#k", f"c.toml:{i}", down.kind, down.reason)
        for i in range(30)
    ]
    failures.insert(3, Failure("DB", "vault://app/db#pw", "c.toml:99", "not found", "no key"))
    error = SecretsUnavailable(failures)
    lines = str(error).splitlines()
    assert lines[0] == "31 required secrets could not be resolved:"
    names = ", ".join(f"S{i}" for i in range(30))
    assert lines[1:] == [
        f"  - 30 secrets ({names}): unreachable: cannot reach Vault at https://v: refused",
        "  - DB (vault://app/db#pw, c.toml:99): not found: no key",
    ]
    fields = error.fields()
    assert fields["failures"][3] == {
        "name": "DB",
        "reference": "vault://app/db#pw",
        "source": "c.toml:99",
        "kind": "not found",
        "reason": "no key",
    }
    assert fields["causes"] == [
        {"kind": "unreachable", "reason": down.reason, "secrets": [f"S{i}" for i in range(30)]},
        {"kind": "not found", "reason": "no key", "secrets": ["DB"]},
    ]


@pytest.mark.parametrize("flaky", [0, 3])
def test_retry_count_is_bounded_by_the_deadline(flaky: int) -> None:
    provider = Scripted("s", {"a": b"A"}, flaky=flaky)
    result = fetch_with_retries(provider, [SecretRef("s", "a")], time.monotonic() + 30)
    assert result[SecretRef("s", "a")] == b"A"
    assert len(provider.calls) == flaky + 1
    assert not isinstance(result[SecretRef("s", "a")], FetchError)


class SingleUse(Provider):
    """Answers only when it may consume its credential (not during ``check``)."""

    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        if self.checking:
            return dict.fromkeys(refs, NotChecked("the secret id is single-use: not unwrapped"))
        return dict.fromkeys(refs, b"value")


def test_a_secret_not_checked_is_neither_a_value_nor_a_failure() -> None:
    provider = SingleUse("once", {}, {})
    provider.checking = True
    specs = [spec("A", "once://a"), spec("URL", template="x${A}")]
    resolution = resolve(specs, {"once": provider}, timeout=5)
    assert resolution.values == {}
    assert resolution.failures == {}
    assert resolution.unchecked == {
        "A": "the secret id is single-use: not unwrapped",
        "URL": "uses secret A, which was not checked",
    }


def test_a_start_never_passes_a_secret_that_was_not_checked() -> None:
    from secretinit._declaration import Declaration
    from secretinit._identity import current_identity
    from secretinit._startup import Start, resolve_all

    provider = SingleUse("once", {}, {})
    provider.checking = True  # as if a provider returned NotChecked outside check
    start = Start(
        Declaration([spec("A", "once://a")]), {"once": provider}, current_identity(), 5, None
    )
    with pytest.raises(SecretsUnavailable, match="not fetched: the secret id is single-use"):
        resolve_all(start)


@pytest.mark.parametrize("checking", [True, False])
def test_prepare_tells_providers_whether_the_run_is_a_check(checking: bool) -> None:
    from secretinit._registry import ProviderRegistry
    from secretinit._startup import StartOptions, prepare

    start = prepare(
        StartOptions(checking=checking),
        {"A": "env-file://dev.env#A", "B": "docker-secret://b"},
        ProviderRegistry(),
    )
    with start:
        assert {s: p.checking for s, p in start.providers.items()} == {
            "env-file": checking,
            "docker-secret": checking,
        }


# --- throttling: a store's rate limit, with or without a Retry-After ---


class Throttling(Provider):
    """``Throttled(retry_after)`` ``times`` times, then the value; notes when each call came."""

    def __init__(self, times: int, retry_after: float | None) -> None:
        super().__init__("t", {}, {})
        self.times = times
        self.retry_after = retry_after
        self.calls: list[float] = []

    def fetch(self, refs: Sequence[SecretRef], timeout: float) -> FetchResult:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.times:
            error = Throttled("the store is throttling requests (429)", self.retry_after)
            return dict.fromkeys(refs, error)
        return dict.fromkeys(refs, b"value")


def test_the_retry_delay_is_jittered_above_the_retry_after() -> None:
    import random

    rng = random.Random(7)
    throttled = [Throttled("429", retry_after=2.0), Throttled("429", retry_after=0.5)]
    draws = [retry_delay(3, throttled, rng.uniform) for _ in range(200)]
    assert {floor for floor, _ in draws} == {2.0}  # the longest Retry-After of the batch
    delays = [delay for _, delay in draws]
    assert all(2.0 <= d <= 2.0 + 9.0 for d in delays)  # 1 s window, tripled twice
    assert len({round(d, 6) for d in delays}) > 150  # spread, not one instant for a fleet
    assert max(delays) - min(delays) > 6.0
    # No Retry-After: jitter alone; the window stops growing at the cap.
    assert all(
        0 <= retry_delay(30, [Throttled("429")], rng.uniform)[1] <= THROTTLED_CAP for _ in range(50)
    )
    # A refused connection is retried sooner than throttling: a restart, not a crowd.
    assert all(retry_delay(1, [Unreachable("refused")], rng.uniform)[1] <= 0.1 for _ in range(50))


def test_a_throttled_request_waits_its_retry_after() -> None:
    provider = Throttling(times=2, retry_after=0.4)
    ref = SecretRef("t", "a")
    assert fetch_with_retries(provider, [ref], time.monotonic() + 30) == {ref: b"value"}
    assert len(provider.calls) == 3
    gaps = [b - a for a, b in itertools.pairwise(provider.calls)]
    assert all(gap >= 0.4 for gap in gaps), gaps  # never sooner than the store asked


def test_throttling_gives_up_at_the_deadline_with_a_clear_report() -> None:
    provider = Throttling(times=10**6, retry_after=None)
    ref = SecretRef("t", "a")
    deadline = time.monotonic() + 2.5
    error = fetch_with_retries(provider, [ref], deadline)[ref]
    assert time.monotonic() < deadline + 1
    assert isinstance(error, Throttled)
    assert error.transient
    assert error.kind == "throttled"
    assert str(error).startswith("the store is throttling requests (429) (gave up after ")
    assert 1 < len(provider.calls) < 10  # backed off, not a storm


def test_a_retry_after_past_the_deadline_gives_up_at_once() -> None:
    provider = Throttling(times=10**6, retry_after=60)
    ref = SecretRef("t", "a")
    started = time.monotonic()
    error = fetch_with_retries(provider, [ref], started + 10)[ref]
    assert time.monotonic() - started < 5
    assert len(provider.calls) == 1
    assert isinstance(error, Throttled)
    assert "(gave up after 1 attempt in " in str(error)
    assert "the store asked to wait 60 s, past the deadline" in str(error)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 0 ", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-1", None),
        ("1.5", None),
    ],
)
def test_retry_after_header_in_seconds(header: str | None, seconds: float | None) -> None:
    assert Throttled.parse_retry_after(header) == seconds


def test_retry_after_header_as_an_http_date() -> None:
    import email.utils

    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= (Throttled.parse_retry_after(in_ten) or 0) <= 10
    past = email.utils.formatdate(time.time() - 100, usegmt=True)
    assert Throttled.parse_retry_after(past) == 0.0
