#!/usr/bin/env bash
# hcproxy beside nginx and HAProxy (and the backend alone) under wrk on loopback, interleaved in
# one run, reusing ../shared/bench's backends and peer configs; then the same load while each
# proxy reloads once a second. Prints RESULT lines and the hcproxy/nginx ratios.
# Usage: scripts/bench.sh [DURATION_S] [ROUNDS]   (needs: apt-get install nginx-light haproxy wrk)
set -u
D=${1:-10}; R=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
peer="$root/../shared/bench/run.sh"
HCPROXY="$root/bin/hcproxy"
for c in nginx haproxy wrk; do command -v $c >/dev/null || { echo "bench: $c not installed (apt-get install -y nginx-light haproxy wrk)"; exit 1; }; done
[ -f "$peer" ] || { echo "bench: $peer not found"; exit 1; }
[ -x "$HCPROXY" ] || { echo "bench: build first (make build)"; exit 1; }
W=$(mktemp -d /tmp/hcbench.XXXXXX)
PIDS=()
stop_all() { for p in "${PIDS[@]:-}"; do kill -TERM "$p" 2>/dev/null; done; sleep 1; for p in "${PIDS[@]:-}"; do kill -KILL "$p" 2>/dev/null; done; PIDS=(); }
trap 'stop_all; rm -rf "$W"' EXIT

# The peers' backends and start functions, taken from the shared harness as they are.
source <(sed -n '/^cat >"\$W\/backend.conf"/,/^BACK=/p' "$peer")
source <(sed -n '/^start_nginx()/,/^start_direct/p' "$peer")
source <(sed -n '/^bench()/,/^}/p' "$peer")

start_hcproxy() {
cat >"$W/hcproxy.toml" <<C
workers = 2
pid_file = "$W/hcproxy.pid"
table = "$W/hcproxy.table"
shutdown_timeout = "10s"
[[server]]
listen = "127.0.0.1:18080"
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:19101", "127.0.0.1:19102", "127.0.0.1:19103"]
[upstream.app.check]
uri = "/health"
interval = "1s"
rise = 2
fall = 2
C
"$HCPROXY" -c "$W/hcproxy.toml" 2>"$W/hcproxy.log" & P=$!
}

echo "hcproxy $("$HCPROXY" -v | awk '{print $3}'), nginx $(nginx -v 2>&1 | sed 's/.*\///'), haproxy $(haproxy -v | head -1 | awk '{print $3}'), wrk -t2 -c64 -d${D}s, $(nproc) cores, $R rounds"
for r in $(seq "$R"); do
  for name in direct nginx haproxy hcproxy; do
    start_$name
    [ -n "$P" ] && PIDS+=($P)
    url=http://127.0.0.1:18080/; [ $name = direct ] && url=http://127.0.0.1:19101/
    for i in $(seq 50); do curl -sf "$url" >/dev/null && break; sleep 0.1; done
    wrk -t1 -c16 -d2s "$url" >/dev/null 2>&1
    bench $name "$url" | tee -a "$W/results"
    if [ -n "$P" ]; then kill -TERM $P 2>/dev/null; wait $P 2>/dev/null; PIDS=("${BACK[@]}"); fi
    sleep 0.5
  done
done

# Reload once a second under the same load.
reload_nginx() { kill -HUP "$P"; }
reload_haproxy() { kill -USR2 "$P"; }
reload_hcproxy() { kill -HUP "$P"; }
for name in nginx haproxy hcproxy; do
  start_$name; PIDS+=($P)
  for i in $(seq 50); do curl -sf http://127.0.0.1:18080/ >/dev/null && break; sleep 0.1; done
  wrk -t2 -c64 -d${D}s http://127.0.0.1:18080/ >"$W/wrk.out" 2>&1 &
  WP=$!
  for i in $(seq $((D-1))); do sleep 1; reload_$name; done
  wait $WP
  echo "RESULT reload proxy=$name reloads=$((D-1)) $(awk '/requests in/ {print "requests="$1}' "$W/wrk.out") $(grep -E 'Non-2xx|Socket errors' "$W/wrk.out" | tr '\n' ' ')" | tee -a "$W/results"
  kill -TERM $P; wait $P 2>/dev/null; PIDS=("${BACK[@]}"); sleep 0.5
done

awk '/^RESULT proxy=/ { split($2,a,"="); split($3,b,"="); sum[a[2]]+=b[2]; n[a[2]]++ }
     END { if (n["nginx"] && n["hcproxy"]) printf "RATIO throughput hcproxy/nginx=%.2f hcproxy/haproxy=%.2f (mean of %d rounds)\n", (sum["hcproxy"]/n["hcproxy"])/(sum["nginx"]/n["nginx"]), (sum["hcproxy"]/n["hcproxy"])/(sum["haproxy"]/n["haproxy"]), n["nginx"] }' "$W/results"
