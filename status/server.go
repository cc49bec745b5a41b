package status

import (
	"net/http"
	"time"
)

// Limits of the status listener's HTTP server (NewServer). A client that breaks one gets a 4xx
// or a closed connection, never a goroutine held open.
const (
	// MaxHeadBytes bounds a request head, request line included: a longer one is answered 431 and
	// its connection closed. It is the proxy's limit (fastpath.DefaultMaxHeadBytes).
	MaxHeadBytes = 16 << 10
	// DefaultHeaderTimeout bounds reading a request head from its first byte, when
	// ServerOptions.HeaderTimeout is 0 ([status] client_header_timeout's default).
	DefaultHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout bounds reading a whole request, head and body, when
	// ServerOptions.ReadTimeout is 0: a client that announces a body (POST /status/admin with a
	// Content-Length) and then sends it slowly or not at all is disconnected after it. The event
	// stream lifts it once its request is read.
	DefaultReadTimeout = 30 * time.Second
	// WriteTimeout bounds writing a response (the page, JSON, CSV, /metrics): a client that stops
	// reading is disconnected after it. The event stream sets its own per-write deadlines.
	WriteTimeout = 30 * time.Second
	// IdleTimeout closes a keep-alive connection that waits that long for its next request.
	IdleTimeout = 30 * time.Second

	// httpSlop is what net/http reads beyond http.Server.MaxHeaderBytes before it answers 431.
	httpSlop = 4 << 10
)

// ServerOptions configure NewServer. The zero value of each field is usable.
type ServerOptions struct {
	// HeaderTimeout bounds reading a request head; 0 = DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request; 0 = DefaultReadTimeout. It is never shorter
	// than HeaderTimeout.
	ReadTimeout time.Duration
}

// NewServer returns the HTTP server of a status listener that serves h (normally Handler's):
// a head of MaxHeadBytes or more is answered 431, a head must arrive within HeaderTimeout and a
// whole request within ReadTimeout, and a keep-alive connection idle for IdleTimeout is closed.
// The caller may set the hooks (ConnState, ErrorLog) before it serves.
func NewServer(h http.Handler, o ServerOptions) *http.Server {
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = DefaultHeaderTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.HeaderTimeout,
		ReadTimeout:       max(o.ReadTimeout, o.HeaderTimeout),
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeadBytes - httpSlop,
	}
}
