"""The application of the container tier: says it started, what it got, then waits.

It prints one ``APP-STARTED`` line first (so a test can tell that it never
ran), then one ``APP-REPORT {json}`` line: its ids, its PID and parent, and
which secret variables it received, by name only, never a value. It then
waits for SIGTERM and exits with EXIT_ON_SIGTERM, a status that only this
program chooses: a container that stops with it was stopped through a
SIGTERM that reached the application. ``--exit`` ends it after the report.
"""

import json
import os
import signal
import sys
import time
import types

EXIT_ON_SIGTERM = 42


def on_sigterm(_number: int, _frame: types.FrameType | None) -> None:
    print("APP-SIGTERM: exiting with", EXIT_ON_SIGTERM, flush=True)
    sys.exit(EXIT_ON_SIGTERM)


def main() -> int:
    signal.signal(signal.SIGTERM, on_sigterm)
    print("APP-STARTED", flush=True)
    report = {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "file_variables": {k: v for k, v in os.environ.items() if k.endswith("_FILE")},
        "variables": sorted(os.environ),
    }
    print("APP-REPORT", json.dumps(report), flush=True)
    if "--exit" in sys.argv:
        return 0
    deadline = time.monotonic() + 600  # never outlive a forgotten container for long
    while time.monotonic() < deadline:
        time.sleep(1)
    return 1


if __name__ == "__main__":
    sys.exit(main())
