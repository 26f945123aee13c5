"""The example application: reports what secretinit gave it, never a value.

For each secret it knows it prints the ``NAME_FILE`` variable with the file's
mode, owner and length (or the length of a value exported as ``NAME``), then
the secret directory's mode and content, so the demo shows the whole
contract without putting a secret on the terminal.
"""

import os
import stat
import sys

SECRET_NAMES = ("DB_PASSWORD", "API_TOKEN", "DATABASE_URL", "TLS_KEY")


def describe_file(path: str) -> str:
    info = os.stat(path)
    with open(path, "rb") as handle:
        size = len(handle.read())
    return f"mode {stat.S_IMODE(info.st_mode):04o}, owner uid {info.st_uid}, {size} bytes"


def main() -> int:
    print(f"example app: running as uid {os.getuid()} gid {os.getgid()}, pid {os.getpid()}")
    directories = set()
    for name in SECRET_NAMES:
        path = os.environ.get(f"{name}_FILE")
        if path is not None:
            directories.add(os.path.dirname(path))
            print(f"  {name}_FILE={path}: {describe_file(path)}")
        elif name in os.environ:
            print(f"  {name} is in the environment: a value of {len(os.environ[name])} characters")
        else:
            print(f"  {name}: neither {name} nor {name}_FILE is set")
    for directory in sorted(directories):
        mode = stat.S_IMODE(os.stat(directory).st_mode)
        print(f"  secret directory {directory}: mode {mode:04o}, holding:")
        for entry in sorted(os.listdir(directory)):
            if entry.startswith(".."):
                continue  # ..data and the generation it names: each NAME links there
            print(f"    {entry}: {describe_file(os.path.join(directory, entry))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
