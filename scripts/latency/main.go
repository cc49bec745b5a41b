// Command latency is a bounded load client that records every request's latency (see
// hcproxy/internal/latency): closed loop, or at a fixed rate without coordinated omission.
//
//	go run ./scripts/latency -addr 127.0.0.1:18080 -c 64 -d 5s [-rate 30000]
//
// It prints one RESULT line: requests, rate, p50/p90/p99/p99.9/max, and the spread of requests
// and p99 over the connections.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"hcproxy/internal/latency"
)

func main() {
	var o latency.Options
	flag.StringVar(&o.Addr, "addr", "127.0.0.1:8080", "server address")
	flag.StringVar(&o.Path, "path", "/", "request path")
	flag.IntVar(&o.Conns, "c", 64, "connections")
	flag.DurationVar(&o.Duration, "d", 5*time.Second, "duration")
	flag.Float64Var(&o.Rate, "rate", 0, "requests per second over all connections (0: closed loop)")
	label := flag.String("label", "", "a word printed first on the RESULT line")
	flag.Parse()
	r, err := latency.Run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("RESULT %s %s\n", *label, r)
}
