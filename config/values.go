package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// canonAddr checks a host:port address and returns it in canonical form:
// an IP literal as net/netip prints it, a DNS name in lower case, the port
// in decimal. The host may be empty (all addresses) only when emptyHost is
// set, as for listeners.
func canonAddr(s string, emptyHost bool) (string, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf(`must be "host:port" (got %q)`, s)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return "", fmt.Errorf("%v (got %q)", err, s)
	}
	if host == "" {
		if !emptyHost {
			return "", fmt.Errorf("host must not be empty (got %q)", s)
		}
		return ":" + strconv.Itoa(int(port)), nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip, port).String(), nil
	}
	if !validName(host) {
		return "", fmt.Errorf("host must be an IP address or a DNS name (got %q)", s)
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.Itoa(int(port))), nil
}

// parsePort parses a decimal port number, 1..65535.
func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("port must be a number 1..65535")
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port must be a number 1..65535")
	}
	return uint16(n), nil
}

// validName reports whether s is a DNS name: dot-separated labels of
// letters, digits, '-' and '_', not starting or ending with '-', and not
// all digits in the last label (that would be a mistyped IP address).
func validName(s string) bool {
	if len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// sizeUnits are the units parseSize accepts, matched without regard to case.
var sizeUnits = []struct {
	name string
	mult int64
}{
	{"", 1}, {"b", 1},
	{"k", 1000}, {"kb", 1000}, {"kib", 1 << 10},
	{"m", 1000 * 1000}, {"mb", 1000 * 1000}, {"mib", 1 << 20},
	{"g", 1000 * 1000 * 1000}, {"gb", 1000 * 1000 * 1000}, {"gib", 1 << 30},
}

// parseSize parses a size such as "512B", "16KiB" or "1MB" (KB and MB are
// powers of 1000, KiB and MiB of 1024) into bytes.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	bad := fmt.Errorf(`invalid size %q: use a string like "512B", "16KiB" or "1MB", or an integer number of bytes`, s)
	if num == "" {
		return 0, bad
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, bad
	}
	for _, u := range sizeUnits {
		if u.name == unit {
			if n > math.MaxInt64/u.mult {
				return 0, fmt.Errorf("size %q is too large", s)
			}
			return n * u.mult, nil
		}
	}
	return 0, bad
}

// formatSize prints a byte count the way a user would write it.
func formatSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// checkStatus checks one expect_status item: a code "100".."599" or a
// class "1xx".."5xx".
func checkStatus(s string) error {
	if len(s) == 3 && s[0] >= '1' && s[0] <= '5' {
		if s[1:] == "xx" {
			return nil
		}
		if s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9' {
			return nil
		}
	}
	return fmt.Errorf(`must be a status code 100..599 like "200" or a class "1xx".."5xx" (got %q)`, s)
}

// quoteDur formats d for "(got ...)" in messages.
func quoteDur(d time.Duration) string { return strconv.Quote(d.String()) }

// parsePrefixes parses CIDR prefixes; a bare address is a single-address prefix.
func parsePrefixes(items []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(items))
	for i, it := range items {
		if p, err := netip.ParsePrefix(it); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(it)
		if err != nil {
			return nil, fmt.Errorf("item %d: %q is not a CIDR prefix or an address", i, it)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
