package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"hcproxy/internal/h1"
)

// followBytes feeds s to a new follower in two reads split at i, telling it the framing of
// each request as net/http would once its head is read (all requests here are chunked POSTs to
// "/"), and returns the first error.
func followBytes(s string, i int) error {
	var f follower
	for _, part := range []string{s[:i], s[i:]} {
		if err := f.feed([]byte(part)); err != nil {
			return err
		}
		for f.state == followWait {
			if err := f.begin("POST", "/", "HTTP/1.1", true, -1); err != nil {
				return err
			}
		}
	}
	return nil
}

// The fast engine's chunk rules hold wherever the reads split the bytes: a size line of 16 hex
// digits fails, one of 15 does not, after a first chunk and in a second request too; so do the
// other faults net/http would let through (white space after a size, a trailer that is no field).
func TestFollowerChunkSizeLimitAtEverySplit(t *testing.T) {
	head := "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	for body, want := range map[string]error{
		"ffffffffffffffff\r\nab":                               h1.ErrBadChunk,
		"3;x=1\r\nabc\r\n00000000000000001\r\na":               h1.ErrBadChunk,
		"0\r\nT: 1\r\n\r\n" + head + "1000000000000000\r\n":    h1.ErrBadChunk,
		"fffffffffffffff\r\nab":                                nil,
		"5 \r\nhello\r\n0\r\n\r\n":                             h1.ErrBadChunk,
		"5\r\nhello\r\n0\r\nGET /x HTTP/1.1\r\n\r\n":           h1.ErrBadChunk,
		"3\r\nabc\r\n0\r\n\r\n" + head + "00000000000000f\r\n": nil,
	} {
		s := head + body
		for i := 0; i <= len(s); i++ {
			if err := followBytes(s, i); !errors.Is(err, want) || (want == nil && err != nil) {
				t.Errorf("%q split at %d: %v, want %v", body, i, err, want)
				break
			}
		}
	}
}

// A follower that finds a head other than the one net/http parsed (a request net/http
// answered itself) stops following and refuses nothing after.
func TestFollowerOutOfStepRefusesNothing(t *testing.T) {
	var f follower
	f.feed([]byte("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n"))
	if err := f.begin("POST", "/", "HTTP/1.1", true, -1); err != nil || f.state != followOff {
		t.Fatalf("begin out of step: %v, state %d; want no error and no following", err, f.state)
	}
	if err := f.feed([]byte("0000000000000000000\r\n")); err != nil {
		t.Errorf("feed after losing step: %v", err)
	}
}

// The follower stays in step with net/http over any sequence of requests it serves on one
// connection: random pipelined requests (no body, Content-Length, chunked with extensions,
// leading zeros, trailers; bare LF line endings in heads; CRLFs after a POST; request lines
// of 8 KiB; bodies that look like heads), written in random pieces, to a
// real http.Server over Listener. Every request reaches the handler in step, and none is
// refused.
func TestFollowerStaysInStepWithNetHTTP(t *testing.T) {
	var mu sync.Mutex
	var problems []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := beginFollow(r)
		fc := r.Context().Value(followKey{}).(*followConn)
		fc.mu.Lock()
		off := fc.f.state == followOff
		fc.mu.Unlock()
		n, rerr := io.Copy(io.Discard, r.Body)
		if err != nil || off || rerr != nil {
			mu.Lock()
			problems = append(problems, fmt.Sprintf("%s %.40s: begin %v, out of step %v, body %v", r.Method, r.RequestURI, err, off, rerr))
			mu.Unlock()
		}
		fmt.Fprint(w, n)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ConnContext: ConnContext, ConnState: ConnState, MaxHeaderBytes: 64 << 10}
	done := make(chan struct{})
	go func() { srv.Serve(Listener(ln)); close(done) }()
	defer func() { srv.Close(); <-done }()

	rng := rand.New(rand.NewPCG(1, 2))
	for conn := 0; conn < 100; conn++ {
		var raw strings.Builder
		var lens []int64
		n := 1 + rng.IntN(8)
		for i := 0; i < n; i++ {
			lens = append(lens, randomRequest(rng, &raw, i == n-1))
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		go func(s string, rng *rand.Rand) { // in random pieces, some apart
			for len(s) > 0 {
				k := min(len(s), 1+rng.IntN(300))
				if _, err := io.WriteString(c, s[:k]); err != nil {
					return
				}
				s = s[k:]
				if rng.IntN(4) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}(raw.String(), rand.New(rand.NewPCG(uint64(conn), 3)))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for i, want := range lens {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("connection %d, response %d of %d: %v\nrequests: %.2000q", conn, i, n, err, raw.String())
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != strconv.FormatInt(want, 10) {
				mu.Lock()
				t.Fatalf("connection %d, response %d: %d %q, want 200 %d (%q)\nrequests: %.2000q", conn, i, resp.StatusCode, b, want, problems, raw.String())
			}
		}
		c.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
}

// randomRequest writes one random valid request to b and returns its body length.
func randomRequest(rng *rand.Rand, b *strings.Builder, last bool) int64 {
	eol := "\r\n"
	if rng.IntN(5) == 0 {
		eol = "\n" // net/http takes a bare LF in a head
	}
	target := "/p" + strconv.Itoa(rng.IntN(1000))
	if rng.IntN(20) == 0 {
		target += "?" + strings.Repeat("q", 8<<10+rng.IntN(100)) // a long request line
	}
	method := []string{"GET", "POST", "PUT"}[rng.IntN(3)]
	fmt.Fprintf(b, "%s %s HTTP/1.1%sHost: a%s", method, target, eol, eol)
	if last {
		b.WriteString("Connection: close" + eol)
	}
	body := func(n int) string { // bytes that look like framing
		var s strings.Builder
		for s.Len() < n {
			s.WriteString([]string{"\r\n\r\n", "GET / HTTP/1.1\r\n", "0\r\n", "x", "ffffffffffffffff\r\n"}[rng.IntN(5)])
		}
		return s.String()[:n]
	}
	var total int64
	switch rng.IntN(3) {
	case 0:
		b.WriteString(eol)
	case 1:
		n := rng.IntN(3000)
		fmt.Fprintf(b, "Content-Length: %d%s%s%s", n, eol, eol, body(n))
		total = int64(n)
	case 2:
		fmt.Fprintf(b, "Transfer-Encoding: chunked%s%s", eol, eol)
		for k := rng.IntN(4); k > 0; k-- {
			n := 1 + rng.IntN(2000)
			size := strconv.FormatInt(int64(n), 16)
			switch rng.IntN(4) {
			case 0:
				size = strings.Repeat("0", 15-len(size)) + size // 15 digits: within the limit
			case 1:
				size = strings.ToUpper(size) + ";ext=\"v\""
			case 2:
				size += ";e" // net/http refuses the white space RFC 9112 allows before it
			}
			fmt.Fprintf(b, "%s\r\n%s\r\n", size, body(n))
			total += int64(n)
		}
		b.WriteString("0\r\n")
		if rng.IntN(3) == 0 {
			b.WriteString("X-Trailer: t\r\n")
		}
		b.WriteString("\r\n")
	}
	if method == "POST" && !last && rng.IntN(3) == 0 {
		b.WriteString("\r\n") // net/http skips up to 4 CR or LF after a POST
	}
	return total
}

// An upgraded connection (101) is a tunnel through a followed connection: bytes that look like
// heads and chunk sizes pass both ways untouched.
func TestUpgradeThroughFollowedConnection(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		io.Copy(c, brw) // echo until the client closes
	})
	addr, ss := stdServer(t, Options{ClientBodyTimeout: time.Second}, b.addr())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// The tunnel ends on goroutines of its own that release the slot: wait for them
		// before the table goes away.
		c.Close()
		for deadline := time.Now().Add(5 * time.Second); ss[0].Slot.Active() != 0; {
			if time.Now().After(deadline) {
				t.Fatalf("the tunnel still holds the slot 5s after the client closed")
			}
			time.Sleep(time.Millisecond)
		}
	}()
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	msg := "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n"
	io.WriteString(c, msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
		t.Errorf("through the tunnel: %q, %v; want %q back", got, err, msg)
	}
}
