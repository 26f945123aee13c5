"""A model of bench/fleet, to compare backoff schedules in seconds instead of hours.

    uv run python -m bench.fleet.model            # the grid of schedules
    uv run python -m bench.fleet.model --seeds 100

Each real round of bench/fleet takes minutes; this discrete-event model of
the same fleet takes milliseconds, so a schedule can be chosen over a grid
and then checked by the real benchmark. It models what matters to the two
figures in question (the last process done against the ideal drain, and
the requests the proxy sees against the minimum):

- K processes whose first requests arrive spread over the seconds the two
  cores need to start them (9 s for Vault, 10 s for AWS: "last done, no
  limit" in RESULTS.md);
- a token bucket of R requests a second holding at most R, as the proxy;
- Vault: a mount lookup, then two reads sent together, or one alone and
  then the other once the process has been throttled (the provider's
  probe), a refusal carrying ``Retry-After: 1``; AWS: one batch call, a
  refusal carrying nothing;
- after a refusal, a wait of ``Retry-After`` plus ``uniform(0, window)``,
  the window ``base * growth ** (attempt - 1)`` up to ``cap``: the core's
  ``retry_delay``.

It leaves out the requests' own time and the machine's load, so its
drain times come out lower than measured (by about a fifth); the ranking
of schedules is what it is for. What it shows either way: no schedule
that knows neither K nor R gets the AWS fleet (one request a process)
near 2x the minimal requests: the first attempts alone, all refused but
one a second, are most of that.
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
from typing import NamedTuple

from secretinit._resolve import THROTTLED_BASE, THROTTLED_CAP, THROTTLED_GROWTH


class Schedule(NamedTuple):
    base: float
    growth: float
    cap: float


# The AWS SDKs' schedule for throttling, the core's before bench/fleet chose its own.
AWS_SDKS = Schedule(1.0, 2.0, 20.0)


class Outcome(NamedTuple):
    last_over_ideal: float
    requests_over_minimum: float


class Bucket:
    """The proxy's token bucket: ``rate`` tokens a second, holding at most ``rate``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def simulate(store: str, schedule: Schedule, seed: int, processes: int = 40) -> Outcome:
    """One fleet of ``processes`` against ``store`` ("vault" or "aws") under ``schedule``."""
    rng = random.Random(seed)
    vault = store == "vault"
    rate, spread, retry_after, needed = (4.0, 9.0, 1.0, 3) if vault else (1.0, 10.0, 0.0, 1)
    bucket = Bucket(rate)
    requests = 0
    lookup = [vault] * processes
    reads = [2 if vault else 1] * processes
    attempts = [0] * processes
    done: list[float] = []
    queue = [(rng.uniform(0, spread), i) for i in range(processes)]
    heapq.heapify(queue)
    while queue:
        now, i = heapq.heappop(queue)
        ok = True
        if lookup[i]:
            requests += 1
            ok = bucket.take(now)
            lookup[i] = not ok
        if ok:
            # Once throttled, the Vault provider sends one read alone, then the rest.
            together = reads[i] if attempts[i] == 0 else 1
            while ok and reads[i]:
                sent = min(together, reads[i])
                granted = 0
                for _ in range(sent):
                    requests += 1
                    granted += bucket.take(now)
                reads[i] -= granted
                ok = granted == sent
                together = reads[i]
        if ok:
            done.append(now)
            continue
        attempts[i] += 1
        window = min(schedule.cap, schedule.base * schedule.growth ** (attempts[i] - 1))
        heapq.heappush(queue, (now + retry_after + rng.uniform(0, window) + 0.02, i))
    minimum = processes * needed
    return Outcome(max(done) / (minimum / rate), requests / minimum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=30, help="fleets per schedule and store")
    args = parser.parse_args()
    current = Schedule(THROTTLED_BASE, THROTTLED_GROWTH, THROTTLED_CAP)
    print(f"medians (and worst) of {args.seeds} fleets; the core's schedule is {current}")
    print(
        "| base | growth | cap | Vault: last / ideal | Vault: requests / minimum "
        "| AWS: last / ideal | AWS: requests / minimum |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for base in (0.5, 1.0, 2.0):
        for growth in (2.0, 3.0, 4.0):
            for cap in (8.0, 12.0, 20.0):
                schedule = Schedule(base, growth, cap)
                cells = []
                for store in ("vault", "aws"):
                    runs = [simulate(store, schedule, seed) for seed in range(args.seeds)]
                    last = [run.last_over_ideal for run in runs]
                    requests = statistics.median(run.requests_over_minimum for run in runs)
                    cells += [
                        f"{statistics.median(last):.2f}x ({max(last):.2f}x)",
                        f"{requests:.2f}x",
                    ]
                mark = {current: " (the core's)", AWS_SDKS: " (the AWS SDKs')"}.get(schedule, "")
                print(f"| {base:g} | {growth:g} | {cap:g}{mark} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
