#!/bin/sh
# The example application without Python: reports what secretinit gave it, never a value.
# (The same report as examples/app.py, in sh and coreutils.)
set -eu
echo "example app (sh, no Python here): running as uid $(id -u) gid $(id -g), pid $$"
directories=""
for name in DB_PASSWORD API_TOKEN DATABASE_URL TLS_KEY; do
    path=$(printenv "${name}_FILE" || true)
    if [ -n "$path" ]; then
        echo "  ${name}_FILE=$path: $(stat -L -c 'mode 0%a, owner uid %u, %s bytes' "$path")"
        directories="$directories $(dirname "$path")"
    elif value=$(printenv "$name"); then
        echo "  $name is in the environment: a value of ${#value} characters"
    else
        echo "  $name: neither $name nor ${name}_FILE is set"
    fi
done
for directory in $(printf '%s\n' $directories | sort -u); do
    echo "  secret directory $directory: $(stat -c 'mode 0%a' "$directory"), holding:"
    for entry in "$directory"/*; do
        echo "    $(basename "$entry"): $(stat -L -c 'mode 0%a, owner uid %u, %s bytes' "$entry")"
    done
done
