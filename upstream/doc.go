// Package upstream is the data plane of a worker: the servers of each upstream, the balancer that
// picks among the available ones, and the proxy handler.
//
// A server's availability is never cached: the balancer reads the server's routing word in the
// shared health table (one atomic load) on every pick, so a transition written by whichever worker
// owns the check takes effect in every worker at once. Requests in flight and requests served are
// counted in the shared slot too, so every worker and the status page see the totals.
//
// Proxy is the std engine's handler (net/http's server and ReverseProxy); the fast engine moves
// the bytes itself and shares the per-request policy here (Classify, the retry decision, the
// passive accounting). On the client's side the std engine applies the fast engine's rules: the
// request target and Host by internal/h1, each read of the request body bounded by
// ClientBodyTimeout, a chunk size of at most 15 hex digits (Listener), and a body that cannot be
// read is the client's failure (400, or the connection closed), never counted against a server.
package upstream
