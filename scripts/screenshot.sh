#!/usr/bin/env bash
# screenshot.sh: takes docs/status.png, a screenshot of the status page in headless Chromium, so
# its look can be checked by eye.
#
# It builds the binaries, runs the demo (bin/hcdemo: three backends, app-3 flapping every 8 s,
# the proxy on 127.0.0.1:8080, the status page on 127.0.0.1:8081), waits until app-3 is down,
# so the picture shows a down row, takes the screenshot and stops the demo by its pid.
#
# Needs: chromium (Debian: apt-get install -y chromium), curl, python3. Ports 8080, 8081 and
# 19101-19103 must be free. Usage: scripts/screenshot.sh [OUTPUT.png] (default docs/status.png).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=$(realpath -m "${1:-docs/status.png}")
status_url=http://127.0.0.1:8081/status
app3=127.0.0.1:19103 # the demo's flapping backend

chromium=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $chromium ]]; then
	echo "screenshot: chromium not found (apt-get install -y chromium)" >&2
	exit 1
fi

make build

log=$(mktemp)
chromium_log=$(mktemp)
profile=$(mktemp -d)
demo_pid=
cleanup() {
	if [[ -n $demo_pid ]] && kill -0 "$demo_pid" 2>/dev/null; then
		kill -TERM "$demo_pid" # the demo stops hcproxy gracefully, then its backends
		wait "$demo_pid" || true
	fi
	rm -rf "$profile" "$log" "$chromium_log"
}
trap cleanup EXIT

bin/hcdemo -duration 90s >"$log" 2>&1 &
demo_pid=$!

# app3_state prints app-3's state from the JSON status, or nothing while the page does not answer.
app3_state() {
	curl -fsS --max-time 2 "$status_url?format=json" 2>/dev/null | python3 -c '
import json, sys
for b in json.load(sys.stdin).get("backends") or []:
    if b.get("address") == sys.argv[1]:
        print(b.get("state", "") + " " + str(b.get("transitions", 0)))
        break
' "$app3" 2>/dev/null || true
}

echo "screenshot: demo running (pid $demo_pid), waiting for app-3 to go down"
deadline=$((SECONDS + 60))
# down a second time (after a down-up cycle), so the history strip shows the flapping.
until [[ $(app3_state) == "down "[3-9]* ]]; do
	if ! kill -0 "$demo_pid" 2>/dev/null; then
		echo "screenshot: the demo exited:" >&2
		cat "$log" >&2
		exit 1
	fi
	if ((SECONDS > deadline)); then
		echo "screenshot: app-3 did not go down within 30 s; demo log:" >&2
		cat "$log" >&2
		exit 1
	fi
	sleep 0.5
done

echo "screenshot: app-3 is down, taking $out"
mkdir -p "$(dirname "$out")"
rm -f "$out"
timeout 60 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync \
	--user-data-dir="$profile" --window-size=1400,900 --screenshot="$out" "$status_url" \
	>"$chromium_log" 2>&1 || true # it complains about dbus and the like; the file is what counts
if [[ ! -s $out ]]; then
	echo "screenshot: chromium wrote no $out:" >&2
	cat "$chromium_log" >&2
	exit 1
fi

kill -TERM "$demo_pid"
wait "$demo_pid" || true
demo_pid=
echo "screenshot: wrote $out ($(stat -c %s "$out") bytes)"
