"""secretinit's start-up time, measured inside the container (standard library only).

Runs, interleaved so that a change in load hits all alike: the image's Python
doing nothing (the floor), ``secretinit run -- true`` with no secret, and with
two env-file secrets written to a private directory in /dev/shm. Prints one
JSON line: every timing in milliseconds and their medians.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    env_dir = tempfile.mkdtemp()
    env_file = os.path.join(env_dir, "startup.env")
    with open(env_file, "w") as handle:
        handle.write("DB_PASSWORD=startup-password\nAPI_TOKEN=startup-token\n")
    plain = {k: v for k, v in os.environ.items() if not k.endswith("_FILE")}
    with_secrets = dict(plain)
    for name in ("DB_PASSWORD", "API_TOKEN"):
        with_secrets[name] = f"env-file://{env_file}#{name}"
    contenders = {
        "python -I -c pass": ([sys.executable, "-I", "-c", "pass"], plain),
        "secretinit run -- true": (["secretinit", "run", "--", "true"], plain),
        "secretinit run (2 secrets) -- true": (
            ["secretinit", "run", "--", "true"],
            with_secrets,
        ),
    }
    timings: dict[str, list[float]] = {name: [] for name in contenders}
    for round_number in range(args.warmup + args.rounds):
        for name, (argv, env) in contenders.items():
            started = time.perf_counter()
            subprocess.run(
                argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            elapsed = (time.perf_counter() - started) * 1000
            if round_number >= args.warmup:
                timings[name].append(round(elapsed, 2))
    medians = {name: round(statistics.median(values), 1) for name, values in timings.items()}
    print(json.dumps({"medians_ms": medians, "timings_ms": timings}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
