package probe

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// smtpPeer is a small SMTP server written for the test (Debian's MTAs are
// heavy to run as a child): banner, EHLO with a multi-line 250, QUIT.
func smtpPeer(banner string) func(net.Conn, <-chan struct{}) {
	return func(c net.Conn, _ <-chan struct{}) {
		c.Write([]byte(banner))
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
			case strings.HasPrefix(cmd, "EHLO "):
				c.Write([]byte("250-mail.test greets " + cmd[5:] + "\r\n250-PIPELINING\r\n250 8BITMIME\r\n"))
			case cmd == "QUIT":
				c.Write([]byte("221 bye\r\n"))
				return
			default:
				c.Write([]byte("502 not implemented\r\n"))
			}
		}
	}
}

func TestSMTP(t *testing.T) {
	tests := []struct {
		name       string
		handler    func(net.Conn, <-chan struct{})
		opt        SMTPOptions
		want       Reason
		wantDetail string
	}{
		{"banner", smtpPeer("220 mail.test ESMTP\r\n"), SMTPOptions{}, OK, ""},
		{"multi-line banner and EHLO", smtpPeer("220-mail.test ESMTP\r\n220 ready\r\n"), SMTPOptions{EHLO: "hcproxy.test"}, OK, ""},
		{"busy", smtpPeer("421 mail.test too busy\r\n"), SMTPOptions{}, ServerError, "421 mail.test too busy"},
		{"EHLO refused", func(c net.Conn, _ <-chan struct{}) {
			c.Write([]byte("220 hi\r\n"))
			bufio.NewReader(c).ReadString('\n')
			c.Write([]byte("550 go away\r\n"))
			drain(c)
		}, SMTPOptions{EHLO: "x"}, ServerError, "EHLO reply: 550 go away"},
		{"not SMTP", replyWith("+PONG\r\n"), SMTPOptions{}, BadResponse, "not an SMTP reply line"},
		{"unexpected code", replyWith("250 hello?\r\n"), SMTPOptions{}, Unexpected, "want 220"},
		{"code changes mid-reply", replyWith("220-a\r\n250 b\r\n"), SMTPOptions{}, BadResponse, "reply code changed"},
		{"half banner", func(c net.Conn, _ <-chan struct{}) { c.Write([]byte("220 mail")) }, SMTPOptions{}, EarlyClose, "banner"},
		{"stall", stall, SMTPOptions{}, Timeout, "banner"},
		{"endless continuation", func(c net.Conn, done <-chan struct{}) { writeForever(c, done, "220-more\r\n") }, SMTPOptions{MaxResponse: 200}, TooLarge, "more than 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := tt.opt
			got := probeCtx(t, NewSMTP(opt), serveConns(t, tt.handler), 300*time.Millisecond)
			checkResult(t, got, tt.want, 0, tt.wantDetail)
		})
	}
}
