#!/bin/sh
# Runs "$@" once, its output discarded, and prints how long it took in
# microseconds, measured inside the container (coreutils date): what
# bench/image and the tier compare, without podman's own overhead.
started=$(date +%s%N)
"$@" >/dev/null 2>&1 || { echo "time-run.sh: $* failed" >&2; exit 1; }
ended=$(date +%s%N)
echo $(((ended - started) / 1000))
