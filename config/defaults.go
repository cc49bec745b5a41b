package config

import (
	"runtime"
	"time"
)

// Defaults of the settings that have one. applyDefaults is the only place
// that uses them.
const (
	DefaultPidFile         = "/run/hcproxy.pid"
	DefaultTable           = "/dev/shm/hcproxy/table"
	DefaultMaxServers      = 1024
	DefaultShutdownTimeout = 30 * time.Second
	DefaultLogFormat       = "text"
	DefaultLogLevel        = "info"
	DefaultEngine          = "fast"
	DefaultSteering        = "auto"
	DefaultStatusListen    = "127.0.0.1:8081"
	DefaultWeight          = 1
	DefaultConnectTimeout  = 5 * time.Second
	DefaultBalancer        = "round_robin"
	DefaultAllDown         = "fail"
	DefaultHashKey         = "remote_addr"
	DefaultRetries         = 1
	DefaultKeepalive       = 32

	DefaultAccessLogFormat     = "combined"
	DefaultRequestIDHeader     = "X-Request-ID"
	DefaultForwarded           = "x-forwarded"
	DefaultClientHeaderTimeout = 60 * time.Second
	DefaultClientIdleTimeout   = 75 * time.Second
	DefaultClientSendTimeout   = 60 * time.Second
	DefaultStatusHeaderTimeout = 10 * time.Second
	DefaultMaxFails            = 1
	DefaultFailTimeout         = 10 * time.Second
	DefaultReadTimeout         = 60 * time.Second
	DefaultSendTimeout         = 60 * time.Second
	DefaultCheckType           = "http"
	DefaultInterval            = time.Second
	DefaultTimeout             = time.Second
	DefaultRise                = 2
	DefaultFall                = 3
	DefaultInitial             = "up"
	DefaultURI                 = "/"
	DefaultMaxResponse         = 16 << 10
	maxAutoWorkers             = 64
)

// DefaultRetryOn is the default of Upstream.RetryOn.
func DefaultRetryOn() []string { return []string{"connect", "timeout"} }

// DefaultStatusAllow is the default of Status.Allow: loopback clients only.
func DefaultStatusAllow() []string { return []string{"127.0.0.0/8", "::1/128"} }

// DefaultExpectStatus is the default of Check.ExpectStatus for http checks.
func DefaultExpectStatus() []string { return []string{"2xx", "3xx"} }

// applyDefaults gives every setting that the TOML source did not set (per
// set) its default. It is the one place where defaults are applied.
func applyDefaults(c *Config, set keySet) {
	if !set["workers"] {
		c.Workers = min(max(runtime.NumCPU(), 1), maxAutoWorkers)
	}
	def(set, "pid_file", &c.PidFile, DefaultPidFile)
	def(set, "table", &c.Table, DefaultTable)
	def(set, "max_servers", &c.MaxServers, DefaultMaxServers)
	def(set, "shutdown_timeout", &c.ShutdownTimeout, DefaultShutdownTimeout)
	def(set, "log_format", &c.LogFormat, DefaultLogFormat)
	def(set, "log_level", &c.LogLevel, DefaultLogLevel)
	def(set, "engine", &c.Engine, DefaultEngine)
	def(set, "steering", &c.Steering, DefaultSteering)
	if c.Status != nil {
		def(set, "status.listen", &c.Status.Listen, DefaultStatusListen)
		def(set, "status.allow", &c.Status.Allow, DefaultStatusAllow())
		def(set, "status.client_header_timeout", &c.Status.ClientHeaderTimeout, DefaultStatusHeaderTimeout)
	}
	if c.Fleet != nil {
		applyFleetDefaults(c.Fleet, set)
	}
	for i := range c.Servers {
		k := keyIndex("server", i)
		sv := &c.Servers[i]
		def(set, k+".access_log_format", &sv.AccessLogFormat, DefaultAccessLogFormat)
		def(set, k+".request_id_header", &sv.RequestIDHeader, DefaultRequestIDHeader)
		def(set, k+".forwarded", &sv.Forwarded, DefaultForwarded)
		def(set, k+".client_header_timeout", &sv.ClientHeaderTimeout, DefaultClientHeaderTimeout)
		def(set, k+".client_idle_timeout", &sv.ClientIdleTimeout, DefaultClientIdleTimeout)
		def(set, k+".client_send_timeout", &sv.ClientSendTimeout, DefaultClientSendTimeout)
	}
	for name, u := range c.Upstreams {
		k := keyJoin("upstream", name)
		for i := range u.Servers {
			def(set, keyIndex(k+".servers", i)+".weight", &u.Servers[i].Weight, DefaultWeight)
		}
		def(set, k+".connect_timeout", &u.ConnectTimeout, DefaultConnectTimeout)
		def(set, k+".read_timeout", &u.ReadTimeout, DefaultReadTimeout)
		def(set, k+".send_timeout", &u.SendTimeout, DefaultSendTimeout)
		def(set, k+".balancer", &u.Balancer, DefaultBalancer)
		def(set, k+".all_down", &u.AllDown, DefaultAllDown)
		def(set, k+".retries", &u.Retries, DefaultRetries)
		def(set, k+".keepalive", &u.Keepalive, DefaultKeepalive)
		def(set, k+".retry_on", &u.RetryOn, DefaultRetryOn())
		def(set, k+".max_fails", &u.MaxFails, DefaultMaxFails)
		def(set, k+".fail_timeout", &u.FailTimeout, DefaultFailTimeout)
		if u.Balancer == "hash" {
			def(set, k+".hash_key", &u.HashKey, DefaultHashKey)
		}

		k += ".check"
		ch := &u.Check
		def(set, k+".type", &ch.Type, DefaultCheckType)
		def(set, k+".interval", &ch.Interval, DefaultInterval)
		def(set, k+".timeout", &ch.Timeout, DefaultTimeout)
		def(set, k+".rise", &ch.Rise, DefaultRise)
		def(set, k+".fall", &ch.Fall, DefaultFall)
		def(set, k+".initial", &ch.Initial, DefaultInitial)
		def(set, k+".max_response", &ch.MaxResponse, DefaultMaxResponse)
		// The per-type settings have defaults only for their types (http's
		// uri only when no raw request, send, replaces it).
		applyCheckDefaults(set, k, ch)
	}
}

// def sets *dst to v unless key is in set.
func def[T any](set keySet, key string, dst *T, v T) {
	if !set[key] {
		*dst = v
	}
}
