"""Image sizes per provider set and secretinit's start-up time inside the container.

    uv run python -m bench.image [--rounds 20] [--container-rounds 10] [--output FILE]

Builds the project's Dockerfile with podman on the container tier's local
Debian base (tests/container/podman.py: same state directory, same cache) for
the core alone, each provider of providers/ alone and all of them, and its
``bundle`` target for each of them, copied into examples/any-image on the
base without Python (tests/container/no-python.Dockerfile), then:

- the size of each image, and what it adds to the base image; the size of
  each bundle (/opt/secretinit);
- ``secretinit run`` of ``true`` with one env-file secret, in the Python
  image and in the bundle's image, interleaved, timed inside the container
  (tests/container/programs/time-run.sh, so podman's own overhead is out);
- the resident supervisor (PID 1 while the command sleeps) of both: RSS, PSS;
- inside a container of each image, interleaved: the image's Python doing
  nothing, ``secretinit run -- true`` with no secret, and with two env-file
  secrets (tests/container/programs/startup.py);
- a whole container start to exit, interleaved: ``podman run IMAGE true``
  through secretinit, against the same image with ``--entrypoint true``.

Needs root and podman (the tier installs it: ``apt-get install -y
--no-install-recommends podman runc debootstrap``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._common import Contender, markdown_table, race, ratio, seconds
from tests.container.podman import (
    PROGRAMS,
    Container,
    Image,
    Podman,
    install_tools,
    provider_sets,
    start,
)

BUNDLE_COMMAND = "/opt/secretinit/secretinit"
MEMORY_SAMPLES = 5
ENV_FILE_SECRET = "DB_PASSWORD=env-file:///tier-env/startup.env#DB_PASSWORD"

HEADER = """# Image sizes and start-up inside the container

Produced by (as root, from the repository root; the first run also makes the
container tier's base image, 1 to 2 minutes):

    uv run python -m bench.image --output bench/image/RESULTS.md

The images are built from this checkout on the tier's local Debian bookworm
base (no registry is reachable here, so not on `python:3.12-slim`); what
secretinit and each provider add ("added to the base") does not depend on
the base. The bundles are the Dockerfile's `--target bundle` on the same
base, copied into examples/any-image on that base with python3 purged.
Load average when the run ended: {load:.2f} (2 cores).

"""


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def startup_inside(podman: Podman, image: Image, rounds: int) -> dict[str, float]:
    """Median seconds of each contender of programs/startup.py, run inside ``image``."""
    done = podman(
        "run",
        "--rm",
        "--network",
        "none",
        "--volume",
        f"{PROGRAMS}:/tier:ro",
        image.id,
        "python3",
        "/tier/startup.py",
        "--rounds",
        str(rounds),
        timeout=60 + rounds * 10,
    )
    medians: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])["medians_ms"]
    return {name: value / 1000 for name, value in medians.items()}


def container_runs(podman: Podman, images: list[Image], rounds: int) -> list[Contender]:
    """``podman run --rm IMAGE true`` through secretinit and without it, interleaved."""
    contenders = []
    for image in images:
        bare = ("run", "--rm", "--network", "none", "--entrypoint", "true", image.id)
        through = ("run", "--rm", "--network", "none", image.id, "true")
        contenders.append(
            Contender(f"{image.name}: --entrypoint true", functools.partial(podman, *bare))
        )
        contenders.append(
            Contender(f"{image.name}: secretinit run -- true", functools.partial(podman, *through))
        )
    race(contenders, rounds)
    return contenders


def sleeping(podman: Podman, image: Image, *options: str) -> Container:
    """A container of ``image`` whose PID 1 sleeps: for ``podman exec`` of timed runs."""
    return start(
        podman,
        "--network",
        "none",
        "--volume",
        f"{PROGRAMS}:/tier:ro",
        *options,
        "--entrypoint",
        "sleep",
        image.id,
        "3600",
    )


def run_startups(
    podman: Podman,
    pairs: list[tuple[Image, Image]],
    env_mount: tuple[str, ...],
    rounds: int,
    warmup: int = 2,
) -> dict[str, tuple[float, float]]:
    """Median seconds of ``secretinit run -- true`` with one env-file secret: Python, bundle.

    One sleeping container per image; each round runs once in every
    container, in turn, timed inside it.
    """
    runs: list[tuple[str, Container, list[str], list[float]]] = []
    try:
        for python_image, any_image in pairs:
            python = sleeping(podman, python_image, *env_mount)
            runs.append((python_image.name, python, ["secretinit"], []))
            bundle = sleeping(podman, any_image, *env_mount, "--env", "SECRETINIT_CONFIG=")
            runs.append((any_image.name, bundle, [BUNDLE_COMMAND], []))
        for round_number in range(warmup + rounds):
            for _name, container, command, timings in runs:
                done = podman(
                    "exec",
                    "--env",
                    ENV_FILE_SECRET,
                    container.name,
                    "sh",
                    "/tier/time-run.sh",
                    *command,
                    "run",
                    "--",
                    "true",
                )
                if round_number >= warmup:
                    timings.append(int(done.stdout) / 1e6)
    finally:
        for _name, container, _command, _timings in runs:
            container.remove()
    medians: dict[str, tuple[float, float]] = {}
    for python_run, bundle_run in zip(runs[::2], runs[1::2], strict=True):
        medians[python_run[0]] = (
            statistics.median(python_run[3]),
            statistics.median(bundle_run[3]),
        )
    return medians


def resident_supervisor(podman: Podman, image: Image, *options: str) -> tuple[int, int]:
    """(RSS, PSS) in kB of PID 1, secretinit's supervisor, while its command sleeps."""
    container = start(
        podman,
        "--network",
        "none",
        "--volume",
        f"{PROGRAMS}:/tier:ro",
        "--env",
        ENV_FILE_SECRET,
        *options,
        image.id,
        "sleep",
        "600",
    )
    try:
        container.wait_for("resolved 1 secret")
        time.sleep(1)  # the supervisor has exec'd and started the command
        status = container.read("/proc/1/status")
        rollup = container.read("/proc/1/smaps_rollup")
    finally:
        container.remove()
    rss = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    pss = next(line.split()[1] for line in rollup.splitlines() if line.startswith("Pss:"))
    return int(rss), int(pss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.image", description=__doc__)
    parser.add_argument("--rounds", type=int, default=20, help="start-ups inside a container")
    parser.add_argument("--container-rounds", type=int, default=10, help="whole container runs")
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    args = parser.parse_args(argv)

    install_tools()
    podman = Podman()
    base = podman.base_image()
    base_size = podman.image_size(base)
    sets = provider_sets(each=True)
    images = [podman.build_secretinit(name, providers, base) for name, providers in sets.items()]
    bundles = [
        podman.build_secretinit(name, providers, base, bundle=True)
        for name, providers in sets.items()
    ]
    no_python = podman.no_python_base(base)
    any_images = [podman.build_any_image(bundle, no_python) for bundle in bundles]
    env_dir = Path(tempfile.mkdtemp(dir=podman.state / "tmp"))
    env_dir.chmod(0o755)
    (env_dir / "startup.env").write_text("DB_PASSWORD=bench-startup-password\n")
    (env_dir / "startup.env").chmod(0o644)
    env_mount = ("--volume", f"{env_dir}:/tier-env:ro")
    out: list[str] = []

    out.append(f"Base image: local Debian bookworm minbase + python3-venv, {megabytes(base_size)}")
    out.append(f"(storage driver {podman.driver}).\n")
    out.append("### Image size per provider set\n")
    out.append(
        markdown_table(
            ["image", "providers", "size", "added to the base", "bundle (/opt/secretinit)"],
            [
                [
                    i.name,
                    " ".join(i.providers) or "-",
                    megabytes(i.size),
                    megabytes(i.size - base_size),
                    megabytes(b.size),
                ]
                for i, b in zip(images, bundles, strict=True)
            ],
        )
    )

    out.append(
        f"\n### `secretinit run -- true` with one env-file secret: Python image against the "
        f"bundle in an image without Python (medians of {args.rounds}, interleaved, timed "
        "inside the container)\n"
    )
    pairs = list(zip(images, any_images, strict=True))
    startups = run_startups(podman, pairs, env_mount, args.rounds)
    out.append(
        markdown_table(
            ["providers", "Python image", "bundle, no Python", "bundle / Python"],
            [
                [name, seconds(python), seconds(bundle), ratio(bundle, python)]
                for name, (python, bundle) in startups.items()
            ],
        )
    )

    out.append(
        f"\n### The resident supervisor (PID 1 while the command sleeps; medians of"
        f" {MEMORY_SAMPLES} containers, alternating)\n"
    )
    rows = []
    for image, any_image in zip(images, any_images, strict=True):
        python_samples, bundle_samples = [], []
        for _ in range(MEMORY_SAMPLES):  # one container's figure moves by ~0.3 MiB
            python_samples.append(resident_supervisor(podman, image, *env_mount))
            bundle_samples.append(
                resident_supervisor(podman, any_image, *env_mount, "--env", "SECRETINIT_CONFIG=")
            )
        python_rss = statistics.median(rss for rss, _ in python_samples)
        python_pss = statistics.median(pss for _, pss in python_samples)
        bundle_rss = statistics.median(rss for rss, _ in bundle_samples)
        bundle_pss = statistics.median(pss for _, pss in bundle_samples)
        rows.append(
            [
                image.name,
                f"{python_rss / 1024:.1f} MiB",
                f"{bundle_rss / 1024:.1f} MiB",
                f"{python_pss / 1024:.1f} MiB",
                f"{bundle_pss / 1024:.1f} MiB",
            ]
        )
    out.append(
        markdown_table(
            ["providers", "RSS: Python image", "RSS: bundle", "PSS: Python image", "PSS: bundle"],
            rows,
        )
    )

    out.append("\n### Start-up inside the container (medians)\n")
    rows = []
    for image in images:
        medians = startup_inside(podman, image, args.rounds)
        floor = medians["python -I -c pass"]
        run_plain = medians["secretinit run -- true"]
        run_secrets = medians["secretinit run (2 secrets) -- true"]
        rows.append(
            [
                image.name,
                seconds(floor),
                seconds(run_plain),
                ratio(run_plain, floor),
                seconds(run_secrets),
                ratio(run_secrets, floor),
            ]
        )
    out.append(
        markdown_table(
            [
                "image",
                "python -I -c pass",
                "secretinit run -- true",
                "ratio",
                "secretinit run, 2 env-file secrets",
                "ratio",
            ],
            rows,
        )
    )

    out.append(f"\n### A whole container, start to exit (medians of {args.container_rounds})\n")
    contenders = container_runs(podman, images, args.container_rounds)
    bare_through = list(zip(contenders[::2], contenders[1::2], strict=True))
    out.append(
        markdown_table(
            ["image", "--entrypoint true", "through secretinit", "difference"],
            [
                [
                    image.name,
                    seconds(bare.median),
                    seconds(through.median),
                    seconds(through.median - bare.median),
                ]
                for image, (bare, through) in zip(images, bare_through, strict=True)
            ],
        )
    )
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if args.output is not None:
        args.output.write_text(HEADER.format(load=os.getloadavg()[0]) + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
