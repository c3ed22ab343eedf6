package tokenserver

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Where an expiry came from, for logs and readiness answers.
const (
	SourceExpiresKey = "expires-at key"
	SourceJWT        = "JWT exp"
	SourceBoth       = "expires-at key and JWT exp"
)

var (
	// ErrNoExpiry: an opaque token (not a JWT with exp) and no expires-at key. The server never
	// guesses a lifetime, so such a token is not served.
	ErrNoExpiry = errors.New("the token's expiry is unknown")
	// ErrBadExpiry: the expires-at key is not an RFC 3339 time.
	ErrBadExpiry = errors.New("the expires-at key is not an RFC 3339 time")
)

// Bounds of a believable expiry; anything outside is a corrupt value, not a token's life.
var (
	minExpiry = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxExpiry = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Expiry returns when the snapshot's token expires. With both an expires-at key and a JWT exp it
// takes the earlier one: the operator writes the key from the provider's expires_in, which can be
// shorter than exp, and serving the later of two claims would promise life the token may not
// have.
func (s Snapshot) Expiry() (time.Time, string, error) {
	var fromKey time.Time
	if s.HasExpires {
		t, err := time.Parse(time.RFC3339, s.Expires)
		if err != nil || t.Before(minExpiry) || t.After(maxExpiry) {
			return time.Time{}, "", fmt.Errorf("%w (%d bytes)", ErrBadExpiry, len(s.Expires))
		}
		fromKey = t
	}
	fromJWT, jwtOK := jwtExpiry(s.Token)
	switch {
	case s.HasExpires && jwtOK:
		if fromJWT.Before(fromKey) {
			return fromJWT, SourceBoth, nil
		}
		return fromKey, SourceBoth, nil
	case s.HasExpires:
		return fromKey, SourceExpiresKey, nil
	case jwtOK:
		return fromJWT, SourceJWT, nil
	}
	return time.Time{}, "", ErrNoExpiry
}

// jwtExpiry reads the exp claim of a JWS compact token (header.payload.signature) without
// verifying it: the server does not vouch for the token, it only reports when it stops working,
// and a forged exp would only make the workspace refuse the token. Anything that is not such a
// token is opaque (false).
func jwtExpiry(token string) (time.Time, bool) {
	first := strings.IndexByte(token, '.')
	if first <= 0 {
		return time.Time{}, false
	}
	rest := token[first+1:]
	second := strings.IndexByte(rest, '.')
	if second <= 0 || strings.IndexByte(rest[second+1:], '.') >= 0 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(rest[:second], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == "" {
		return time.Time{}, false
	}
	// NumericDate may carry a fraction (RFC 7519 §2); whole seconds are what expires_on carries,
	// and truncating never extends the life.
	sec, err := claims.Exp.Int64()
	if err != nil {
		f, ferr := claims.Exp.Float64()
		if ferr != nil || f < 0 || f > float64(maxExpiry.Unix()) {
			return time.Time{}, false
		}
		sec = int64(f)
	}
	t := time.Unix(sec, 0).UTC()
	if t.Before(minExpiry) || t.After(maxExpiry) {
		return time.Time{}, false
	}
	return t, true
}
