package conformance

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/fnv"
	"os"
	"sort"
	"strconv"
	"strings"
)

// The judgement of each engine on each case.
//
// A proxy forwarded a case when its recorder received anything during it (a request, part of
// one, or bytes it could not frame); otherwise it refused it (a 4xx or 5xx of its own, a closed
// or reset connection, or no answer within the deadline). An engine fails a case when:
//
//   - it forwards a case that nginx and HAProxy both refuse, unless allow.txt lists the case
//     for that engine with a reason;
//   - what it forwards is framed differently from what it accepted: a request's body at the
//     recorder differs from the body the client's framing says (RFC 9112 6.3, read by the
//     reference reader), or the recorder got bytes it could not frame, or a request begun in
//     another case;
//   - one request became two: the recorder got more requests than the client sent (when the
//     client's framing has no single reading, more than either oracle forwarded);
//   - a client got a response the recorder sent for another request (its serial says whose):
//     the failure goes to the case whose request it answered.
//
// The same checks run on the oracles, as a check of the harness: they are reported, not failed.

const (
	classRefused   = "refused"
	classSame      = "forwarded, same as both oracles"
	classOneOracle = "forwarded, same as one oracle"
	classDifferent = "forwarded differently"
)

// verdict is one proxy's judgement on one case.
type verdict struct {
	engine   string
	class    string
	failures []string // what fails the case (hcproxy's engines) or is an anomaly (oracles)
	diff     string   // how it differs from the oracles where they agree; "" when it does not
	allowed  bool     // allow.txt let it forward what both oracles refuse
}

// forwarded reports whether anything reached the recorder.
func (o *outcome) forwarded() bool { return len(o.reqs)+len(o.garbage) > 0 }

// key describes what the recorder received, normalised for comparison between proxies: method,
// target (absolute-form reduced to its path), Host (lower case, port dropped), body length and
// hash, one item per request.
func (o *outcome) key() string {
	var parts []string
	for _, r := range o.reqs {
		m := r.msg
		s := fmt.Sprintf("%s %s host=%s body=%d", m.method, normTarget(m.target), normHost(m), len(m.body))
		if len(m.body) > 0 {
			h := fnv.New32a()
			h.Write(m.body)
			s += fmt.Sprintf("#%04x", h.Sum32()&0xffff)
		}
		if r.partial {
			s += " (unfinished)"
		}
		parts = append(parts, s)
	}
	for _, g := range o.garbage {
		parts = append(parts, "unframable: "+g.why)
	}
	return strings.Join(parts, " + ")
}

// answerText describes what the client got.
func (o *outcome) answerText() string {
	a := o.ans
	var s []string
	for _, st := range a.statuses {
		s = append(s, strconv.Itoa(st))
	}
	switch {
	case a.reset:
		s = append(s, "reset")
	case a.timeout:
		s = append(s, "no answer in "+exchangeDeadline.String())
	case a.eof && len(a.statuses) == 0:
		s = append(s, "closed")
	}
	return strings.Join(s, " ")
}

// describe is the outcome as the report shows it.
func (o *outcome) describe() string {
	if o.forwarded() {
		return o.key()
	}
	return "refused (" + o.answerText() + ")"
}

func normTarget(t string) string {
	lower := strings.ToLower(t)
	for _, scheme := range []string{"http://", "https://"} {
		if strings.HasPrefix(lower, scheme) {
			rest := t[len(scheme):]
			if i := strings.IndexAny(rest, "/?"); i >= 0 {
				if rest[i] == '?' {
					return "/" + rest[i:]
				}
				return rest[i:]
			}
			return "/"
		}
	}
	return t
}

func normHost(m message) string {
	if m.hosts == 0 {
		return "(none)"
	}
	h := strings.ToLower(m.host)
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	if m.hosts > 1 {
		h += fmt.Sprintf("(x%d)", m.hosts)
	}
	return h
}

// judgeAll judges every proxy on every case; the result is in proxyNames order per case.
func judgeAll(results []result, book *serialBook, allow allowList) [][]verdict {
	// A response that reached the wrong client is charged to the case whose request it answered.
	stale := map[string][]string{} // "case\x00proxy" -> failures
	index := map[string]bool{}
	for _, r := range results {
		index[r.c.Name] = true
	}
	for _, r := range results {
		for _, name := range proxyNames {
			o := r.out[name]
			own := map[int]bool{}
			for _, q := range o.reqs {
				own[q.serial] = true
			}
			for _, s := range o.ans.serials {
				if s == 0 || own[s] {
					continue
				}
				e, ok := book.lookup(s)
				origin := e.caseName
				if !ok || !index[origin] {
					origin = r.c.Name
				}
				msg := fmt.Sprintf("the client of case %s got the response to a request of case %q (serial %d)", r.c.Name, e.caseName, s)
				stale[origin+"\x00"+name] = append(stale[origin+"\x00"+name], msg)
			}
		}
	}
	// So is a request that went on arriving at the backend after its case had ended.
	for _, r := range results {
		for _, name := range proxyNames {
			for _, q := range r.out[name].late {
				origin := q.began
				if !index[origin] {
					origin = r.c.Name
				}
				msg := fmt.Sprintf("bytes of a request begun during case %q reached the backend during case %s, after that case had ended: %s %s", q.began, r.c.Name, q.msg.method, q.msg.target)
				stale[origin+"\x00"+name] = append(stale[origin+"\x00"+name], msg)
			}
		}
	}
	all := make([][]verdict, len(results))
	for i, r := range results {
		for _, name := range proxyNames {
			v := judge(r, name, allow)
			v.failures = append(v.failures, stale[r.c.Name+"\x00"+name]...)
			all[i] = append(all[i], v)
		}
	}
	return all
}

// judge judges one proxy on one case.
func judge(r result, name string, allow allowList) verdict {
	e, n, h := r.out[name], r.out[nginxName], r.out[haproxyName]
	v := verdict{engine: name}
	ek, nk, hk := e.key(), n.key(), h.key()
	switch {
	case !e.forwarded():
		v.class = classRefused
	case n.forwarded() && h.forwarded() && nk == hk && ek == nk:
		v.class = classSame
	case n.forwarded() && ek == nk || h.forwarded() && ek == hk:
		v.class = classOneOracle
	default:
		v.class = classDifferent
	}
	bothRefuse := !n.forwarded() && !h.forwarded()
	agree := n.forwarded() && h.forwarded() && nk == hk
	switch {
	case bothRefuse && e.forwarded():
		v.diff = "forwards what both oracles refuse"
	case agree && !e.forwarded():
		v.diff = "refuses what both oracles forward alike"
	case agree && ek != nk:
		v.diff = "forwards differently from both oracles"
	case n.forwarded() && h.forwarded() && e.forwarded() && ek != nk && ek != hk:
		v.diff = "forwards differently from either oracle (they differ too)"
	case n.forwarded() != h.forwarded() && e.forwarded() && ek != nk && ek != hk:
		v.diff = "forwards differently from the oracle that forwards"
	}

	if bothRefuse && e.forwarded() && name != nginxName && name != haproxyName {
		reason, ok := allow.reason(r.c.Name, name)
		switch {
		case ok:
			v.diff += " (allowed: " + reason + ")"
			v.allowed = true
		case allUnfinished(e):
			v.failures = append(v.failures, "sends the head of a request both nginx and HAProxy refuse to the backend, then abandons it: "+e.key())
		default:
			v.failures = append(v.failures, "forwards a request both nginx and HAProxy refuse: "+e.key())
		}
	}
	if v.diff != "" {
		v.diff += ": " + explain(r, e)
	}
	v.failures = append(v.failures, framingFailures(r, e)...)
	return v
}

// allUnfinished reports whether the backend got only requests that never completed.
func allUnfinished(o *outcome) bool {
	for _, q := range o.reqs {
		if !q.partial {
			return false
		}
	}
	return len(o.garbage) == 0
}

// explain says what sets an engine's outcome apart from the oracles': for a refusal or a
// forward against both oracles, what the reference reader found wrong with the request; for a
// different forward, what differs from the oracles' forward.
func explain(r result, e *outcome) string {
	n, h := r.out[nginxName], r.out[haproxyName]
	if e.forwarded() == n.forwarded() || e.forwarded() == h.forwarded() {
		other := n
		if !n.forwarded() || (h.forwarded() && e.key() == n.key()) {
			other = h
		}
		if e.forwarded() && other.forwarded() {
			return compareForwards(e, other)
		}
	}
	var why []string
	for _, m := range r.ref {
		why = append(why, m.invalid...)
		why = append(why, m.notes...)
	}
	if len(why) == 0 {
		return "the reference reader finds nothing wrong with the request"
	}
	return "the reference reader notes: " + strings.Join(dedupe(why), "; ")
}

// compareForwards names what differs between two proxies' forwards of the same case.
func compareForwards(a, b *outcome) string {
	var d []string
	if len(a.reqs) != len(b.reqs) {
		d = append(d, fmt.Sprintf("requests at the backend: %d, not %d", len(a.reqs), len(b.reqs)))
	}
	for i := 0; i < min(len(a.reqs), len(b.reqs)); i++ {
		x, y := a.reqs[i], b.reqs[i]
		if x.msg.method != y.msg.method {
			d = append(d, fmt.Sprintf("method %s, not %s", x.msg.method, y.msg.method))
		}
		if tx, ty := normTarget(x.msg.target), normTarget(y.msg.target); tx != ty {
			d = append(d, fmt.Sprintf("target %s, not %s", tx, ty))
		}
		if hx, hy := normHost(x.msg), normHost(y.msg); hx != hy {
			d = append(d, fmt.Sprintf("Host %s, not %s", hx, hy))
		}
		if !bytes.Equal(x.msg.body, y.msg.body) {
			d = append(d, fmt.Sprintf("a body of %d bytes, not %d", len(x.msg.body), len(y.msg.body)))
		}
		if x.partial != y.partial {
			if x.partial {
				d = append(d, "the request abandoned unfinished")
			} else {
				d = append(d, "the request finished, where the oracle abandons it")
			}
		}
	}
	if len(a.garbage) != len(b.garbage) {
		d = append(d, "unframable bytes at the backend")
	}
	return strings.Join(dedupe(d), ", ")
}

func dedupe(list []string) []string {
	var out []string
	for _, s := range list {
		out = appendOnce(out, s)
	}
	return out
}

// framingFailures checks what a proxy forwarded against the framing of what the client sent.
func framingFailures(r result, e *outcome) []string {
	var out []string
	for _, g := range e.garbage {
		out = append(out, fmt.Sprintf("the backend got bytes it cannot frame (%s): %q", g.why, g.bytes))
	}
	clear := true
	for _, m := range r.ref {
		if m.unclear != "" {
			clear = false
		}
	}
	bound := max(1, len(r.ref))
	if !clear {
		bound = 0
		for _, o := range []*outcome{r.out[nginxName], r.out[haproxyName]} {
			bound = max(bound, len(o.reqs))
		}
		if bound == 0 {
			bound = max(1, len(r.ref))
		}
	}
	if len(e.reqs) > bound {
		out = append(out, fmt.Sprintf("one request became %d at the backend (the client sent %d): %s", len(e.reqs), bound, e.key()))
	}
	used := make([]bool, len(r.ref))
	for j, q := range e.reqs {
		i := matchRef(r.ref, used, q.msg, j)
		if i < 0 {
			continue
		}
		used[i] = true
		want := r.ref[i]
		if want.unclear != "" || !want.headDone {
			continue
		}
		got := q.msg
		if want.hosts == 1 && got.hosts != 1 {
			out = append(out, fmt.Sprintf("request %d: the backend got %d Host fields where the client sent one", i+1, got.hosts))
		}
		switch {
		case got.method != want.method:
			out = append(out, fmt.Sprintf("request %d: the backend got method %q where the client sent %q", i+1, got.method, want.method))
		case !q.partial && want.complete && !bytes.Equal(got.body, want.body):
			out = append(out, fmt.Sprintf("request %d: the backend got a body of %d bytes where the client's framing says %d: %q", i+1, len(got.body), len(want.body), clip(got.body, 80)))
		case !q.partial && !want.complete && len(got.body) > 0 && !bytes.HasPrefix(want.body, got.body):
			out = append(out, fmt.Sprintf("request %d: the backend got a complete body of %d bytes the client did not send whole (%d of its bytes arrived)", i+1, len(got.body), len(want.body)))
		case q.partial && !bytes.HasPrefix(want.body, got.body) && !bytes.HasPrefix(got.body, want.body):
			out = append(out, fmt.Sprintf("request %d: the backend got body bytes that are not the client's: %q", i+1, clip(got.body, 80)))
		}
	}
	return out
}

// matchRef finds the client's request that a backend request j stands for: the first unused one
// with its method and target, else the j-th.
func matchRef(ref []message, used []bool, m message, j int) int {
	for i, r := range ref {
		if !used[i] && r.method == m.method && normTarget(r.target) == normTarget(m.target) {
			return i
		}
	}
	if j < len(ref) && !used[j] {
		return j
	}
	return -1
}

// context is what a failure message shows of a case.
func (r result) context() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  case %s (%s:%d; %s)\n  sent %q\n", r.c.Name, r.c.File, r.c.Line, r.c.Source, clip(r.c.Raw, 300))
	for _, name := range proxyNames {
		fmt.Fprintf(&b, "  %-8s %s\n", name+":", r.out[name].describe())
	}
	return b.String()
}

// allowFile lists the cases an engine may forward although both oracles refuse them.
const allowFile = "allow.txt"

// allowList maps a case name and an engine to the reason it is allowed.
type allowList map[string]map[string]string

func loadAllow(path string) (allowList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("allow list: %w", err)
	}
	defer f.Close()
	al := allowList{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("allow list: %s:%d: want CASE ENGINE REASON", path, n)
		}
		var engines []string
		switch f[1] {
		case fastName, stdName:
			engines = []string{f[1]}
		case "both":
			engines = []string{fastName, stdName}
		default:
			return nil, fmt.Errorf("allow list: %s:%d: engine %q is not fast, std or both", path, n, f[1])
		}
		for _, e := range engines {
			if al[f[0]] == nil {
				al[f[0]] = map[string]string{}
			}
			al[f[0]][e] = strings.Join(f[2:], " ")
		}
	}
	return al, sc.Err()
}

func (al allowList) reason(caseName, engine string) (string, bool) {
	r, ok := al[caseName][engine]
	return r, ok
}

// unused lists the entries (case and engine) that no verdict of the run needed.
func (al allowList) unused(verdicts [][]verdict, results []result) []string {
	used := map[string]bool{}
	ran := map[string]bool{}
	for i, r := range results {
		ran[r.c.Name] = true
		for _, v := range verdicts[i] {
			if v.allowed {
				used[r.c.Name+" "+v.engine] = true
			}
		}
	}
	var out []string
	for name, engines := range al {
		for e := range engines {
			if ran[name] && !used[name+" "+e] {
				out = append(out, name+" "+e)
			}
		}
	}
	sort.Strings(out)
	return out
}

// check reports allow-list entries that name no case of the corpus.
func (al allowList) check(cases []testCase) error {
	known := map[string]bool{}
	for _, c := range cases {
		known[c.Name] = true
	}
	var unknown []string
	for name := range al {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("allow list names cases the corpus does not have: %s", strings.Join(unknown, ", "))
	}
	return nil
}
