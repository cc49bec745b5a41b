package config

import (
	"encoding/binary"
	"hash/fnv"
	"regexp"
	"slices"
	"strconv"
)

// BodyRegexp returns the compiled ExpectBodyRegex, or nil when it is not
// set. A Check from Load, Parse or Unmarshal holds it compiled; for one
// built by hand it is compiled on every call (nil when it does not compile).
func (c *Check) BodyRegexp() *regexp.Regexp {
	if c.re != nil || c.ExpectBodyRegex == "" {
		return c.re
	}
	re, err := regexp.Compile(c.ExpectBodyRegex)
	if err != nil {
		return nil
	}
	return re
}

// StatusOK reports whether the status code matches an item of
// ExpectStatus: a code ("200") or a class ("2xx"). It does not allocate.
func (c *Check) StatusOK(code int) bool {
	if code < 100 || code > 599 {
		return false
	}
	for _, s := range c.ExpectStatus {
		if len(s) != 3 || s[0] != byte('0'+code/100) {
			continue
		}
		if s[1:] == "xx" || (s[1] == byte('0'+code/10%10) && s[2] == byte('0'+code%10)) {
			return true
		}
	}
	return false
}

// keyVersion starts the hashed encoding; change it only together with the
// encoding, which changes every key (and so drops all health state on the
// reload that deploys it).
const keyVersion = "hcproxy.check.v1"

// Key returns a 64-bit FNV-1a hash of everything that defines what the
// probe does and how its result is judged: Type, Timeout, Port, URI, Host,
// Send, ExpectStatus (as a set), ExpectBody, ExpectBodyRegex, MaxResponse
// and, when any is set, the CheckOptions (keyOptions). Interval, Rise,
// Fall, Initial, DownInterval, FastInterval and KeepAlive are left out, so changing
// them on reload keeps a server's state. The value is stable across
// processes and builds: each field is hashed in this order, strings and
// lists prefixed with their length, numbers as 8 little-endian bytes.
func (c *Check) Key() uint64 {
	h := fnv.New64a()
	var buf [8]byte
	num := func(n int64) {
		binary.LittleEndian.PutUint64(buf[:], uint64(n))
		h.Write(buf[:])
	}
	str := func(s string) {
		num(int64(len(s)))
		h.Write([]byte(s))
	}
	str(keyVersion)
	str(c.Type)
	num(int64(c.Timeout))
	num(int64(c.Port))
	str(c.URI)
	str(c.Host)
	str(c.Send)
	status := slices.Clone(c.ExpectStatus)
	slices.Sort(status)
	num(int64(len(status)))
	for _, s := range status {
		str(s)
	}
	str(c.ExpectBody)
	str(c.ExpectBodyRegex)
	num(c.MaxResponse)
	c.keyOptions(num, str)
	return h.Sum64()
}

func itoa(n int) string { return strconv.Itoa(n) }
