"""A child for the supervisor's tests: prints each signal it gets, one per line.

Usage: signal_child.py MODE [EXIT_CODE]
  handle       print every forwarded signal; exit EXIT_CODE (default 0) on SIGTERM
  ignore-term  print every forwarded signal except SIGTERM, which it ignores
"""

import os
import signal
import sys
import time

FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


def main() -> None:
    mode = sys.argv[1]
    code = int(sys.argv[2]) if len(sys.argv) > 2 else 0

    def on_signal(number: int, _frame: object) -> None:
        print(signal.Signals(number).name, flush=True)
        if number == signal.SIGTERM:
            sys.exit(code)

    for name in FORWARDED:
        signal.signal(getattr(signal, name), on_signal)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"ready {os.getpid()} {os.getpgrp()}", flush=True)
    while True:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
