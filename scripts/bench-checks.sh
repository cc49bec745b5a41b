#!/usr/bin/env bash
# Active checks at scale: hcproxy beside HAProxy (and Caddy, if installed) checking N servers on
# loopback, no client traffic, one proxy at a time, 2 workers (HAProxy: nbthread 2), each server
# `GET /health` every interval. The servers are scripts/checkbackend processes (at most
# BENCH_CHECKS_PER_PROCESS servers each, on 127.0.1.x, 127.0.2.x, ...), which record when every
# probe arrives. Once the proxy is ready (start_s after its start) and after a warm-up, one
# measured window per proxy and N prints a RESULT line:
#   probes_per_s / schedule_per_s = kept   probes reaching the backends against N/interval
#   lag_p50_ms, lag_p99_ms                 per probe, |gap since the same server's previous probe
#                                          - interval|: late, early, skipped and doubled probes all count
#   cpu_us_per_probe, cpu_pct              utime+stime of the proxy's processes (master and workers)
#                                          over the window, per probe reaching the backends
#   rss_mib                                VmRSS summed over the proxy's processes at the window's end
#   backend_cpu_pct, others_cpu_pct        the backends' CPU, and everything else's on the machine
#                                          (from /proc/stat; 200 = both cores of a 2-core machine)
# then a SUMMARY per N with the ratios to HAProxy of the same run, and, for "max", the largest N
# each proxy served keeping the schedule (kept >= 0.99 and lag p99 < 100 ms).
#
# Usage: scripts/bench-checks.sh            (make bench-checks; needs haproxy, optionally caddy)
#   BENCH_CHECKS_N="1000 10000 max"  the N to run; "max" steps up from BENCH_CHECKS_MAX_START by
#                                    BENCH_CHECKS_MAX_STEP to BENCH_CHECKS_MAX_CAP (20000, 10000,
#                                    100000) until a proxy falls behind, or halves N until one keeps
#                                    up (hcproxy and HAProxy only)
#   BENCH_CHECKS_WINDOW=20 BENCH_CHECKS_WARMUP=5   seconds
#   BENCH_CHECKS_INTERVAL_MS=1000    the check interval (and timeout)
#   BENCH_CHECKS_PROXIES="hcproxy haproxy caddy"
#   BENCH_CHECKS_PER_PROCESS=2500    servers per backend process (fd limit: 2 per server + 64)
#   BENCH_CHECKS_PORT=23000          first port of each backend address (100 ports per address)
#   BENCH_CHECKS_LISTEN=127.0.0.3:18199   the proxies' (idle) client listener
#   BENCH_CHECKS_KEEP=1              keep the temp dir (configs, logs, the proxies' output)
#   HCPROXY=path                     the hcproxy binary to measure (default bin/hcproxy)
#   HCPROXY_CHECK_KEEPALIVE=1        `keepalive = true` in hcproxy's check (refused by a build
#                                    without it: then hcproxy is skipped with a note)
# Every process it starts is stopped by pid on exit. It changes no sysctl.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
HCPROXY="${HCPROXY:-$root/bin/hcproxy}"
GO="${GO:-go}"
NS=${BENCH_CHECKS_N:-"1000 10000 max"}
WINDOW=${BENCH_CHECKS_WINDOW:-20}
WARMUP=${BENCH_CHECKS_WARMUP:-5}
IMS=${BENCH_CHECKS_INTERVAL_MS:-1000}
PROXIES=${BENCH_CHECKS_PROXIES:-"hcproxy haproxy caddy"}
PER=${BENCH_CHECKS_PER_PROCESS:-2500}
PORT=${BENCH_CHECKS_PORT:-23000}
LISTEN=${BENCH_CHECKS_LISTEN:-127.0.0.3:18199}
MAX_START=${BENCH_CHECKS_MAX_START:-20000}
MAX_STEP=${BENCH_CHECKS_MAX_STEP:-10000}
MAX_CAP=${BENCH_CHECKS_MAX_CAP:-100000}
KEEPALIVE=${HCPROXY_CHECK_KEEPALIVE:-0}
MODE=close; [ "$KEEPALIVE" = 1 ] && MODE=keepalive

for v in WINDOW WARMUP IMS PER PORT MAX_START MAX_STEP MAX_CAP; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench-checks: $v must be a positive integer (got '${!v}')"; exit 2; }
done
for n in $NS; do [[ $n =~ ^[1-9][0-9]*$ || $n = max ]] || { echo "bench-checks: BENCH_CHECKS_N: '$n' is not a number or max"; exit 2; }; done
[ "$MAX_CAP" -le 100000 ] || { echo "bench-checks: BENCH_CHECKS_MAX_CAP: hcproxy's max_servers stops at 100000"; exit 2; }
command -v haproxy >/dev/null || { echo "bench-checks: haproxy not installed (apt-get install -y haproxy)"; exit 1; }
[ -x "$HCPROXY" ] || { echo "bench-checks: $HCPROXY not found: build first (make build)"; exit 1; }

# A process here may hold at most `ulimit -Hn` descriptors: take them all.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
FDS=$(ulimit -n)
TICK=$(getconf CLK_TCK)
W=$(mktemp -d /tmp/hcbenchchecks.XXXXXX)
BPIDS=(); PP=""
# stop PID...: TERM, then KILL what is left after 10 s; waits for each.
stop() {
  local p i
  for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
  for i in $(seq 100); do
    local alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
}
stop_all() { [ -n "$PP" ] && stop_proxy; [ ${#BPIDS[@]} -gt 0 ] && stop "${BPIDS[@]}"; BPIDS=(); }
trap 'stop_all; if [ "${BENCH_CHECKS_KEEP:-0}" = 1 ]; then echo "bench-checks: kept $W"; else rm -rf "$W"; fi' EXIT
trap 'exit 130' INT TERM

CB="$W/checkbackend"
(cd "$root" && "$GO" build -o "$CB" ./scripts/checkbackend) || { echo "bench-checks: building scripts/checkbackend failed"; exit 1; }

# procs PID: PID and its children (a proxy's master and workers).
procs() { echo "$1" $(pgrep -P "$1"); }
# cpu_ticks PID...: utime+stime, in clock ticks, summed over the processes (all their threads).
# utime+stime are fields 14 and 15 of /proc/PID/stat, counted after "pid (comm) " since comm may
# hold spaces (a worker's is "hcproxy: worker": splitting the whole line on spaces would read the
# wrong fields and leave out the system time).
cpu_ticks() { local s=0 p f; for p in "$@"; do f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') && s=$((s + ${f:-0})); done; echo "$s"; }
# rss_kib PID...: VmRSS summed (a mapping shared by two processes counts twice).
rss_kib() { local s=0 p f; for p in "$@"; do f=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) && s=$((s + f)); done; echo "$s"; }
# busy_ticks: the machine's busy time (all CPUs, clock ticks) from /proc/stat, to show how much
# CPU others took during a window on a shared machine.
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# timewait: TIME_WAIT sockets on the backends' side (they closed first) and on the checkers' side.
timewait() {
  ss -Htan state time-wait | awk -v lo="$PORT" -v hi=$((PORT + 99)) '{ n = split($3, a, ":"); p = a[n] + 0; if ($3 ~ /^127\.0\.[1-9]/ && p >= lo && p <= hi) b++; else c++ }
    END { printf "timewait_backend=%d timewait_checker=%d", b, c }'
}
field() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) print substr($i, length(k) + 2) }' <<<"$2"; }

# start_backends N: ceil(N/PER) backend processes, and the address list; CTLS are their control
# addresses.
start_backends() {
  local n=$1 p=0 first=0 k i
  rm -f "$W"/ctl.*
  while [ $first -lt "$n" ]; do
    k=$((n - first)); [ $k -gt "$PER" ] && k=$PER
    "$CB" serve -first $first -n $k -port "$PORT" -interval "${IMS}ms" -ctl-file "$W/ctl.$p" >"$W/backend.$p.out" 2>"$W/backend.$p.err" &
    BPIDS+=($!); first=$((first + k)); p=$((p + 1))
  done
  CTLS=()
  for i in $(seq 300); do
    local ready=0
    for k in $(seq 0 $((p - 1))); do [ -s "$W/ctl.$k" ] && ready=$((ready + 1)); done
    [ $ready = $p ] && break
    for k in "${BPIDS[@]}"; do kill -0 "$k" 2>/dev/null || { echo "bench-checks: a backend exited: $(cat "$W"/backend.*.err | head -3)"; return 1; }; done
    sleep 0.1
  done
  for k in $(seq 0 $((p - 1))); do [ -s "$W/ctl.$k" ] || { echo "bench-checks: backends not ready in 30 s"; return 1; }; CTLS+=("$(cat "$W/ctl.$k")"); done
  "$CB" addrs -first 0 -n "$n" -port "$PORT" >"$W/addrs"
}

write_hcproxy() {
  local n=$1 ms=$n; [ "$ms" -lt 1024 ] && ms=1024
  RUN=$((RUN + 1)); mkdir -m 0700 "$W/hc.$RUN"
  { echo "workers = 2"
    echo "pid_file = \"$W/hc.$RUN/hcproxy.pid\""
    echo "table = \"$W/hc.$RUN/table\""
    echo "max_servers = $ms"
    echo "[[server]]"
    echo "listen = \"$LISTEN\""
    echo "upstream = \"app\""
    echo "[upstream.app]"
    echo "servers = ["; sed 's/.*/"&",/' "$W/addrs"; echo "]"
    echo "[upstream.app.check]"
    echo "uri = \"/health\""
    echo "interval = \"${IMS}ms\""
    echo "timeout = \"${IMS}ms\""
    [ "$KEEPALIVE" = 1 ] && echo "keepalive = true"
  } >"$W/hcproxy.toml"
}
start_hcproxy() {
  write_hcproxy "$1"
  local out; out=$("$HCPROXY" -t -c "$W/hcproxy.toml" 2>&1)
  if [ $? != 0 ]; then
    if [ "$KEEPALIVE" = 1 ] && grep -q "check.keepalive: unknown key" <<<"$out"; then SKIP="keepalive not supported by this build"
    else SKIP="hcproxy -t refused the config: $(head -1 <<<"$out")"; fi
    return 1
  fi
  "$HCPROXY" -c "$W/hcproxy.toml" >"$W/proxy.log" 2>&1 & PP=$!
}
start_haproxy() {
  { echo "global"; echo "  nbthread 2"; echo "  maxconn 4096"
    echo "defaults"; echo "  mode http"; echo "  timeout connect ${IMS}ms"; echo "  timeout check ${IMS}ms"
    echo "  timeout client 10s"; echo "  timeout server 10s"
    echo "frontend fe"; echo "  bind $LISTEN"; echo "  default_backend app"
    echo "backend app"; echo "  option httpchk"
    echo "  http-check send meth GET uri /health ver HTTP/1.1 hdr Host bench"
    echo "  default-server check inter ${IMS}ms"
    awk '{ print "  server s" NR " " $0 }' "$W/addrs"
  } >"$W/haproxy.cfg"
  haproxy -c -q -f "$W/haproxy.cfg" >"$W/proxy.log" 2>&1 || { SKIP="haproxy -c refused the config: $(head -1 "$W/proxy.log")"; return 1; }
  haproxy -db -f "$W/haproxy.cfg" >"$W/proxy.log" 2>&1 & PP=$!
}
start_caddy() {
  command -v caddy >/dev/null || { SKIP="caddy not installed (apt-get install -y caddy)"; return 1; }
  { echo "{"; echo "  admin off"; echo "  auto_https off"; echo "}"
    echo "http://$LISTEN {"; echo "  reverse_proxy {"
    sed 's/.*/    to &/' "$W/addrs"
    echo "    health_uri /health"; echo "    health_interval ${IMS}ms"; echo "    health_timeout ${IMS}ms"
    echo "  }"; echo "}"
  } >"$W/Caddyfile"
  mkdir -p "$W/caddy"
  HOME="$W/caddy" XDG_DATA_HOME="$W/caddy" XDG_CONFIG_HOME="$W/caddy" caddy run --config "$W/Caddyfile" --adapter caddyfile >"$W/proxy.log" 2>&1 & PP=$!
}
# ready_NAME: the proxy has started checking. hcproxy: the master logged that every worker is
# ready; HAProxy and Caddy start their checks with their listener.
ready_hcproxy() { grep -q 'msg="hcproxy started"' "$W/proxy.log"; }
listening() { (exec 3<>"/dev/tcp/${LISTEN%:*}/${LISTEN##*:}") 2>/dev/null; }
ready_haproxy() { listening; }
ready_caddy() { listening; }
# stop_proxy: the proxy and its children (hcproxy's workers exit with their master; any left
# after 10 s are killed by pid).
stop_proxy() {
  local kids; kids=$(pgrep -P "$PP")
  stop "$PP"; [ -n "$kids" ] && stop $kids
  PP=""
}

# run_one NAME N: start the proxy, warm up, measure one window, print its RESULT line; sets OK
# (the schedule kept) and REASON.
run_one() {
  local name=$1 n=$2 i
  SKIP=""; OK=0; REASON=""
  if ! start_$name "$n"; then echo "RESULT proxy=$name n=$n mode=$MODE skipped=\"$SKIP\"" | tee -a "$W/results"; REASON=skipped; return; fi
  local t0 t1 started=0
  t0=$(date +%s%N)
  for i in $(seq 1200); do ready_$name && { started=1; break; }; kill -0 "$PP" 2>/dev/null || break; sleep 0.1; done
  t1=$(date +%s%N); START_S=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }')
  if [ $started = 0 ] && kill -0 "$PP" 2>/dev/null; then
    echo "RESULT proxy=$name n=$n mode=$MODE error=\"not ready in 120 s\"" | tee -a "$W/results"
    stop_proxy; REASON="not ready"; return
  fi
  for i in $(seq "$WARMUP"); do kill -0 "$PP" 2>/dev/null || break; sleep 1; done
  if ! kill -0 "$PP" 2>/dev/null; then
    echo "RESULT proxy=$name n=$n mode=$MODE error=\"exited during warm-up: $(tail -1 "$W/proxy.log")\"" | tee -a "$W/results"
    wait "$PP" 2>/dev/null; PP=""; REASON=exited; return
  fi
  local pids b0 c0 m0 b1 c1 m1 rss tw sum pps
  pids=$(procs "$PP")
  "$CB" reset "${CTLS[@]}" || { REASON=backend; stop_proxy; return; }
  t0=$(date +%s%N); c0=$(cpu_ticks $pids); b0=$(cpu_ticks "${BPIDS[@]}"); m0=$(busy_ticks)
  sleep "$WINDOW"
  c1=$(cpu_ticks $pids); b1=$(cpu_ticks "${BPIDS[@]}"); m1=$(busy_ticks); t1=$(date +%s%N)
  sum=$("$CB" summary -interval "${IMS}ms" "${CTLS[@]}") || { REASON=backend; stop_proxy; return; }
  local now; now=$(procs "$PP")
  [ "$now" = "$pids" ] || { echo "RESULT proxy=$name n=$n mode=$MODE error=\"its processes changed in the window ($pids -> $now): a worker died?\"" | tee -a "$W/results"; stop_proxy; REASON=respawn; return; }
  rss=$(rss_kib $now); tw=$(timewait)
  stop_proxy
  # CPU per probe: the processes' CPU rate over the time between the two reads, over the probe
  # rate the backends saw in their window (the two windows differ by the few ms of the reads).
  pps=$(field probes_per_s "$sum")
  echo "RESULT proxy=$name n=$n mode=$MODE $sum $(awk -v c=$((c1 - c0)) -v b=$((b1 - b0)) -v m=$((m1 - m0)) -v hz="$TICK" -v pps="$pps" -v ns=$((t1 - t0)) -v r="$rss" -v tw="$tw" -v st="$START_S" 'BEGIN {
    w = ns / 1e9; cpu = "-"; bcpu = "-"
    if (pps > 0) { cpu = sprintf("%.1f", c / hz / w * 1e6 / pps); bcpu = sprintf("%.1f", b / hz / w * 1e6 / pps) }
    printf "cpu_pct=%.1f cpu_us_per_probe=%s rss_mib=%.1f backend_cpu_pct=%.1f backend_cpu_us_per_probe=%s others_cpu_pct=%.1f %s start_s=%s",
      c / hz / w * 100, cpu, r / 1024, b / hz / w * 100, bcpu, (m - c - b) / hz / w * 100, tw, st }')" | tee -a "$W/results"
  local kept p99; kept=$(field kept "$sum"); p99=$(field lag_p99_ms "$sum")
  if awk -v k="$kept" -v l="$p99" 'BEGIN { exit !(k >= 0.99 && l < 100) }'; then OK=1; else REASON="kept=$kept lag_p99_ms=$p99"; fi
}

# run_n N PROXY...: the backends for N, each proxy in turn, then the backends stopped.
run_n() {
  local n=$1; shift
  start_backends "$n" || { stop "${BPIDS[@]}"; BPIDS=(); return 1; }
  for name in "$@"; do run_one "$name" "$n"; sleep 2; done
  stop "${BPIDS[@]}"; BPIDS=()
}

RUN=0
echo "bench-checks: $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), Linux $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench-checks: hcproxy $("$HCPROXY" -v | awk '{print $3}') ($MODE), $(haproxy -v | head -1 | awk '{print "haproxy", $3}'), $(command -v caddy >/dev/null && caddy version | awk '{print "caddy", $1}' || echo "no caddy"); interval ${IMS}ms, warm-up ${WARMUP}s, window ${WINDOW}s"
echo "bench-checks: fds $FDS per process, ephemeral ports $(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range), tcp_tw_reuse $(cat /proc/sys/net/ipv4/tcp_tw_reuse), tcp_max_tw_buckets $(cat /proc/sys/net/ipv4/tcp_max_tw_buckets) (unchanged)"
for n in $NS; do
  [ "$n" = max ] && continue
  run_n "$n" $PROXIES
done

# max: per proxy, step N up from MAX_START until the schedule is not kept (or a limit is
# reached); if MAX_START is not kept already, halve N until it is. kept_n is the largest N that
# kept it, failed_n the smallest that did not.
if grep -qw max <<<"$NS"; then
  for name in $PROXIES; do
    [ "$name" = caddy ] && { echo "MAX proxy=caddy skipped (not searched: it falls behind far below 10000)"; continue; }
    n=$MAX_START; kept=""; failed=""; why="cap $MAX_CAP reached"
    while [ "$n" -ge 500 ] && [ "$n" -le "$MAX_CAP" ]; do
      if [ "$name" = hcproxy ] && [ "$KEEPALIVE" = 1 ] && [ $((n / 2 + 1024)) -gt "$FDS" ]; then why="fd limit ($FDS per worker, a kept-alive connection per server)"; break; fi
      run_n "$n" "$name" || { why="backends for $n did not start"; break; }
      if [ "$OK" = 1 ]; then
        kept=$n; [ -n "$failed" ] && break
        n=$((n + MAX_STEP))
      else
        failed=$n; why="at n=$n: $REASON"; [ -n "$kept" ] && break
        n=$((n / 2))
      fi
    done
    echo "MAX proxy=$name mode=$MODE kept_n=${kept:-none} failed_n=${failed:-none} stopped=\"$why\"" | tee -a "$W/results"
  done
fi

# Per N: each proxy's figures and its ratios to HAProxy's.
awk '/^RESULT / && !/skipped=|error=/ { delete f; for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
       k = f["n"] SUBSEP f["proxy"]; seen[f["n"]] = 1; got[k] = 1
       kept[k] = f["kept"]; p99[k] = f["lag_p99_ms"]; cpu[k] = f["cpu_us_per_probe"]; rss[k] = f["rss_mib"]; pps[k] = f["probes_per_s"]; oth[k] = f["others_cpu_pct"] }
     END { split("hcproxy haproxy caddy", order, " ")
       for (n in seen) for (j = 1; j <= 3; j++) { p = order[j]; k = n SUBSEP p; if (!(k in got)) continue; h = n SUBSEP "haproxy"
         r = ""; if (p != "haproxy" && (h in got) && cpu[h] > 0 && rss[h] > 0 && pps[h] > 0)
           r = sprintf(" /haproxy: probes %.2f cpu_per_probe %.2f rss %.2f", pps[k] / pps[h], cpu[k] / cpu[h], rss[k] / rss[h])
         if (oth[k] > 25) r = r " NOISY (others took " oth[k] "% of a core: measure again)"
         printf "SUMMARY n=%s proxy=%s kept=%s lag_p99_ms=%s cpu_us_per_probe=%s rss_mib=%s others_cpu_pct=%s%s\n", n, p, kept[k], p99[k], cpu[k], rss[k], oth[k], r } }' "$W/results" | sort -t= -k2,2n -s
