package conformance

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// got builds an outcome whose recorder received the requests in raw (split as a recorder
// splits them), or nothing when raw is "".
func got(raw string, serials ...int) *outcome {
	o := &outcome{}
	for _, m := range readMessages([]byte(raw)) {
		o.reqs = append(o.reqs, upstreamRequest{msg: m, began: "c", ended: "c", partial: !m.complete})
	}
	o.ans.serials = serials
	return o
}

func refused() *outcome { return &outcome{ans: answer{statuses: []int{400}, eof: true}} }

// The judge fails an engine for each rule of the issue and only for those; these pin each rule
// on a made-up run, so that a change to the judge cannot quietly turn one off.
func TestJudgeRules(t *testing.T) {
	const smuggled = "GET /SMUGGLED HTTP/1.1\r\nHost: t\r\n\r\n"
	hop := "POST /hop HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\nContent-Length: 35\r\n\r\n" + smuggled
	forwardedHop := "POST /hop HTTP/1.1\r\nHost: t\r\nContent-Length: 35\r\n\r\n" + smuggled
	for _, tc := range []struct {
		name, sent   string
		fast, ng, hp *outcome
		allow        allowList
		want         string // a failure of the fast engine must hold this ("" for none)
	}{
		{"same as the oracles", hop, got(forwardedHop), got(forwardedHop), got(forwardedHop), nil, ""},
		{"refused where the oracles forward", hop, refused(), got(forwardedHop), got(forwardedHop), nil, ""},
		{"one request became two", hop, got("POST /hop HTTP/1.1\r\nHost: t\r\n\r\n" + smuggled), got(forwardedHop), got(forwardedHop), nil, "one request became 2"},
		{"body dropped", hop, got("POST /hop HTTP/1.1\r\nHost: t\r\n\r\n"), got(forwardedHop), got(forwardedHop), nil, "a body of 0 bytes where the client's framing says 35"},
		{"body cut short", hop, got("POST /hop HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nGET /"), got(forwardedHop), got(forwardedHop), nil, "a body of 5 bytes"},
		{"Host dropped", "GET / HTTP/1.1\r\nHost: t\r\nConnection: Host\r\n\r\n", got("GET / HTTP/1.1\r\n\r\n"), got("GET / HTTP/1.1\r\nHost: t\r\n\r\n"), got("GET / HTTP/1.1\r\nHost: t\r\n\r\n"), nil, "0 Host fields"},
		{"forwarded where both refuse", "GET rl HTTP/1.1\r\nHost: t\r\n\r\n", got("GET rl HTTP/1.1\r\nHost: t\r\n\r\n"), refused(), refused(), nil, "forwards a request both nginx and HAProxy refuse"},
		{"allowed", "GET rl HTTP/1.1\r\nHost: t\r\n\r\n", got("GET rl HTTP/1.1\r\nHost: t\r\n\r\n"), refused(), refused(), allowList{"c": {fastName: "a reason"}}, ""},
		{"head sent then abandoned", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", got("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n"), refused(), refused(), nil, "then abandons it"},
		{"unclear framing, more requests than any oracle", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +35\r\n\r\n" + smuggled, got("POST / HTTP/1.1\r\nHost: t\r\n\r\n" + smuggled), got("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 35\r\n\r\n" + smuggled), refused(), nil, "one request became 2"},
		{"unclear framing, as an oracle", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +35\r\n\r\n" + smuggled, got("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 35\r\n\r\n" + smuggled), got("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 35\r\n\r\n" + smuggled), refused(), nil, ""},
		{"pipelined requests are not one become two", "GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n", got("GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n"), got("GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n"), got("GET /1 HTTP/1.1\r\nHost: t\r\n\r\n"), nil, ""},
		{"unframable bytes", "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &outcome{garbage: []garbage{{why: "chunk size is not hexadecimal", bytes: []byte("x")}}}, got("GET / HTTP/1.1\r\nHost: t\r\n\r\n"), got("GET / HTTP/1.1\r\nHost: t\r\n\r\n"), nil, "cannot frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := result{c: testCase{Name: "c", Raw: []byte(tc.sent)}, ref: readMessages([]byte(tc.sent)), out: map[string]*outcome{
				fastName: tc.fast, stdName: refused(), nginxName: tc.ng, haproxyName: tc.hp,
			}}
			v := judge(r, fastName, tc.allow)
			all := strings.Join(v.failures, "\n")
			if tc.want == "" && all != "" || !strings.Contains(all, tc.want) {
				t.Errorf("failures:\n%s\nwant one holding %q", all, tc.want)
			}
		})
	}
}

// A response that reaches the wrong client fails the case whose request it answered, and so
// does a request that goes on arriving after its case ended.
func TestJudgeChargesTheCaseThatCausedIt(t *testing.T) {
	book := newSerialBook()
	victim := book.issue("victim", fastName) // answered the victim's own request
	smuggler := book.issue("smuggler", fastName)
	plain := "GET / HTTP/1.1\r\nHost: t\r\n\r\n"
	mk := func(name string, fast *outcome) result {
		return result{c: testCase{Name: name, Raw: []byte(plain)}, ref: readMessages([]byte(plain)), out: map[string]*outcome{
			fastName: fast, stdName: got(plain), nginxName: got(plain), haproxyName: got(plain),
		}}
	}
	v := got(plain, smuggler) // the victim's client got the smuggled request's response
	v.reqs[0].serial = victim
	v.late = []upstreamRequest{{msg: readMessages([]byte(plain))[0], began: "smuggler"}}
	s := got(plain)
	s.reqs[0].serial = smuggler
	verdicts := judgeAll([]result{mk("smuggler", s), mk("victim", v)}, book, nil)
	smugglerFails := strings.Join(verdicts[0][0].failures, "\n")
	if !strings.Contains(smugglerFails, `the client of case victim got the response to a request of case "smuggler"`) ||
		!strings.Contains(smugglerFails, "after that case had ended") {
		t.Errorf("the smuggling case's failures:\n%s", smugglerFails)
	}
	if f := verdicts[1][0].failures; len(f) != 0 {
		t.Errorf("the victim case is charged: %q", f)
	}
}

// A recorder splits what it receives into requests by their framing, answers each with its own
// serial, answers 100 Continue to an expectation, counts a request cut off as unfinished, and
// calls what it cannot frame garbage.
func TestRecorder(t *testing.T) {
	book := newSerialBook()
	r, err := startRecorder("p", 0, book)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	send := func(raw string, want int) string {
		c, err := net.Dial("tcp", r.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte(raw)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		var out strings.Builder
		for i := 0; i < want; i++ {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("after %q: %v", out.String(), err)
			}
			out.WriteString(line)
		}
		return out.String()
	}

	r.begin("two")
	out := send("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n", 12)
	if n := strings.Count(out, "HTTP/1.1 200 OK"); n != 2 {
		t.Errorf("%d responses to two requests: %q", n, out)
	}
	reqs, junk := r.finish()
	if len(reqs) != 2 || len(junk) != 0 || string(reqs[0].msg.body) != "abc" || string(reqs[1].msg.body) != "de" ||
		reqs[0].serial == reqs[1].serial || reqs[0].began != "two" {
		t.Errorf("got %+v, garbage %+v", reqs, junk)
	}
	if e, ok := book.lookup(reqs[1].serial); !ok || e.caseName != "two" || e.proxy != "p" {
		t.Errorf("serial %d: %+v %v", reqs[1].serial, e, ok)
	}

	r.begin("expect")
	if out := send("PUT / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", 1); out != "HTTP/1.1 100 Continue\r\n" {
		t.Errorf("got %q, want a 100 Continue", out)
	}
	reqs, _ = r.finish()
	if len(reqs) != 1 || !reqs[0].partial || reqs[0].msg.method != "PUT" {
		t.Errorf("an unfinished request: got %+v", reqs)
	}

	r.begin("garbage")
	if out := send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 1); !strings.HasPrefix(out, "HTTP/1.1 400") {
		t.Errorf("got %q, want a 400", out)
	}
	reqs, junk = r.finish()
	if len(reqs) != 0 || len(junk) != 1 || junk[0].why != "whitespace after the chunk size" {
		t.Errorf("got %+v, garbage %+v", reqs, junk)
	}
}
