package probe

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
)

// pgMD5 is PostgreSQL's md5 password response:
// "md5" + md5hex(md5hex(password + user) + salt).
func pgMD5(user, password string, salt []byte) string {
	inner := md5.Sum([]byte(password + user))
	h := md5.New()
	h.Write([]byte(hex.EncodeToString(inner[:])))
	h.Write(salt)
	return "md5" + hex.EncodeToString(h.Sum(nil))
}

// scramClient is the client side of SCRAM-SHA-256 (RFC 7677) as PostgreSQL
// uses it: no channel binding, the user name taken from the startup message.
type scramClient struct {
	password    string
	clientNonce string
	firstBare   string
	authMessage string
	salted      []byte
}

func newSCRAM(password string) *scramClient {
	return &scramClient{password: password, clientNonce: rand.Text()}
}

// first returns the client-first-message.
func (c *scramClient) first() []byte {
	c.firstBare = "n=,r=" + c.clientNonce
	return []byte("n,," + c.firstBare)
}

// final answers the server-first-message with the client-final-message.
func (c *scramClient) final(serverFirst []byte, maxIter int) ([]byte, error) {
	var nonce, salt64, iters string
	for attr := range strings.SplitSeq(string(serverFirst), ",") {
		k, v, _ := strings.Cut(attr, "=")
		switch k {
		case "r":
			nonce = v
		case "s":
			salt64 = v
		case "i":
			iters = v
		}
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	iter, ierr := strconv.Atoi(iters)
	switch {
	case !strings.HasPrefix(nonce, c.clientNonce) || len(nonce) == len(c.clientNonce):
		return nil, protoError("SCRAM server nonce does not extend ours")
	case err != nil || len(salt) == 0:
		return nil, protoError("SCRAM salt is not base64")
	case ierr != nil || iter < 1 || iter > maxIter:
		return nil, protoError("SCRAM iteration count %q out of range", truncate(iters, 12))
	}
	c.salted, err = pbkdf2.Key(sha256.New, c.password, salt, iter, sha256.Size)
	if err != nil {
		return nil, err
	}
	withoutProof := "c=biws,r=" + nonce
	c.authMessage = c.firstBare + "," + string(serverFirst) + "," + withoutProof
	clientKey := hmacSHA256(c.salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	sig := hmacSHA256(stored[:], c.authMessage)
	for i := range clientKey {
		clientKey[i] ^= sig[i]
	}
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(clientKey)), nil
}

// verify checks the server-final-message's signature.
func (c *scramClient) verify(serverFinal []byte) bool {
	if c.salted == nil {
		return false
	}
	v, ok := bytes.CutPrefix(bytes.TrimSpace(serverFinal), []byte("v="))
	if !ok {
		return false
	}
	got, err := base64.StdEncoding.DecodeString(string(v))
	if err != nil {
		return false
	}
	want := hmacSHA256(hmacSHA256(c.salted, "Server Key"), c.authMessage)
	return hmac.Equal(got, want)
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}
