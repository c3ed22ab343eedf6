package idp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// keySet is a parsed JSON Web Key Set (RFC 7517): the public keys a federated token's signature
// is checked against. Only what issuers of ServiceAccount and workload tokens publish is
// understood: RSA keys and EC keys on P-256, P-384 and P-521.
type keySet struct {
	keys []publicKey
}

type publicKey struct {
	kid string
	key crypto.PublicKey
}

// jsonWebKey is one key of a JWKS, as Kubernetes' /openid/v1/jwks and most issuers publish it.
type jsonWebKey struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS parses a JWKS document. Keys whose use is not "sig" (when set) or whose type is not
// understood are skipped; a set without any usable key is an error.
func parseJWKS(doc []byte) (*keySet, error) {
	var set struct {
		Keys []jsonWebKey `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, fmt.Errorf("idp: JWKS is not JSON: %w", err)
	}
	ks := &keySet{}
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("idp: JWKS key %q: %w", k.Kid, err)
		}
		if pub != nil {
			ks.keys = append(ks.keys, publicKey{kid: k.Kid, key: pub})
		}
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("idp: JWKS has no usable signing key")
	}
	return ks, nil
}

func (k jsonWebKey) publicKey() (crypto.PublicKey, error) {
	switch k.Kty {
	case "RSA":
		n, err := b64Int(k.N)
		if err != nil {
			return nil, fmt.Errorf("n: %w", err)
		}
		e, err := b64Int(k.E)
		if err != nil || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return nil, errors.New("bad exponent")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		x, err := b64Int(k.X)
		if err != nil {
			return nil, fmt.Errorf("x: %w", err)
		}
		y, err := b64Int(k.Y)
		if err != nil {
			return nil, fmt.Errorf("y: %w", err)
		}
		// Checked through crypto/ecdh, which refuses points not on the curve.
		pub := &ecdsa.PublicKey{Curve: curve, X: x, Y: y}
		if _, err := pub.ECDH(); err != nil {
			return nil, errors.New("point is not on the curve")
		}
		return pub, nil
	}
	return nil, nil
}

func b64Int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(b) == 0 {
		return nil, errors.New("not base64url")
	}
	return new(big.Int).SetBytes(b), nil
}

// verificationKeys returns the keys a token with this kid may be signed with: the key with that
// kid, or every key when the token names none.
func (ks *keySet) verificationKeys(kid string) jwt.VerificationKeySet {
	var out jwt.VerificationKeySet
	for _, k := range ks.keys {
		if kid == "" || k.kid == kid {
			out.Keys = append(out.Keys, k.key)
		}
	}
	return out
}

// Verdicts of a JWT check, which each provider words in its own error.
var (
	errJWTMalformed = errors.New("malformed")
	errJWTSignature = errors.New("signature")
	errJWTTime      = errors.New("time")
)

// verifyJWT checks a JWT's signature against keys (one of algs), and that it is within its
// validity period per now: exp required and in the future, nbf (if present) not in the future.
// It returns the claims; checking issuer, audience and subject is up to the caller, so that each
// mismatch gets its provider's own error.
func verifyJWT(raw string, keys func(header map[string]any) (any, error), algs []string, now func() time.Time) (jwt.MapClaims, error) {
	parser := jwt.NewParser(jwt.WithValidMethods(algs), jwt.WithTimeFunc(now), jwt.WithExpirationRequired())
	mc := jwt.MapClaims{}
	_, err := parser.ParseWithClaims(raw, mc, func(t *jwt.Token) (any, error) { return keys(t.Header) })
	switch {
	case err == nil:
		return mc, nil
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, errJWTMalformed
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return mc, errJWTTime
	default:
		return nil, errJWTSignature
	}
}

// peekJWT decodes a JWT without verifying it: what the token claims to be, to record and to pick
// the policy or credential that verifies it.
func peekJWT(raw string) (header map[string]any, claims jwt.MapClaims, ok bool) {
	claims = jwt.MapClaims{}
	t, _, err := jwt.NewParser().ParseUnverified(raw, claims)
	if err != nil {
		return nil, nil, false
	}
	return t.Header, claims, true
}

// claimString returns a string claim, "" when absent or not a string.
func claimString(c jwt.MapClaims, name string) string {
	s, _ := c[name].(string)
	return s
}

// claimAudience returns the aud claim, a string or an array of strings.
func claimAudience(c jwt.MapClaims) []string {
	aud, err := c.GetAudience()
	if err != nil {
		return nil
	}
	return aud
}

// claimTime returns a NumericDate claim, zero when absent.
func claimTime(c jwt.MapClaims, name string) time.Time {
	var d *jwt.NumericDate
	var err error
	switch name {
	case "exp":
		d, err = c.GetExpirationTime()
	case "nbf":
		d, err = c.GetNotBefore()
	case "iat":
		d, err = c.GetIssuedAt()
	}
	if err != nil || d == nil {
		return time.Time{}
	}
	return d.Time
}
