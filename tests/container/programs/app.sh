#!/bin/sh
# The container tier's application for images without Python: app.py's protocol in sh.
#
# APP-STARTED first (so a test can tell that it never ran), then one
# APP-REPORT line of JSON: its ids, its PID and parent, the *_FILE variables
# it received (names and paths, never a value). It then waits for SIGTERM and
# exits 42, a status only this program chooses. --exit ends it after the report.
trap 'echo "APP-SIGTERM: exiting with 42"; exit 42' TERM
echo APP-STARTED
files=""
for name in $(env | sed -n 's/^\([A-Za-z0-9_]*_FILE\)=.*/\1/p'); do
    files="$files${files:+, }\"$name\": \"$(printenv "$name")\""
done
printf 'APP-REPORT {"uid": %s, "gid": %s, "pid": %s, "ppid": %s, "file_variables": {%s}}\n' \
    "$(id -u)" "$(id -g)" "$$" "$PPID" "$files"
[ "${1:-}" = --exit ] && exit 0
# sleep in the background and wait: the trap runs as soon as SIGTERM arrives.
end=$(($(date +%s) + 600))
while [ "$(date +%s)" -lt "$end" ]; do
    sleep 1 &
    wait $!
done
exit 1
