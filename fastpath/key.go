package fastpath

import (
	"bytes"
	"unsafe"

	"hcproxy/config"
	"hcproxy/internal/h1"
)

// keyFunc returns the hash balancer's key of a request (see upstream.NewHash): a view into the
// request's buffer, valid while the request head is.
type keyFunc func(cc *clientConn, h *h1.Head) []byte

func newKeyFunc(k config.HashKey) keyFunc {
	switch k.From {
	case config.HashURI:
		return func(_ *clientConn, h *h1.Head) []byte { return h.Target }
	case config.HashHeader:
		name := k.Name
		return func(_ *clientConn, h *h1.Head) []byte { return h.Get(name) }
	case config.HashCookie:
		name := []byte(k.Name)
		return func(_ *clientConn, h *h1.Head) []byte { return cookie(h, name) }
	}
	return func(cc *clientConn, _ *h1.Head) []byte { return cc.ip }
}

// cookie returns the value of the cookie name in the request's Cookie headers, as net/http's
// Request.Cookie finds it (quotes removed), nil when it has none.
func cookie(h *h1.Head, name []byte) []byte {
	for i := range h.Fields {
		if !h1.EqualFold(h.Fields[i].Name, "cookie") {
			continue
		}
		v := h.Fields[i].Value
		for len(v) > 0 {
			var part []byte
			if j := bytes.IndexByte(v, ';'); j >= 0 {
				part, v = v[:j], v[j+1:]
			} else {
				part, v = v, nil
			}
			part = h1.TrimOWS(part)
			eq := bytes.IndexByte(part, '=')
			if eq < 0 || !bytes.Equal(part[:eq], name) {
				continue
			}
			val := part[eq+1:]
			if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			return val
		}
	}
	return nil
}

// unsafeString views b as a string without copying; the string must not outlive b's contents
// (upstream.Pool.PickKey does not retain its key).
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
