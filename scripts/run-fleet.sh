#!/usr/bin/env bash
# make run-fleet: the fleet demo (docs/fleet.md). A 3-member etcd cluster of /usr/bin/etcd on
# loopback, three backends (scripts/checkbackend, on 127.0.1.1:24700-24702, counting the probes
# they get) and three hcproxy hosts h1, h2, h3 (2 workers each, listening on 127.0.0.1:8091-8093,
# status on 127.0.0.1:8191-8193) that share their checks through etcd: each backend is probed by
# 2 hosts, every host routes on the same votes. Everything lives in a temporary directory,
# removed on exit; every process is stopped by its pid on Ctrl-C (or after RUN_FLEET_DURATION
# seconds, if set).
#
# Try, while it runs (the banner prints the paths):
#   bin/hcctl --table DIR/h1/hcproxy.table fleet     who checks what, the votes
#   bin/hcctl --table DIR/h2/hcproxy.table tail      fleet events as they come
#   curl -s 127.0.0.1:8191/status?format=json        "source": local or fleet, per server
#   curl -s 127.0.0.1:8191/metrics | grep fleet      hcproxy_fleet_*
#   kill -9 of a host's master and workers: its checks move to the others within the lease (3s)
#   kill -STOP of the etcd members: every host falls back to checking everything itself
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$root/bin}
GO=${GO:-go}
ETCD=${ETCD:-/usr/bin/etcd}
BACKEND_PORT=${BACKEND_PORT:-24700} # not bench-checks' 23000
[ -x "$ETCD" ] || { echo "run-fleet: $ETCD is missing (apt-get install etcd-server)" >&2; exit 1; }
[ -x "$BIN/hcproxy" ] && [ -x "$BIN/hcctl" ] || { echo "run-fleet: build first (make build)" >&2; exit 1; }

W=$(mktemp -d /tmp/hcproxy-fleet.XXXXXX)
chmod 700 "$W"
pids=()
hosts=()
cleanup() {
	trap - EXIT INT TERM
	for p in "${hosts[@]}"; do kill -QUIT "$p" 2>/dev/null || true; done
	for p in "${hosts[@]}"; do for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; done
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$W"
	echo "run-fleet: stopped"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

cluster="m1=http://127.0.0.1:23801,m2=http://127.0.0.1:23802,m3=http://127.0.0.1:23803"
for i in 1 2 3; do
	"$ETCD" --name "m$i" --data-dir "$W/etcd$i" \
		--listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
		--listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
		--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token hcproxy-run-fleet \
		--logger zap --log-level error >"$W/etcd$i.log" 2>&1 &
	pids+=($!)
done

(cd "$root" && "$GO" build -o "$W/checkbackend" ./scripts/checkbackend)
"$W/checkbackend" serve -first 0 -n 3 -port "$BACKEND_PORT" -interval 1s -ctl-file "$W/backend.ctl" >"$W/backend.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$W/backend.ctl" ] && break; sleep 0.1; done
[ -s "$W/backend.ctl" ] || { echo "run-fleet: the backends did not start:" >&2; cat "$W/backend.log" >&2; exit 1; }
mapfile -t servers < <("$W/checkbackend" addrs -first 0 -n 3 -port "$BACKEND_PORT")

list=$(printf '"%s", ' "${servers[@]}")
for i in 1 2 3; do
	mkdir -m 700 "$W/h$i"
	cat >"$W/h$i/hcproxy.toml" <<CONF
workers = 2
pid_file = "hcproxy.pid"
table = "hcproxy.table"
[status]
listen = "127.0.0.1:819$i"
[[server]]
listen = "127.0.0.1:809$i"
upstream = "app"
[upstream.app]
servers = [${list%, }]
[upstream.app.check]
uri = "/health"
interval = "1s"
[fleet]
endpoints = ["http://127.0.0.1:23791", "http://127.0.0.1:23792", "http://127.0.0.1:23793"]
host = "h$i"
prefix = "/hcproxy-demo/"
checkers = 2
lease_ttl = "3s"
CONF
	"$BIN/hcproxy" -t -c "$W/h$i/hcproxy.toml" >/dev/null
	"$BIN/hcproxy" -c "$W/h$i/hcproxy.toml" >"$W/h$i/log" 2>&1 &
	hosts+=($!)
done

cat <<BANNER
run-fleet: etcd on 127.0.0.1:23791-23793, backends ${servers[*]}, hosts h1 h2 h3 (pids ${hosts[*]})
  $BIN/hcctl --table $W/h1/hcproxy.table fleet
  $BIN/hcctl --table $W/h1/hcproxy.table tail
  curl -s 127.0.0.1:8191/metrics | grep fleet
  logs: $W/h1/log $W/h2/log $W/h3/log
Ctrl-C stops everything.
BANNER
sleep 8
"$BIN/hcctl" --table "$W/h1/hcproxy.table" fleet || true
end=$((SECONDS + ${RUN_FLEET_DURATION:-1000000000}))
while [ $SECONDS -lt $end ]; do
	sleep 1
	for p in "${hosts[@]}"; do kill -0 "$p" 2>/dev/null || { echo "run-fleet: host pid $p exited (see its log)"; }; done
done
