"""The baseline: a plain sequential boto3 ``get_secret_value`` loop, one file per secret.

``python bench/aws/_boto3_loop.py DIR PREFIX N`` reads ``PREFIX0000`` ... and
writes each value to ``DIR/S0000`` ...: what a hand-written entrypoint script
does. Credentials, region and endpoint come from the environment, as for
secretinit.
"""

import os
import sys

import boto3


def main() -> None:
    directory, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = boto3.client("secretsmanager")
    for i in range(count):
        value = client.get_secret_value(SecretId=f"{prefix}{i:04d}")["SecretString"]
        fd = os.open(os.path.join(directory, f"S{i:04d}"), os.O_WRONLY | os.O_CREAT, 0o400)
        with os.fdopen(fd, "w") as file:
            file.write(value)


if __name__ == "__main__":
    main()
