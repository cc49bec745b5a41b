#!/usr/bin/env bash
# hcproxy beside nginx and HAProxy (and the backend alone) under wrk on loopback, interleaved in
# one run, reusing ../shared/bench's backends and peer configs; then the same load while each
# proxy reloads once a second. Prints a RESULT line per run (req/s, p50, p99, the proxy's CPU time
# per request), a SUMMARY per proxy over the rounds and the hcproxy/nginx ratios.
# Usage: scripts/bench.sh [DURATION_S] [ROUNDS]  (default 10 s, 5 rounds)   (needs: apt-get install nginx-light haproxy wrk)
set -u
D=${1:-10}; R=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
peer="$root/../shared/bench/run.sh"
HCPROXY="${HCPROXY:-$root/bin/hcproxy}" # another build to compare: HCPROXY=path make bench
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

# cpu_ticks PID: utime+stime, in clock ticks, of PID and its children (a proxy's master and workers).
cpu_ticks() {
  local s=0 p f
  for p in "$1" $(pgrep -P "$1"); do
    f=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) && s=$((s + f))
  done
  echo "$s"
}
TICK=$(getconf CLK_TCK)

# bench NAME URL PID: one wrk run; with PID, also the proxy's CPU time per request (utime+stime of
# its processes over the requests wrk counted), a measure the shared machine's load moves less.
bench() {
  local out c0 c1 cpu=""
  [ -n "$3" ] && c0=$(cpu_ticks "$3")
  out=$(wrk -t2 -c64 -d${D}s --latency "$2" 2>&1)
  local req rps p50 p99 err
  req=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  err=$(grep -E "Non-2xx|Socket errors" <<<"$out" | tr '\n' ' ')
  if [ -n "$3" ] && [ "${req:-0}" -gt 0 ]; then
    c1=$(cpu_ticks "$3")
    cpu="cpu_us_per_req=$(awk -v t=$((c1 - c0)) -v hz="$TICK" -v n="$req" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')"
  fi
  echo "RESULT proxy=$1 rps=$rps p50=$p50 p99=$p99 $cpu ${err}"
}

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
  order="direct nginx haproxy hcproxy"; [ $((r % 2)) = 0 ] && order="direct hcproxy haproxy nginx" # no proxy always goes first
  for name in $order; do
    start_$name
    [ -n "$P" ] && PIDS+=($P)
    url=http://127.0.0.1:18080/; [ $name = direct ] && url=http://127.0.0.1:19101/
    for i in $(seq 50); do curl -sf "$url" >/dev/null && break; sleep 0.1; done
    wrk -t1 -c16 -d2s "$url" >/dev/null 2>&1
    bench $name "$url" "$P" | tee -a "$W/results"
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

# Per proxy over the rounds: mean req/s, median p99 (in ms) and median CPU per request; then the
# ratios to nginx.
awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
     function median(a, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
                                        return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
     /^RESULT proxy=/ { delete f; for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
       p = f["proxy"]; n[p]++; rps[p] += f["rps"]; r[p, n[p]] = f["rps"]; p99[p, n[p]] = ms(f["p99"]); if ("cpu_us_per_req" in f) cpu[p, n[p]] = f["cpu_us_per_req"] }
     END {
       for (p in n) { delete a; for (i = 1; i <= n[p]; i++) a[i] = p99[p, i]; mp99[p] = median(a, n[p])
                      delete a; for (i = 1; i <= n[p]; i++) a[i] = cpu[p, i]; mcpu[p] = median(a, n[p]); mrps[p] = rps[p] / n[p] }
       split("direct nginx haproxy hcproxy", order, " ")
       for (k = 1; k <= 4; k++) if ((p = order[k]) in n) printf "SUMMARY proxy=%s rounds=%d rps_mean=%.0f p99_median=%.2fms cpu_us_per_req_median=%s\n", p, n[p], mrps[p], mp99[p], (p == "direct" ? "-" : sprintf("%.2f", mcpu[p]))
       if (n["nginx"] && n["hcproxy"]) {
         delete a; for (i = 1; i <= n["hcproxy"]; i++) a[i] = r["hcproxy", i] / r["nginx", i]; lo = a[1]; hi = a[1]
         for (i = 2; i <= n["hcproxy"]; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i] }
         printf "RATIO hcproxy/nginx throughput=%.2f (per round %.2f-%.2f, median %.2f) p99=%.2f cpu_per_req=%.2f; hcproxy/haproxy throughput=%.2f (over %d rounds; p99 and CPU: medians)\n",
           mrps["hcproxy"] / mrps["nginx"], lo, hi, median(a, n["hcproxy"]), mp99["hcproxy"] / mp99["nginx"], mcpu["hcproxy"] / mcpu["nginx"], mrps["hcproxy"] / mrps["haproxy"], n["nginx"] } }' "$W/results"
