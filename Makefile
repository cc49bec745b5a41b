# hcproxy: make run (demo), make test (everything CI runs), make lint, make bench.
GO      ?= go
# The binaries are built with Go 1.27.3, taken from the module proxy by the go command on first use
# (go.mod still says 1.26.8, the oldest Go the code builds with). 1.26.8's standard library has
# known vulnerabilities in net/http, crypto/tls, crypto/x509 and html/template that govulncheck
# reports; 1.27.3 has none. `make GOTOOLCHAIN=local ...` builds with the machine's own Go.
export GOTOOLCHAIN ?= go1.27.3
# govulncheck reads the Go vulnerability database from a pinned snapshot of golang.org/x/vulndb,
# fetched through the module proxy (vuln.go.dev itself may not be reachable). Bump it to refresh;
# `make lint VULNDB=https://vuln.go.dev` uses the live database where it is reachable.
VULNDB_SNAPSHOT ?= v0.0.0-20261105234957-e22db6528018
VULNDB ?=
GOFLAGS ?=
BIN     := bin
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X hcproxy/version.Version=$(VERSION)
FUZZTIME ?= 10s

.PHONY: all build test unit integration fuzz lint vuln run run-fleet bench clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/hcproxy ./cmd/hcproxy
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/hcctl ./cmd/hcctl
	$(GO) build -o $(BIN)/hcdemo ./scripts/demo
	$(GO) build -o $(BIN)/latency ./scripts/latency

# test: vet, unit tests under the race detector, the integration tests (real binaries, built
# with -race, on 127.0.0.1), then each fuzz target for a bounded time.
# The integration tests of cmd/hcproxy run after the others, alone: several of them hold the
# checker to its schedule (one probe per interval, none lost or doubled at a handover) and must
# not share the machine's two cores with the other packages' tests.
test: build
	$(GO) vet ./...
	HCPROXY_RACE=1 $(GO) test -race -count=1 -timeout 15m $$($(GO) list ./... | grep -v '/cmd/hcproxy$$')
	HCPROXY_RACE=1 $(GO) test -race -count=1 -timeout 20m ./cmd/hcproxy
	$(MAKE) fuzz

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./config
	$(GO) test -run='^$$' -fuzz='^FuzzParseResponse$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./probe
	$(GO) test -run='^$$' -fuzz='^FuzzMatchStep$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./probe
	$(GO) test -run='^$$' -fuzz='^FuzzRESP$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./probe
	$(GO) test -run='^$$' -fuzz='^FuzzMySQLHandshake$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./probe
	$(GO) test -run='^$$' -fuzz='^FuzzPostgresMessages$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./probe
	$(GO) test -run='^$$' -fuzz='^FuzzSMTPReply$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./probe
	$(GO) test -run='^$$' -fuzz='^FuzzFastCGI$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./probe
	$(GO) test -run='^$$' -fuzz='^FuzzAgentLine$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./probe
	$(GO) test -run='^$$' -fuzz='^FuzzGRPCHealth$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./probe
	$(GO) test -run='^$$' -fuzz='^FuzzAttach$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./shm
	$(GO) test -run='^$$' -fuzz='^FuzzParseRequest$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./internal/h1
	$(GO) test -run='^$$' -fuzz='^FuzzParseHeaders$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./internal/h1
	$(GO) test -run='^$$' -fuzz='^FuzzParseResponseHead$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./internal/h1
	$(GO) test -run='^$$' -fuzz='^FuzzChunkScanner$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./internal/h1
	$(GO) test -run='^$$' -fuzz='^FuzzEngine$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./fastpath
	$(GO) test -run='^$$' -fuzz='^FuzzParseTarget$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=50x ./internal/h1

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(MAKE) vuln

vuln:
	@db="$(VULNDB)"; if [ -z "$$db" ]; then \
		dir=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_SNAPSHOT) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); \
		[ -d "$$dir/data/osv" ] || { echo "vuln: could not fetch golang.org/x/vulndb@$(VULNDB_SNAPSHOT)"; exit 1; }; \
		db="file://$$dir/data/osv"; fi; \
	echo "govulncheck -db $$db"; $(GO) run golang.org/x/vuln/cmd/govulncheck@v1.9.0 -db "$$db" ./...

# run: the demo: three local backends (one flapping), hcproxy with 2 workers, Ctrl-C stops all.
run: build
	$(BIN)/hcdemo -hcproxy $(BIN)/hcproxy

# run-fleet: the fleet demo: a 3-member etcd (/usr/bin/etcd) on loopback and 3 hcproxy hosts
# sharing their checks through it (scripts/run-fleet.sh; Ctrl-C stops all).
run-fleet: build
	bash scripts/run-fleet.sh

bench: build
	bash scripts/bench.sh

# bench-checks: active checks at scale (scripts/bench-checks.sh, docs/performance.md): hcproxy
# beside HAProxy (and Caddy) checking N servers on loopback, no client traffic. `make
# bench-checks BENCH_CHECKS_N="1000 10000" BENCH_CHECKS_WINDOW=20`; HCPROXY_CHECK_KEEPALIVE=1
# measures keep-alive checks.
BENCH_CHECKS_N ?= 1000 10000 max
BENCH_CHECKS_WINDOW ?= 20
.PHONY: bench-checks
bench-checks: build
	BENCH_CHECKS_N="$(BENCH_CHECKS_N)" BENCH_CHECKS_WINDOW=$(BENCH_CHECKS_WINDOW) GO="$(GO)" bash scripts/bench-checks.sh

# bench-fleet: fleet coordinators (package fleet) in one process against a real 3-member etcd
# cluster (Debian's etcd-server): per number of hosts and of servers, claims per key, probes
# per server per interval and etcd writes/s, steady and with 1% of the servers flipping each
# second (docs/performance.md, "Fleet"). `make bench-fleet BENCH_FLEET_HOSTS="1 3"
# BENCH_FLEET_SERVERS=1000 BENCH_FLEET_WINDOW=5s`.
BENCH_FLEET_HOSTS ?= 1 3 10 20
BENCH_FLEET_SERVERS ?= 1000 10000
BENCH_FLEET_WINDOW ?= 5s
.PHONY: bench-fleet
bench-fleet:
	HCPROXY_BENCH_FLEET=1 BENCH_FLEET_HOSTS="$(BENCH_FLEET_HOSTS)" BENCH_FLEET_SERVERS="$(BENCH_FLEET_SERVERS)" \
		BENCH_FLEET_WINDOW=$(BENCH_FLEET_WINDOW) $(GO) test -count=1 -timeout 30m -run "^TestFleetScale$$" -v ./fleet/ \
		| grep -E "^(RESULT|--- |ok|FAIL|panic)"

clean:
	rm -rf $(BIN)

# conformance: the differential test of both engines against nginx and HAProxy on public request
# corpora (conformance/, see docs/conformance.md), on the binary make build made; it skips when
# nginx or haproxy is missing. It prints the counts, the failures and the differences from the
# oracles; make test runs it too, in its go test ./... `make conformance CASES=hop/` runs only
# the cases whose names match a regular expression.
CASES ?=
.PHONY: conformance
conformance: build
	HCPROXY_BIN=$(CURDIR)/$(BIN)/hcproxy $(GO) test -count=1 -v -run '^TestConformance$$' ./conformance -cases='$(CASES)'

# chaos: the chaos suite (chaos/, build tag chaos; real binaries on loopback, faults injected,
# each scenario prints a RESULT line and fails when its promise breaks). See docs/chaos.md.
# soak: steady load, reloads and a flapping server for DURATION; fails on memory/thread growth.
DURATION ?= 10m
SOAK_TIMEOUT ?= 3h
.PHONY: chaos soak
chaos:
	$(GO) test -tags chaos -count=1 -v -timeout 30m ./chaos

soak:
	HCPROXY_SOAK=$(DURATION) $(GO) test -tags chaos -count=1 -v -run '^TestSoak$$' -timeout $(SOAK_TIMEOUT) ./chaos
