"""A fleet at Vault's rate limit: OpenBao's own rate-limit quota answers 429, secretinit waits.

A dedicated dev server (quotas are server-wide) with a quota on one KV mount
only, so that the mount lookups pass and the reads are throttled. Nothing is
timed: the retries' waits are read from secretinit's debug log and compared
with the Retry-After the server sent.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_no_leak, run_secretinit

from .conftest import start_server

RETRY = re.compile(r"vault: (\d+) transient failures? \((\d+) throttled\), retrying in ([\d.]+) s")
ASKED = re.compile(r"retrying in ([\d.]+) s \(the store asked for ([\d.]+) s\)")


@pytest.fixture(scope="module")
def quota_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = start_server(tmp_path_factory.mktemp("quota"))
    try:
        server.api("POST", "sys/mounts/limited", {"type": "kv", "options": {"version": "2"}})
        yield server
    finally:
        server.kill()


def limit(server: Any, *, headers: bool, rate: int, interval: str, block: str = "0s") -> None:
    """One rate-limit quota on limited/: ``rate`` requests per ``interval``, then ``block``."""
    server.api("POST", "sys/quotas/config", {"enable_rate_limit_response_headers": headers})
    server.api(
        "POST",
        "sys/quotas/rate-limit/fleet",
        {"path": "limited/", "rate": rate, "interval": interval, "block_interval": block},
    )


def plant(server: Any, count: int) -> tuple[dict[str, str], list[str]]:
    """``count`` secrets under limited/ (written before the quota); their references."""
    server.api("DELETE", "sys/quotas/rate-limit/fleet")
    values = [f"throttled-{i}-" + os.urandom(6).hex() for i in range(count)]
    for i, value in enumerate(values):
        server.api("POST", f"limited/data/app/s{i}", {"data": {"v": value}})
    return {f"S{i}": f"vault://limited/app/s{i}#v" for i in range(count)}, values


def env_for(server: Any, home: Path, refs: dict[str, str]) -> dict[str, str]:
    return {
        "VAULT_ADDR": server.address,
        "VAULT_TOKEN": server.root_token,
        "HOME": str(home),
        **refs,
    }


def test_throttled_reads_wait_the_retry_after_then_succeed(
    quota_server: Any, tmp_path: Path, home: Path
) -> None:
    refs, values = plant(quota_server, 3)
    # One read a second; past it, every request is refused for 2 s (Retry-After counts down).
    limit(quota_server, headers=True, rate=1, interval="1s", block="2s")
    out = tmp_path / "out"
    args = ["fetch", "--dir", str(out), "--timeout", "60", "--log-level", "debug"]
    result = run_secretinit(args, env_for(quota_server, home, refs), timeout=90)
    assert result.returncode == 0, result.stderr
    assert [(out / name).read_text() for name in sorted(refs)] == values
    retries = RETRY.findall(result.stderr)
    assert retries, result.stderr
    assert all(int(throttled) >= 1 for _, throttled, _ in retries)
    asked = [(float(delay), float(wait)) for delay, wait in ASKED.findall(result.stderr)]
    assert asked, result.stderr  # the server's Retry-After reached the core
    assert all(delay >= wait for delay, wait in asked)  # never sooner than asked
    assert all(delay > wait for delay, wait in asked)  # and jittered after it
    assert "rate limit quota exceeded" in result.stderr
    assert_no_leak([*values, quota_server.root_token], result.stdout, result.stderr)


def test_throttling_without_retry_after_gives_up_at_the_deadline(
    quota_server: Any, tmp_path: Path, home: Path
) -> None:
    refs, values = plant(quota_server, 2)
    limit(quota_server, headers=False, rate=1, interval="1m")  # no Retry-After header
    started = time.monotonic()
    args = ["fetch", "--dir", str(tmp_path / "out"), "--timeout", "4", "--log-level", "debug"]
    result = run_secretinit(args, env_for(quota_server, home, refs))
    elapsed = time.monotonic() - started
    assert result.returncode == 69, result.stderr
    assert elapsed < 20  # the deadline plus start-up, not a minute of retries
    assert not (tmp_path / "out" / "S0").exists()  # nothing written when one is missing
    line = next(line for line in result.stderr.splitlines() if "vault://limited/app/s" in line)
    assert re.search(
        r"throttled: Vault at \S+ is throttling requests \(429 rate limit quota exceeded\) "
        r"\(gave up after \d+ attempts in [34]\.\d s\)",
        line,
    ), line
    assert len(RETRY.findall(result.stderr)) >= 1  # it did back off and retry first
    assert_no_leak([*values, quota_server.root_token], result.stdout, result.stderr)


def test_a_retry_after_past_the_deadline_fails_at_once(
    quota_server: Any, tmp_path: Path, home: Path
) -> None:
    refs, values = plant(quota_server, 2)
    limit(quota_server, headers=True, rate=1, interval="1s", block="1h")
    args = ["fetch", "--dir", str(tmp_path / "out"), "--timeout", "30"]
    started = time.monotonic()
    result = run_secretinit(args, env_for(quota_server, home, refs))
    assert result.returncode == 69, result.stderr
    assert time.monotonic() - started < 20  # no waiting for a wait that cannot end in time
    assert re.search(
        r"throttled: Vault at \S+ is throttling requests \(429 rate limit quota exceeded, "
        r"Retry-After \d+ s\) \(gave up after 1 attempt in [\d.]+ s; the store asked to wait "
        r"\d+ s, past the deadline\)",
        result.stderr,
    ), result.stderr
    assert_no_leak([*values, quota_server.root_token], result.stdout, result.stderr)
