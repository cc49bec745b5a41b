// Package fastpath is hcproxy's own HTTP/1.1 forwarding path, the default data plane of a
// worker's [[server]] listeners (engine = "fast"; "std" keeps net/http's ReverseProxy).
//
// A Server accepts on its listeners and serves each client connection on one goroutine (Go's
// netpoller does the waiting; no goroutine per request). Sockets are read and written with raw
// system calls inside syscall.RawConn callbacks (sockio.go): the netpoller and deadlines work as
// for net.Conn, but a call that can proceed costs one system call and no scheduler hand-off.
// Deadlines and timestamps take the connection's clock (clientConn.now), read when bytes arrive
// and after a wait rather than at each use. A connection reads request heads into
// a pooled buffer and parses them in place (internal/h1, shared with the std engine: method, target, version and headers as
// slices of that buffer, strict about framing: Content-Length with Transfer-Encoding, two
// Content-Lengths, bad chunk sizes and malformed lines are 400 and close, a head beyond
// MaxHeadBytes is 431; targets and Host by the same package's rule). The
// upstream request head is written from those slices (request.go): the client's headers in
// their order and spelling less the hop-by-hop ones, then the framing the parser decided
// (Content-Length or chunked, written by the proxy, never copied, so no header that Connection
// names can take it away), plus X-Forwarded-*/Forwarded, the request id and Via. An error
// response that ends a connection closes it lingering, so a client still sending reads it. The balancer of package upstream picks the
// server (Pool.PickKey, without an http.Request), and tries, retries and passive accounting
// follow upstream's retrier exactly (forward.go).
//
// Each server has a bounded LIFO stack of idle keep-alive connections (upconn.go), shared by
// the listeners of a worker through Pools; a connection is reused only when a peek finds that
// nothing arrived on it while idle (bytes the server sent unasked are never read as another
// request's answer). Bodies stream both ways and are never held whole: Content-Length bodies
// are copied (large ones spliced by the kernel); a chunked request body goes upstream re-framed
// (no extensions, no trailers) as a strict scanner checks it, a chunked response passes as it
// is while the scanner checks it; close-delimited bodies run to EOF, and a 101 joins the two
// connections until either closes (response.go).
//
// Timeouts bound waiting, never a whole transfer: each read of a server's response
// (ReadTimeout), each write to a server (SendTimeout, nginx's proxy_send_timeout) and each write
// to the client (ClientSendTimeout, nginx's send_timeout) gets its deadline when it starts; a
// body the kernel splices moves both deadlines with the progress the kernel reports on the two
// sockets (splice.go). A send timeout to a server fails the try as a timeout; one to the client
// closes the client's connection and the server's. A 101 tunnel has no deadlines.
//
// Invariants: only a connection's goroutine touches its buffers; a request is retried only
// before any response byte went to the client and while its body can be sent again (no body
// byte was read from the socket beyond what came with the head); every try counts the server's
// active requests up, and its end counts them down. Drain stops accepting, puts Connection:
// close on every later response and closes connections idle for IdleGrace.
package fastpath
