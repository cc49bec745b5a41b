// Package upstream is the data plane of a worker: the servers of each upstream, the balancer that
// picks among the available ones, and the proxy handler.
//
// A server's availability is never cached: the balancer reads the server's routing word in the
// shared health table (one atomic load) on every pick, so a transition written by whichever worker
// owns the check takes effect in every worker at once. Requests in flight and requests served are
// counted in the shared slot too, so every worker and the status page see the totals.
package upstream
