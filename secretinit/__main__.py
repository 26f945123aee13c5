"""``python -m secretinit`` and the ``secretinit`` command: the CLI, or a path without it.

Two commands skip click and the CLI's imports: ``status``, a health probe
run every few seconds for a container's whole life, and ``refresh-run``, the
refresh that the supervisor starts each period (not a user's command).
"""

import sys


def main() -> None:
    """The console script."""
    args = sys.argv[1:]
    if args[:1] == ["status"] and not {"-h", "--help"} & set(args[1:]):
        from secretinit._health import status_main

        sys.exit(status_main(args[1:]))
    if args[:1] == ["refresh-run"]:
        from secretinit._refresh import refresh_run_main

        sys.exit(refresh_run_main(args[1:]))
    from secretinit._cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
