# The container tier's base without Python: its Debian base with every python3
# package purged, for images that use the self-contained bundle. What the
# interpreter pulled in (libssl3, libffi8, ...) stays; the tier checks with
# ldd that the bundle loads none of it from here.
ARG BASE_IMAGE=localhost/secretinit-tier-base
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
RUN dpkg-query --show --showformat '${Package}\n' | grep -E '^(lib)?python3' \
        | xargs dpkg --purge; \
    rm -rf /usr/lib/python3 /usr/local/lib/python3*; \
    if command -v python3 || command -v python; then exit 1; fi
