// Package latency is a load client that records the latency of every request, on every
// connection, so that a tail can be told apart from a starved connection: wrk's --latency stops
// at the 99th percentile and says nothing of how requests spread over connections.
//
// Each connection sends one small GET at a time over keep-alive and reads the response by its
// Content-Length (the servers it measures answer so). Closed loop (Rate 0): the next request
// goes as soon as the response is read. Fixed rate: requests are due at Rate per second spread
// evenly over the connections, and a request's latency is counted from when it was due, not from
// when it was sent, so a stall is charged to every request it delayed (no coordinated omission).
//
// A run is bounded by Duration and stops by itself; every connection is closed at its end.
package latency

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Options of a run.
type Options struct {
	Addr     string        // host:port
	Path     string        // default "/"
	Conns    int           // connections, default 64
	Duration time.Duration // default 5 s
	Rate     float64       // requests per second over all connections; 0 = closed loop
	Timeout  time.Duration // per request, default 5 s
}

// Result of a run: every latency, per connection.
type Result struct {
	Conns    [][]time.Duration // per connection, in order
	Errors   int
	Duration time.Duration
}

// Run runs the load of o.
func Run(o Options) (*Result, error) {
	if o.Path == "" {
		o.Path = "/"
	}
	if o.Conns <= 0 {
		o.Conns = 64
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	req := []byte("GET " + o.Path + " HTTP/1.1\r\nHost: " + o.Addr + "\r\nUser-Agent: hcproxy-latency\r\n\r\n")
	res := &Result{Conns: make([][]time.Duration, o.Conns)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(o.Duration)
	for i := range o.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat, errs := runConn(o, req, i, start, end)
			mu.Lock()
			res.Conns[i] = lat
			res.Errors += errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Duration = time.Since(start)
	if res.Total() == 0 {
		return res, fmt.Errorf("latency: no request answered (%d errors)", res.Errors)
	}
	return res, nil
}

func runConn(o Options, req []byte, i int, start, end time.Time) (lat []time.Duration, errs int) {
	var c net.Conn
	var br *bufio.Reader
	var gap time.Duration
	next := start
	if o.Rate > 0 {
		gap = time.Duration(float64(time.Second) * float64(o.Conns) / o.Rate)
		next = start.Add(gap * time.Duration(i) / time.Duration(o.Conns)) // spread the connections' phases
	}
	for {
		now := time.Now()
		if gap > 0 {
			if next.After(end) {
				break
			}
			if d := next.Sub(now); d > 0 {
				time.Sleep(d)
			}
		} else if now.After(end) {
			break
		}
		due := next
		if gap == 0 {
			due = time.Now()
		}
		if c == nil {
			var err error
			if c, err = net.DialTimeout("tcp", o.Addr, o.Timeout); err != nil {
				errs++
				time.Sleep(10 * time.Millisecond)
				next = next.Add(gap)
				continue
			}
			br = bufio.NewReaderSize(c, 16<<10)
		}
		c.SetDeadline(time.Now().Add(o.Timeout))
		if err := exchange(c, br, req); err != nil {
			errs++
			c.Close()
			c = nil
		} else {
			lat = append(lat, time.Since(due))
		}
		next = next.Add(gap)
	}
	if c != nil {
		c.Close()
	}
	return lat, errs
}

var errResponse = errors.New("latency: malformed response")

// exchange writes req and reads one response, its body by Content-Length.
func exchange(c net.Conn, br *bufio.Reader, req []byte) error {
	if _, err := c.Write(req); err != nil {
		return err
	}
	length := -1
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if first {
			if !bytes.HasPrefix(line, []byte("HTTP/1.")) {
				return errResponse
			}
			continue
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("content-length")) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return errResponse
			}
			length = n
		}
	}
	if length < 0 {
		return errResponse
	}
	_, err := br.Discard(length)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Total is the number of requests answered.
func (r *Result) Total() int {
	n := 0
	for _, c := range r.Conns {
		n += len(c)
	}
	return n
}

// Quantiles returns the q-quantiles (0 < q <= 1) of every latency of the run.
func (r *Result) Quantiles(qs ...float64) []time.Duration {
	all := make([]time.Duration, 0, r.Total())
	for _, c := range r.Conns {
		all = append(all, c...)
	}
	slices.Sort(all)
	return quantiles(all, qs)
}

func quantiles(sorted []time.Duration, qs []float64) []time.Duration {
	out := make([]time.Duration, len(qs))
	if len(sorted) == 0 {
		return out
	}
	for i, q := range qs {
		k := int(math.Ceil(q*float64(len(sorted)))) - 1
		out[i] = sorted[max(0, min(k, len(sorted)-1))]
	}
	return out
}

// Spread describes how requests spread over the connections: the fewest and most requests one
// connection made, and the lowest, median and highest per-connection p99.
type Spread struct {
	MinCount, MaxCount     int
	MinP99, MedP99, MaxP99 time.Duration
}

// Spread returns the run's spread over its connections.
func (r *Result) Spread() Spread {
	s := Spread{MinCount: math.MaxInt}
	var p99s []time.Duration
	for _, c := range r.Conns {
		s.MinCount, s.MaxCount = min(s.MinCount, len(c)), max(s.MaxCount, len(c))
		sorted := slices.Clone(c)
		slices.Sort(sorted)
		p99s = append(p99s, quantiles(sorted, []float64{0.99})[0])
	}
	slices.Sort(p99s)
	s.MinP99, s.MedP99, s.MaxP99 = p99s[0], p99s[len(p99s)/2], p99s[len(p99s)-1]
	return s
}

// String is one line: requests, rate, quantiles and the spread over connections.
func (r *Result) String() string {
	q := r.Quantiles(0.5, 0.9, 0.99, 0.999, 1)
	s := r.Spread()
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms" }
	return fmt.Sprintf("requests=%d rps=%.0f errors=%d p50=%s p90=%s p99=%s p99.9=%s max=%s conn_requests=%d..%d conn_p99=%s/%s/%s",
		r.Total(), float64(r.Total())/r.Duration.Seconds(), r.Errors, ms(q[0]), ms(q[1]), ms(q[2]), ms(q[3]), ms(q[4]),
		s.MinCount, s.MaxCount, ms(s.MinP99), ms(s.MedP99), ms(s.MaxP99))
}
