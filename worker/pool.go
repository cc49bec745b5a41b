package worker

import "time"

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
// its own. c.jobs never blocks: it holds maxConcurrentProbes and no more probes are in flight.
func (c *checker) submit(j job) {
	if c.poolSize < c.inflight {
		c.poolSize++
		c.probes.Add(1)
		go c.prober()
	}
	c.jobs <- j
}

// prober runs probes from c.jobs until the checker stops, sending each outcome back to run.
func (c *checker) prober() {
	defer c.probes.Done()
	for {
		select {
		case j := <-c.jobs:
			res := c.probe(j.t, j.deadline)
			select {
			case c.results <- outcome{t: j.t, fence: j.fence, due: j.due, started: j.started, res: res}:
			case <-c.done:
				return
			}
		case <-c.done:
			return
		}
	}
}
