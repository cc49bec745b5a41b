package worker

import (
	"time"

	"hcproxy/probe"
)

// job is one probe for the pool: the check of t due at due, started at started under fence,
// ending by deadline.
type job struct {
	t        *target
	fence    uint32
	due      int64
	started  int64
	deadline time.Time
}

// submit hands j to the probe pool: long-lived goroutines fed by c.jobs, started as needed up to
// maxConcurrentProbes (never more than the probes in flight), so a probe costs no goroutine of
// its own. Only run submits, and it closes c.jobs when it returns (the probers then end).
//
// Neither channel ever blocks, so plain sends and receives do (the selects and their locks were
// about 4% of a worker's CPU with keepalive at 10,000 checks): c.jobs and c.results each hold
// maxConcurrentProbes, and a job in c.jobs, a probe running and a result in c.results are each
// a probe in flight (counted by c.inflight until run takes its result), of which there are
// never more.
func (c *checker) submit(j job) {
	if c.poolSize < c.inflight {
		c.poolSize++
		c.probes.Add(1)
		go c.prober()
	}
	c.jobs <- j
}

// prober runs probes from c.jobs until run closes it, sending each outcome back to run. A job
// taken after Stop is not probed: its outcome (dropped by finish, were run still there) only
// keeps the count.
func (c *checker) prober() {
	defer c.probes.Done()
	for j := range c.jobs {
		var res probe.Result
		if c.ctx.Err() == nil {
			res = c.probe(j.t, j.deadline)
		} else {
			res = probe.Result{Reason: probe.Timeout, Detail: "check cut short"}
		}
		c.results <- outcome{t: j.t, fence: j.fence, due: j.due, started: j.started, res: res}
	}
}
