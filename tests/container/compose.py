"""A Swarm stack's service, run the way Swarm would run it, with podman.

No Swarm runs here, so this reads ``examples/swarm/docker-compose.yml`` and
turns one service into ``podman run`` options, doing what Swarm does with
each key: secrets become files under ``/run/secrets`` with the stack's
uid, gid and mode, configs become files at their target, tmpfs volumes
become tmpfs mounts. A key it does not know fails the test, so the example
cannot grow something this run does not cover.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SECRETS_DIR = "/run/secrets"  # where Swarm mounts a secret whose target is a bare name

_SERVICE_KEYS = {
    "image",
    "user",
    "environment",
    "secrets",
    "configs",
    "volumes",
    "stop_grace_period",
    "deploy",  # read by Swarm's scheduler only: nothing to do for one container
}


@dataclass
class ServiceRun:
    """What ``podman run`` needs to run one service as Swarm would."""

    options: list[str] = field(default_factory=list)
    stop_timeout: int = 10
    secret_files: dict[str, str] = field(default_factory=dict)  # secret name -> container path


def load_stack(path: Path) -> dict[str, Any]:
    """The parsed compose file."""
    with path.open() as handle:
        stack: dict[str, Any] = yaml.safe_load(handle)
    return stack


def service_run(
    stack_file: Path, service: str, secret_values: Mapping[str, bytes], scratch: Path
) -> ServiceRun:
    """Options that run ``service`` of ``stack_file``; ``secret_values`` by the stack's secret
    names stand in for ``docker secret create``. Secret files are written into ``scratch``."""
    stack = load_stack(stack_file)
    spec = stack["services"][service]
    unknown = set(spec) - _SERVICE_KEYS
    if unknown:
        raise ValueError(f"the Swarm-style run does not know service keys {sorted(unknown)}")
    run = ServiceRun()
    if "user" in spec:
        run.options += ["--user", str(spec["user"])]
    environment = spec.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    for name, value in environment.items():
        run.options += ["--env", f"{name}={value}"]
    for entry in spec.get("configs", []):
        config = stack["configs"][entry["source"]]
        source = (stack_file.parent / config["file"]).resolve()
        run.options += ["--volume", f"{source}:{entry['target']}:ro"]
    for entry in spec.get("secrets", []):
        entry = {"source": entry} if isinstance(entry, str) else entry
        name = entry["source"]
        if name not in stack.get("secrets", {}):
            raise ValueError(f"service secret {name!r} is not declared under secrets:")
        target = entry.get("target", name)
        path = target if target.startswith("/") else f"{SECRETS_DIR}/{target}"
        # Swarm's defaults: owned by root, mode 0444.
        host_file = scratch / f"secret-{name}"
        host_file.write_bytes(secret_values[name])
        os.chown(host_file, int(entry.get("uid", 0)), int(entry.get("gid", 0)))
        host_file.chmod(int(entry.get("mode", 0o444)))
        run.options += ["--volume", f"{host_file}:{path}:ro"]
        run.secret_files[name] = path
    for volume in spec.get("volumes", []):
        if not isinstance(volume, dict) or volume.get("type") != "tmpfs":
            raise ValueError(f"the Swarm-style run knows only tmpfs volumes, not {volume!r}")
        mount = f"type=tmpfs,destination={volume['target']}"
        options = volume.get("tmpfs", {})
        if "size" in options:
            mount += f",tmpfs-size={options['size']}"
        if "mode" in options:
            mount += f",tmpfs-mode={options['mode']:o}"
        run.options += ["--mount", mount]
    if "stop_grace_period" in spec:
        run.stop_timeout = _seconds(str(spec["stop_grace_period"]))
    return run


def _seconds(duration: str) -> int:
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(h|m|s|ms)", duration):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return max(1, round(total))
