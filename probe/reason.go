package probe

import (
	"strconv"
	"strings"
)

// Reason is why a check failed. It is a small fixed set shared by every check
// type. Values are stored in the shared-memory table, so they are stable
// numbers: never renumber, only append.
type Reason uint8

// The reasons, in wire order. OK is the zero value.
const (
	OK             Reason = 0  // "ok": the check passed
	ConnectRefused Reason = 1  // "connect_refused": the peer refused the connection
	ConnectTimeout Reason = 2  // "connect_timeout": the dial did not finish in time
	ConnectError   Reason = 3  // "connect_error": other dial failure (unreachable, bad address...)
	Timeout        Reason = 4  // "timeout": connected, but no complete response in time
	EarlyClose     Reason = 5  // "early_close": peer closed or reset before a complete response
	BadResponse    Reason = 6  // "bad_response": not HTTP (bad status line, bad headers, bad chunk framing)
	BadStatus      Reason = 7  // "bad_status": status not in expect_status
	BodyMismatch   Reason = 8  // "body_mismatch": expect_body / expect_body_regex not found
	TooLarge       Reason = 9  // "too_large": response exceeded max_response
	SendError      Reason = 10 // "send_error": writing the request failed
	Internal       Reason = 11 // "internal": a bug or a panic in a probe
	TLSHandshake   Reason = 12 // "tls_handshake": the TLS handshake failed (not TLS, bad certificate, no common version)
	CertExpiring   Reason = 13 // "cert_expiring": the certificate expires within cert_min_days (or has expired)
	Unexpected     Reason = 14 // "unexpected_reply": a well-formed reply that is not the expected one (tcp sequence, redis role)
	ServerError    Reason = 15 // "server_error": the server answered with an error (redis -ERR, mysql/postgres error, smtp 4xx/5xx)
	AuthFailed     Reason = 16 // "auth_failed": the server rejected the configured credentials
	NotServing     Reason = 17 // "not_serving": gRPC health status other than SERVING (the status is in the detail)
	AgentDown      Reason = 18 // "agent_down": the agent reported down, failed or stopped
	// LocalError means this host could not run the check (out of file descriptors, buffers or
	// memory). It says nothing about the server, so the scheduler does not record it as a
	// failure: a proxy under fd exhaustion must not mark healthy servers down.
	LocalError Reason = 19 // "local_error"
)

// reasonNames is indexed by Reason; append only.
var reasonNames = [...]string{
	OK:             "ok",
	ConnectRefused: "connect_refused",
	ConnectTimeout: "connect_timeout",
	ConnectError:   "connect_error",
	Timeout:        "timeout",
	EarlyClose:     "early_close",
	BadResponse:    "bad_response",
	BadStatus:      "bad_status",
	BodyMismatch:   "body_mismatch",
	TooLarge:       "too_large",
	SendError:      "send_error",
	Internal:       "internal",
	TLSHandshake:   "tls_handshake",
	CertExpiring:   "cert_expiring",
	Unexpected:     "unexpected_reply",
	ServerError:    "server_error",
	AuthFailed:     "auth_failed",
	NotServing:     "not_serving",
	AgentDown:      "agent_down",
	LocalError:     "local_error",
}

// String returns the snake_case name of r, or "reason_N" for a value this
// build does not know (for example one written by a newer binary).
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "reason_" + strconv.Itoa(int(r))
}

// ParseReason is the inverse of Reason.String. It accepts the snake_case
// names and the "reason_N" form for any N in 0..255.
func ParseReason(s string) (Reason, bool) {
	for i, name := range reasonNames {
		if s == name {
			return Reason(i), true
		}
	}
	if num, ok := strings.CutPrefix(s, "reason_"); ok && num != "" && (len(num) == 1 || num[0] != '0') {
		n, err := strconv.ParseUint(num, 10, 8)
		if err == nil {
			return Reason(n), true
		}
	}
	return 0, false
}
