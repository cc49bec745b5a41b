package probe

import (
	"context"
	"net"
	"os"
	"syscall"
	"testing"
)

// TestReasonValuesStable pins the numbers stored in the shared table.
func TestReasonValuesStable(t *testing.T) {
	want := map[Reason]string{
		0: "ok", 1: "connect_refused", 2: "connect_timeout", 3: "connect_error",
		4: "timeout", 5: "early_close", 6: "bad_response", 7: "bad_status",
		8: "body_mismatch", 9: "too_large", 10: "send_error", 11: "internal",
		12: "tls_handshake", 13: "cert_expiring", 14: "unexpected_reply", 15: "server_error",
		16: "auth_failed", 17: "not_serving", 18: "agent_down", 19: "local_error",
	}
	for r, name := range want {
		if r.String() != name {
			t.Errorf("Reason(%d).String() = %q, want %q", r, r.String(), name)
		}
	}
	if len(reasonNames) != len(want) {
		t.Errorf("%d reason names, want %d: append to the test when adding one", len(reasonNames), len(want))
	}
}

func TestReasonRoundTrip(t *testing.T) {
	for i := range 256 {
		r := Reason(i)
		got, ok := ParseReason(r.String())
		if !ok || got != r {
			t.Errorf("ParseReason(%q) = %v, %v", r.String(), got, ok)
		}
	}
	if Reason(200).String() != "reason_200" {
		t.Errorf("unknown reason: %q", Reason(200).String())
	}
	for _, bad := range []string{"", "OK", "Timeout", "reason_", "reason_256", "reason_-1", "reason_01", "reason_+1", "nope"} {
		if r, ok := ParseReason(bad); ok {
			t.Errorf("ParseReason(%q) = %v, true", bad, r)
		}
	}
}

// Out of descriptors on this host is not the server's fault.
func TestDialReasonLocalExhaustion(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS} {
		err := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", errno)}
		if r := dialReason(context.Background(), err); r != LocalError {
			t.Errorf("%v: %v, want local_error", errno, r)
		}
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	if r := dialReason(context.Background(), refused); r != ConnectRefused {
		t.Errorf("refused: %v", r)
	}
}
