"""Image sizes per provider set and secretinit's start-up time inside the container.

    uv run python -m bench.image [--rounds 20] [--container-rounds 10] [--output FILE]

Builds the project's Dockerfile with podman on the container tier's local
Debian base (tests/container/podman.py: same state directory, same cache) for
the core alone, each provider of providers/ alone and all of them, then:

- the size of each image, and what it adds to the base image;
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
import sys
from pathlib import Path

from bench._common import Contender, markdown_table, race, ratio, seconds
from tests.container.podman import PROGRAMS, Image, Podman, install_tools, provider_sets

HEADER = """# Image sizes and start-up inside the container

Produced by (as root, from the repository root; the first run also makes the
container tier's base image, 1 to 2 minutes):

    uv run python -m bench.image --output bench/image/RESULTS.md

The images are built from this checkout on the tier's local Debian bookworm
base (no registry is reachable here, so not on `python:3.12-slim`); what
secretinit and each provider add ("added to the base") does not depend on
the base. Load average when the run ended: {load:.2f} (2 cores).

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
    images = [
        podman.build_secretinit(name, providers, base)
        for name, providers in provider_sets(each=True).items()
    ]
    out: list[str] = []

    out.append(f"Base image: local Debian bookworm minbase + python3-venv, {megabytes(base_size)}")
    out.append(f"(storage driver {podman.driver}).\n")
    out.append("### Image size per provider set\n")
    out.append(
        markdown_table(
            ["image", "providers", "size", "added to the base"],
            [
                [
                    i.name,
                    " ".join(i.providers) or "-",
                    megabytes(i.size),
                    megabytes(i.size - base_size),
                ]
                for i in images
            ],
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
    pairs = list(zip(contenders[::2], contenders[1::2], strict=True))
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
                for image, (bare, through) in zip(images, pairs, strict=True)
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
