package status

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"

	"hcproxy/shm"
)

// procCollector exports the listeners' counters and the master's and every worker's process and
// Go runtime figures, the same whichever worker serves the scrape: process figures are read from
// /proc for the pids in the table (the master's, if it still runs, and each live worker's), Go
// figures from the table, where each process writes its own (shm.Runtime). Series are labelled
// role (master, worker) and index (the worker's entry in the worker table, bounded by
// shm.WorkerCap; empty for the master), never by pid: a reload or a respawn reuses entries, and
// a counter that restarts with a new process is a reset, which rate() handles.
type procCollector struct {
	t *shm.Table

	accepted, open                *prometheus.Desc
	cpu, rss, fds, threads, start *prometheus.Desc
	goroutines, heap, gcCycles    *prometheus.Desc
}

var _ prometheus.Collector = (*procCollector)(nil)

func newProcCollector(t *shm.Table) *procCollector {
	proc := []string{"role", "index"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("hcproxy_"+name, help, labels, nil)
	}
	return &procCollector{
		t:          t,
		accepted:   d("listener_connections_accepted_total", "Client connections accepted on the listener, all workers.", "listener"),
		open:       d("listener_connections_open", "Client connections open on the listener, all live workers (upgraded connections of engine = \"std\" are not counted once upgraded).", "listener"),
		cpu:        d("process_cpu_seconds_total", "User and system CPU time of the process.", proc...),
		rss:        d("process_resident_memory_bytes", "Resident memory of the process.", proc...),
		fds:        d("process_open_fds", "Open file descriptors of the process.", proc...),
		threads:    d("process_threads", "OS threads of the process.", proc...),
		start:      d("process_start_time_seconds", "Start time of the process since the Unix epoch.", proc...),
		goroutines: d("go_goroutines", "Goroutines of the process (written by the process every few seconds).", proc...),
		heap:       d("go_heap_objects_bytes", "Heap memory occupied by live and not yet swept objects (written by the process every few seconds).", proc...),
		gcCycles:   d("go_gc_cycles_total", "Completed GC cycles of the process (written by the process every few seconds).", proc...),
	}
}

// Describe sends every descriptor.
func (c *procCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.accepted, c.open, c.cpu, c.rss, c.fds, c.threads, c.start, c.goroutines, c.heap, c.gcCycles} {
		ch <- d
	}
}

// Collect sends the listeners' counters and each process's figures.
func (c *procCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.t.Listeners() {
		ch <- prometheus.MustNewConstMetric(c.accepted, prometheus.CounterValue, float64(l.Accepted), l.Address)
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(l.Open), l.Address)
	}
	if c.t.MasterRunning() {
		c.process(ch, c.t.MasterPid(), c.t.Runtime(-1), "master", "")
	}
	for _, w := range c.t.Workers() {
		switch w.State {
		case shm.WorkerStarting, shm.WorkerReady, shm.WorkerDraining:
			if w.Token != 0 {
				c.process(ch, w.Token.Pid(), c.t.Runtime(w.Index), "worker", strconv.Itoa(w.Index))
			}
		}
	}
}

// process sends the figures of the process pid; those of /proc only while it can be read.
func (c *procCollector) process(ch chan<- prometheus.Metric, pid int, rt shm.Runtime, l ...string) {
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	if rt != (shm.Runtime{}) {
		gauge(c.goroutines, float64(rt.Goroutines))
		gauge(c.heap, float64(rt.HeapBytes))
		ch <- prometheus.MustNewConstMetric(c.gcCycles, prometheus.CounterValue, float64(rt.GCCycles), l...)
	}
	p, err := procfs.NewProc(pid)
	if err != nil {
		return
	}
	st, err := p.Stat()
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, st.CPUTime(), l...)
	gauge(c.rss, float64(st.ResidentMemory()))
	gauge(c.threads, float64(st.NumThreads))
	if s, err := st.StartTime(); err == nil {
		gauge(c.start, s)
	}
	if n, err := p.FileDescriptorsLen(); err == nil {
		gauge(c.fds, float64(n))
	}
}
