// Package load is a bounded HTTP/1.1 keep-alive load client for tests, like wrk: each connection
// sends a request, reads the whole response, and reconnects only when the server said
// Connection: close or the connection failed. Unlike net/http's client it never retries, so a
// request lost by the server shows up as an error.
package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Options bound a run: it stops at Duration or after MaxRequests, whichever comes first.
type Options struct {
	Addr        string
	Conns       int
	Duration    time.Duration
	MaxRequests int64
	Path        string // default "/"
}

// Result is what the clients saw.
type Result struct {
	Requests int64             // responses received, any status
	Non2xx   int64             // responses with a status outside 2xx
	Errors   map[string]int64  // failed requests by kind: dial, write, read
	First    map[string]string // the first error of each kind, for the test's log
	P99      time.Duration
}

// Failed is the number of requests that got no response.
func (r Result) Failed() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

func (r Result) String() string {
	s := fmt.Sprintf("requests=%d non2xx=%d errors=%v p99=%v", r.Requests, r.Non2xx, r.Errors, r.P99)
	if len(r.First) > 0 {
		s += fmt.Sprintf(" first=%q", r.First)
	}
	return s
}

// Run drives the load until ctx ends, Duration passes or MaxRequests are done.
func Run(ctx context.Context, o Options) Result {
	if o.Path == "" {
		o.Path = "/"
	}
	if o.Conns <= 0 {
		o.Conns = 1
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var mu sync.Mutex
	res := Result{Errors: map[string]int64{}, First: map[string]string{}}
	var lat []time.Duration
	var wg sync.WaitGroup
	for i := 0; i < o.Conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client{o: o}
			defer c.close()
			for ctx.Err() == nil {
				mu.Lock()
				if o.MaxRequests > 0 && res.Requests+res.Failed() >= o.MaxRequests {
					mu.Unlock()
					return
				}
				mu.Unlock()
				start := time.Now()
				code, kind, err := c.do(ctx)
				d := time.Since(start)
				mu.Lock()
				if kind != "" {
					if ctx.Err() == nil {
						res.Errors[kind]++
						if _, ok := res.First[kind]; !ok && err != nil {
							res.First[kind] = err.Error()
						}
					}
				} else {
					res.Requests++
					lat = append(lat, d)
					if code < 200 || code > 299 {
						res.Non2xx++
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		res.P99 = lat[len(lat)*99/100]
	}
	return res
}

type client struct {
	o    Options
	conn net.Conn
	br   *bufio.Reader
}

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// do makes one request; kind is "" on success, else the phase that failed.
func (c *client) do(ctx context.Context) (int, string, error) {
	if c.conn == nil {
		d := net.Dialer{Timeout: 2 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", c.o.Addr)
		if err != nil {
			return 0, "dial", err
		}
		c.conn, c.br = conn, bufio.NewReader(conn)
	}
	c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c.conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", c.o.Path, c.o.Addr); err != nil {
		c.close()
		return 0, "write", err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, "read_eof", err
		}
		return 0, "read", err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		c.close()
		return 0, "read_body", err
	}
	if resp.Close {
		c.close()
	}
	return resp.StatusCode, "", nil
}
