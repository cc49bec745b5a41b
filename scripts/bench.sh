#!/usr/bin/env bash
# make bench: hcproxy beside nginx and HAProxy on loopback, one proxy at a time, in one run, with
# nothing of ../shared needed. Every proxy gets the same backends (one nginx, three ports), 2
# workers (HAProxy: 2 threads; WORKERS=1 for one), the same load. Scenarios, each in rounds whose order of proxies
# alternates (none always goes first):
#   throughput  wrk -t2 -c64 closed loop: req/s and the proxy's CPU time per request
#   tail        the latency client (scripts/latency) closed loop: p50, p99, p99.9, max of every
#               request, and the spread of requests over connections
#   rate        the latency client at a fixed rate, 70% of nginx's throughput in this run,
#               latency counted from each request's due time (no coordinated omission)
#   hog         the throughput scenario with one CPU-bound process alongside (contention)
#   reload      wrk while each proxy reloads once a second: requests lost
# Each measurement prints a RESULT line; the end prints per proxy and scenario the mean req/s,
# the median and the worst p99 (and p99.9) over the rounds, the median CPU per request, and the
# ratios to nginx. The machine is shared: compare the ratios of one run, not runs.
# Usage: scripts/bench.sh [DURATION_S] [ROUNDS] (default 5 s, 3 rounds; SCENARIOS="throughput tail")
# Needs: apt-get install nginx-light haproxy wrk (nginx and haproxy from Debian do too).
set -u
D=${1:-5}; R=${2:-3}
SCENARIOS=${SCENARIOS:-"throughput tail rate hog reload"}
WORKERS=${WORKERS:-2} # each proxy's workers (HAProxy: threads)
[[ $WORKERS =~ ^[1-9][0-9]?$ ]] || { echo "bench: WORKERS must be 1..99 (got '$WORKERS')"; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
HCPROXY="${HCPROXY:-$root/bin/hcproxy}" # another build to compare: HCPROXY=path make bench
# HCPROXY_BASE=path adds a fourth proxy, "base": another hcproxy build (an earlier commit) run in
# the same rounds, so a change's cost shows as base/nginx beside hcproxy/nginx of the same run.
HCPROXY_BASE="${HCPROXY_BASE:-}"
LATENCY="$root/bin/latency"
for c in nginx haproxy wrk; do command -v $c >/dev/null || { echo "bench: $c not installed (apt-get install -y nginx-light haproxy wrk)"; exit 1; }; done
[ -x "$HCPROXY" ] || { echo "bench: build first (make build)"; exit 1; }
[ -z "$HCPROXY_BASE" ] || [ -x "$HCPROXY_BASE" ] || { echo "bench: HCPROXY_BASE=$HCPROXY_BASE is not an executable"; exit 1; }
[ -x "$LATENCY" ] || (cd "$root" && go build -o "$LATENCY" ./scripts/latency) || exit 1
W=$(mktemp -d /tmp/hcbench.XXXXXX)
PIDS=()
stop_all() { for p in "${PIDS[@]:-}"; do kill -TERM "$p" 2>/dev/null; done; sleep 1; for p in "${PIDS[@]:-}"; do kill -KILL "$p" 2>/dev/null; done; PIDS=(); }
trap 'stop_all; rm -rf "$W"' EXIT
PORT=18080
URL=http://127.0.0.1:$PORT/

# The backends: one nginx, three ports, a 6-byte answer (and /health for the checks).
cat >"$W/backend.conf" <<C
daemon off; worker_processes 1; pid $W/backend.pid; error_log $W/backend.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:19101 reuseport; listen 127.0.0.1:19102; listen 127.0.0.1:19103;
    keepalive_requests 100000;
    location / { return 200 "hello\n"; }
    location /health { return 200 "ok\n"; } } }
C
nginx -c "$W/backend.conf" -p "$W" & PIDS+=($!); sleep 0.5
BACK=("${PIDS[@]}")

start_nginx() {
cat >"$W/nginx.conf" <<C
daemon off; worker_processes $WORKERS; pid $W/nginx.pid; error_log $W/nginx.err;
events { worker_connections 4096; }
http { access_log off;
  upstream app { server 127.0.0.1:19101 max_fails=2 fail_timeout=5s; server 127.0.0.1:19102; server 127.0.0.1:19103; keepalive 64; }
  server { listen 127.0.0.1:$PORT; keepalive_requests 100000;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
C
nginx -c "$W/nginx.conf" -p "$W" & P=$!
}
start_haproxy() {
cat >"$W/haproxy.cfg" <<C
global
  nbthread $WORKERS
  maxconn 4000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$PORT
  default_backend app
backend app
  balance roundrobin
  option httpchk GET /health
  http-reuse always
  server s1 127.0.0.1:19101 check inter 1s fall 2 rise 2
  server s2 127.0.0.1:19102 check inter 1s fall 2 rise 2
  server s3 127.0.0.1:19103 check inter 1s fall 2 rise 2
C
haproxy -W -db -f "$W/haproxy.cfg" & P=$!
}
start_hcproxy() {
local tdir="$W/${TABLE_DIR:-hctable}" # base gets its own: the builds' table layouts may differ
mkdir -p -m 0700 "$tdir"
cat >"$W/hcproxy.toml" <<C
workers = $WORKERS
pid_file = "$W/hcproxy.pid"
table = "$tdir/table"
shutdown_timeout = "10s"
[[server]]
listen = "127.0.0.1:$PORT"
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:19101", "127.0.0.1:19102", "127.0.0.1:19103"]
[upstream.app.check]
uri = "/health"
interval = "1s"
rise = 2
fall = 2
C
"${BIN:-$HCPROXY}" -c "$W/hcproxy.toml" 2>"$W/hcproxy.log" & P=$!
}
start_base() { BIN=$HCPROXY_BASE TABLE_DIR=basetable start_hcproxy; }
PROXIES="nginx haproxy hcproxy"; [ -n "$HCPROXY_BASE" ] && PROXIES="nginx base haproxy hcproxy"
REVERSED=$(tr ' ' '\n' <<<"$PROXIES" | tac | tr '\n' ' ')

# cpu_ticks PID: utime+stime, in clock ticks, of PID and its children (a proxy's master and workers).
cpu_ticks() {
  local s=0 p f
  for p in "$1" $(pgrep -P "$1"); do
    # after "pid (comm) " (comm may hold spaces: "hcproxy: worker"), utime and stime are fields 12, 13
    f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') && s=$((s + ${f:-0}))
  done
  echo "$s"
}
TICK=$(getconf CLK_TCK)
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else if (v ~ /s$/) print v*1000; else print v }'; }

# wrk_run SCENARIO NAME PID: one closed-loop wrk run; req/s, p99 and the proxy's CPU per request.
wrk_run() {
  local out c0 c1 cpu="" req rps p99 err
  c0=$(cpu_ticks "$3")
  out=$(wrk -t2 -c64 -d${D}s --latency "$URL" 2>&1)
  req=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  err=$(grep -E "Non-2xx|Socket errors" <<<"$out" | tr -s ' ' | tr '\n' ' ')
  if [ "${req:-0}" -gt 0 ]; then
    c1=$(cpu_ticks "$3")
    cpu="cpu_us_per_req=$(awk -v t=$((c1 - c0)) -v hz="$TICK" -v n="$req" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')"
  fi
  echo "RESULT scenario=$1 proxy=$2 rps=$rps p99_ms=$p99 $cpu ${err}"
}

# lat_run SCENARIO NAME [RATE]: one run of the latency client.
lat_run() {
  local args=(-addr "127.0.0.1:$PORT" -c 64 -d "${D}s")
  [ -n "${3:-}" ] && args+=(-rate "$3")
  local out
  out=$("$LATENCY" "${args[@]}" 2>&1 | grep '^RESULT')
  # RESULT  requests=.. rps=.. errors=.. p50=..ms p90=..ms p99=..ms p99.9=..ms max=..ms conn_requests=a..b conn_p99=x/y/z
  echo "RESULT scenario=$1 proxy=$2 $(sed -e 's/^RESULT *//' -e 's/ms\b//g' -e 's/p50=/p50_ms=/; s/p90=/p90_ms=/; s/p99=/p99_ms=/; s/p99.9=/p999_ms=/; s/max=/max_ms=/' <<<"$out")"
}

# round SCENARIO: every proxy once, in an order that alternates by round.
run_scenario() {
  local sc=$1 r name order
  for r in $(seq "$R"); do
    order=$PROXIES; [ $((r % 2)) = 0 ] && order=$REVERSED
    for name in $order; do
      start_$name; PIDS+=($P)
      for i in $(seq 50); do curl -sf "$URL" >/dev/null && break; sleep 0.1; done
      wrk -t1 -c16 -d1s "$URL" >/dev/null 2>&1 # warm-up
      case $sc in
        throughput) wrk_run throughput $name $P ;;
        tail) lat_run tail $name ;;
        rate) lat_run rate $name "$RATE" ;;
        hog)
          sh -c 'while :; do :; done' & HOG=$!
          wrk_run hog $name $P
          kill -KILL $HOG; wait $HOG 2>/dev/null ;;
      esac | tee -a "$W/results"
      kill -TERM $P 2>/dev/null; wait $P 2>/dev/null; PIDS=("${BACK[@]}"); sleep 0.5
    done
  done
}

echo "BENCH hcproxy $("$HCPROXY" -v | awk '{print $3}'), nginx $(nginx -v 2>&1 | sed 's/.*\///'), haproxy $(haproxy -v | head -1 | awk '{print $3}'), $(nproc) cores ($(sed -n 's/^model name.*: //p' /proc/cpuinfo | head -1)), Linux $(uname -r), ${D} s x $R rounds, 64 connections, $WORKERS workers each, scenarios: $SCENARIOS"
RATE=""
for sc in $SCENARIOS; do
  case $sc in
    rate)
      # 70% of nginx's closed-loop throughput in this run: the mean of its throughput and tail
      # rounds (measured now if neither ran). The machine's speed drifts by a fifth over minutes;
      # the mean of many rounds, not one lucky round, keeps the rate below saturation.
      if ! grep -qE 'scenario=(throughput|tail) proxy=nginx' "$W/results" 2>/dev/null; then
        start_nginx; PIDS+=($P); sleep 1; wrk_run throughput nginx $P >>"$W/results"; kill -TERM $P; wait $P 2>/dev/null; PIDS=("${BACK[@]}")
      fi
      RATE=$(awk '/scenario=(throughput|tail) proxy=nginx / { for (i = 1; i <= NF; i++) if ($i ~ /^rps=/) { split($i, kv, "="); s += kv[2]; n++ } } END { printf "%d", 0.7 * s / n }' "$W/results")
      echo "BENCH rate scenario at $RATE req/s (70% of nginx's throughput)"
      run_scenario rate ;;
    reload)
      for name in $PROXIES; do
        start_$name; PIDS+=($P)
        for i in $(seq 50); do curl -sf "$URL" >/dev/null && break; sleep 0.1; done
        wrk -t2 -c64 -d${D}s "$URL" >"$W/wrk.out" 2>&1 &
        WP=$!
        for i in $(seq $((D-1))); do
          sleep 1
          case $name in haproxy) kill -USR2 "$P" ;; *) kill -HUP "$P" ;; esac
        done
        wait $WP
        echo "RESULT scenario=reload proxy=$name reloads=$((D-1)) $(awk '/requests in/ {print "requests="$1}' "$W/wrk.out") $(grep -E 'Non-2xx|Socket errors' "$W/wrk.out" | tr -s ' ' | tr '\n' ' ')" | tee -a "$W/results"
        kill -TERM $P; wait $P 2>/dev/null; PIDS=("${BACK[@]}"); sleep 0.5
      done ;;
    *) run_scenario "$sc" ;;
  esac
done

# Per scenario and proxy: mean req/s, median and worst p99 (and p99.9 where measured), median
# CPU per request; then each scenario's ratios to nginx.
awk 'function median(a, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
                                        return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
     /^RESULT scenario=/ && !/scenario=reload/ { delete f; for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
       k = f["scenario"] SUBSEP f["proxy"]; n[k]++; sc[f["scenario"]] = 1
       rps[k] += f["rps"]; p99[k, n[k]] = f["p99_ms"]; if (f["p99_ms"] > wp99[k]) wp99[k] = f["p99_ms"]
       if ("p999_ms" in f && f["p999_ms"] > wp999[k]) wp999[k] = f["p999_ms"]
       if ("cpu_us_per_req" in f) { nc[k]++; cpu[k, nc[k]] = f["cpu_us_per_req"] } }
     END {
       split("throughput tail rate hog", order, " "); split("nginx haproxy hcproxy base", px, " ")
       for (o = 1; o <= 4; o++) { s = order[o]; if (!(s in sc)) continue
         for (x = 1; x <= 4; x++) { k = s SUBSEP px[x]; if (!(k in n)) continue
           delete a; for (i = 1; i <= n[k]; i++) a[i] = p99[k, i]; mp99[k] = median(a, n[k])
           delete a; for (i = 1; i <= nc[k]; i++) a[i] = cpu[k, i]; mcpu[k] = nc[k] ? median(a, nc[k]) : 0
           mrps[k] = rps[k] / n[k]
           printf "SUMMARY scenario=%s proxy=%s rounds=%d rps_mean=%.0f p99_median_ms=%.2f p99_worst_ms=%.2f%s%s\n", s, px[x], n[k], mrps[k], mp99[k], wp99[k],
             (k in wp999 ? sprintf(" p999_worst_ms=%.2f", wp999[k]) : ""), (nc[k] ? sprintf(" cpu_us_per_req_median=%.2f", mcpu[k]) : "") }
         kn = s SUBSEP "nginx"; kh = s SUBSEP "hcproxy"; ka = s SUBSEP "haproxy"
         if ((kn in n) && (kh in n))
           printf "RATIO scenario=%s hcproxy/nginx rps=%.2f p99_median=%.2f p99_worst=%.2f%s; hcproxy/haproxy rps=%.2f p99_worst=%.2f\n", s,
             mrps[kh] / mrps[kn], mp99[kh] / mp99[kn], wp99[kh] / wp99[kn], ((kh in wp999) && (kn in wp999) ? sprintf(" p999_worst=%.2f", wp999[kh] / wp999[kn]) : ""),
             mrps[kh] / mrps[ka], wp99[kh] / wp99[ka]
         kb = s SUBSEP "base"
         if ((kn in n) && (kb in n))
           printf "RATIO scenario=%s base/nginx rps=%.2f p99_median=%.2f p99_worst=%.2f%s; hcproxy/base rps=%.2f cpu=%.2f\n", s,
             mrps[kb] / mrps[kn], mp99[kb] / mp99[kn], wp99[kb] / wp99[kn], ((kb in wp999) && (kn in wp999) ? sprintf(" p999_worst=%.2f", wp999[kb] / wp999[kn]) : ""),
             mrps[kh] / mrps[kb], (mcpu[kb] ? mcpu[kh] / mcpu[kb] : 0) } }' "$W/results"
grep '^RESULT scenario=reload' "$W/results" | sed 's/^RESULT/SUMMARY/'
