"""The baseline: a plain sequential hvac loop, as a hand-written entrypoint script does it.

One read per secret, in order, then a file with mode 0400 for each. Usage:
``python hvac_loop.py SPEC.json`` with ``{"dir": ..., "secrets": [[name, path, key], ...]}``;
VAULT_ADDR and VAULT_TOKEN come from the environment, as hvac reads them.
"""

import json
import os
import sys

import hvac  # type: ignore[import-untyped]


def main() -> None:
    with open(sys.argv[1]) as file:
        spec = json.load(file)
    client = hvac.Client()
    for name, path, key in spec["secrets"]:
        mount, _, rest = path.partition("/")
        answer = client.secrets.kv.v2.read_secret_version(
            path=rest, mount_point=mount, raise_on_deleted_version=True
        )
        target = os.path.join(spec["dir"], name)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        try:
            os.write(fd, answer["data"]["data"][key].encode())
        finally:
            os.close(fd)


if __name__ == "__main__":
    main()
