package upstream

import (
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// AccessLog writes one line per request, in nginx's combined format followed by the upstream's
// address, status and time and the request id, or as one JSON object. Each line is one Write, so
// a reopenable file (USR1) never sees half a line.
type AccessLog struct {
	w    io.Writer
	json bool
	bufs sync.Pool
}

// NewAccessLog returns an access log writing format ("combined" or "json") to w.
func NewAccessLog(format string, w io.Writer) *AccessLog {
	return &AccessLog{w: w, json: format == "json", bufs: sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}}
}

// Entry is one request as the access log records it.
type Entry struct {
	Time         time.Time // when the request arrived
	RemoteAddr   string
	Method, URI  string
	Proto        string
	Status       int
	Bytes        int64
	Referer      string
	UserAgent    string
	Upstream     string // address of the last server tried, "" if none
	UpstreamTime time.Duration
	Tries        int
	RequestID    string
}

// Log writes e.
func (l *AccessLog) Log(e *Entry) {
	bp := l.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	if l.json {
		b = l.appendJSON(b, e)
	} else {
		b = l.appendCombined(b, e)
	}
	b = append(b, '\n')
	l.w.Write(b)
	*bp = b
	l.bufs.Put(bp)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (l *AccessLog) appendCombined(b []byte, e *Entry) []byte {
	host := e.RemoteAddr
	if i := lastColon(host); i > 0 {
		host = host[:i]
	}
	b = append(b, host...)
	b = append(b, " - - ["...)
	b = e.Time.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = appendEscaped(b, e.Method+" "+e.URI+" "+e.Proto)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, " \""...)
	b = appendEscaped(b, dash(e.Referer))
	b = append(b, "\" \""...)
	b = appendEscaped(b, dash(e.UserAgent))
	b = append(b, "\" upstream="...)
	b = append(b, dash(e.Upstream)...)
	b = append(b, " tries="...)
	b = strconv.AppendInt(b, int64(e.Tries), 10)
	b = append(b, " urt="...)
	b = strconv.AppendFloat(b, e.UpstreamTime.Seconds(), 'f', 3, 64)
	b = append(b, " rt="...)
	b = strconv.AppendFloat(b, time.Since(e.Time).Seconds(), 'f', 3, 64)
	b = append(b, " rid="...)
	return append(b, dash(e.RequestID)...)
}

func (l *AccessLog) appendJSON(b []byte, e *Entry) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","remote_addr":`...)
	b = strconv.AppendQuote(b, e.RemoteAddr)
	b = append(b, `,"method":`...)
	b = strconv.AppendQuote(b, e.Method)
	b = append(b, `,"uri":`...)
	b = strconv.AppendQuote(b, e.URI)
	b = append(b, `,"proto":`...)
	b = strconv.AppendQuote(b, e.Proto)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, `,"referer":`...)
	b = strconv.AppendQuote(b, e.Referer)
	b = append(b, `,"user_agent":`...)
	b = strconv.AppendQuote(b, e.UserAgent)
	b = append(b, `,"upstream":`...)
	b = strconv.AppendQuote(b, e.Upstream)
	b = append(b, `,"tries":`...)
	b = strconv.AppendInt(b, int64(e.Tries), 10)
	b = append(b, `,"upstream_time":`...)
	b = strconv.AppendFloat(b, e.UpstreamTime.Seconds(), 'f', 6, 64)
	b = append(b, `,"request_time":`...)
	b = strconv.AppendFloat(b, time.Since(e.Time).Seconds(), 'f', 6, 64)
	b = append(b, `,"request_id":`...)
	b = strconv.AppendQuote(b, e.RequestID)
	return append(b, '}')
}

func lastColon(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return i
		}
		if s[i] == ']' {
			return -1
		}
	}
	return -1
}

// appendEscaped writes s with quotes, backslashes, control bytes and invalid UTF-8 escaped as
// \xHH (nginx's escaping), so a client cannot forge log lines.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			b = append(b, c)
			i++
			continue
		}
		if c >= 0x80 {
			if r, n := utf8.DecodeRuneInString(s[i:]); r != utf8.RuneError {
				b = append(b, s[i:i+n]...)
				i += n
				continue
			}
		}
		b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
		i++
	}
	return b
}
