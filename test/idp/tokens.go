package idp

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // x5t is defined as a SHA-1 thumbprint (RFC 7517 §4.8)
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AzureDatabricksResourceID is the application ID of the first-party "AzureDatabricks" resource
// in every Entra tenant: the audience of tokens that Azure Databricks accepts.
const AzureDatabricksResourceID = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"

// ErrTokenExpired is returned (wrapped) by ValidateToken for a token whose exp has passed.
var ErrTokenExpired = jwt.ErrTokenExpired

// Claims are the claims of an access token issued by the server, normalised across the two
// token formats (Databricks: scope/client_id/jti; Entra v1: appid/tid/uti, no scope claim).
type Claims struct {
	Subject   string
	Audience  string
	Issuer    string
	Scope     string // Databricks "scope" (or "scp" if present); empty for Entra app-only tokens
	TenantID  string // Entra "tid"
	ClientID  string // Databricks "client_id" or Entra "appid"
	IssuedAt  time.Time
	ExpiresAt time.Time
	ID        string // "jti" (Databricks) or "uti" (Entra)
}

// signer holds the RS256 key. Entra publishes its signing keys as certificates and uses the
// certificate's SHA-1 thumbprint as both kid and x5t; the fake does the same with a self-signed
// certificate so the JWKS looks like Entra's and validators that read x5c work.
type signer struct {
	key  *rsa.PrivateKey
	kid  string
	cert []byte // DER
	jwks []byte
}

func newSigner() (*signer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("idp: generate signing key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: "databricks-token-operator test IdP token signing"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("idp: create signing certificate: %w", err)
	}
	sum := sha1.Sum(der) //nolint:gosec // see import
	sg := &signer{key: key, kid: base64.RawURLEncoding.EncodeToString(sum[:]), cert: der}
	sg.jwks, err = json.Marshal(map[string]any{"keys": []jwk{{
		Kty: "RSA",
		Use: "sig",
		Kid: sg.kid,
		X5t: sg.kid,
		N:   base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		E:   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
		X5c: []string{base64.StdEncoding.EncodeToString(der)},
		Alg: "RS256",
	}}})
	if err != nil {
		return nil, err
	}
	return sg, nil
}

type jwk struct {
	Kty string   `json:"kty"`
	Use string   `json:"use"`
	Kid string   `json:"kid"`
	X5t string   `json:"x5t"`
	N   string   `json:"n"`
	E   string   `json:"e"`
	X5c []string `json:"x5c"`
	Alg string   `json:"alg"`
}

// JWKS returns the public signing key as a JSON Web Key Set, as served at /oidc/v1/keys,
// /oidc/jwks.json and /{tenant}/discovery/v2.0/keys.
func (s *Server) JWKS() []byte { return append([]byte(nil), s.signer.jwks...) }

// sign produces header.payload.signature. Headers and claims are encoded from structs rather
// than maps so their field order matches the real providers' tokens (Entra tokens famously start
// with eyJ0eXAiOiJKV1Qi, i.e. {"typ":"JWT", ...}).
func (sg *signer) sign(header, claims any) (string, error) {
	h, err := marshalJSON(header)
	if err != nil {
		return "", err
	}
	c, err := marshalJSON(claims)
	if err != nil {
		return "", err
	}
	signingString := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	sig, err := jwt.SigningMethodRS256.Sign(signingString, sg.key)
	if err != nil {
		return "", err
	}
	return signingString + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// Databricks access tokens: {"kid":...,"typ":"at+jwt","alg":"RS256"} (they start with eyJraWQi).
type databricksHeader struct {
	Kid string `json:"kid"`
	Typ string `json:"typ"`
	Alg string `json:"alg"`
}

type databricksClaims struct {
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	Issuer   string `json:"iss"`
	Audience string `json:"aud"`
	Subject  string `json:"sub"`
	IssuedAt int64  `json:"iat"`
	NotBef   int64  `json:"nbf"`
	Expiry   int64  `json:"exp"`
	JTI      string `json:"jti"`
}

// Entra access tokens for the AzureDatabricks resource are v1.0 tokens (the resource does not
// ask for v2), hence the sts.windows.net issuer, appid and ver "1.0" even though they come from
// the v2.0 endpoint. App-only tokens carry no scp claim.
type entraHeader struct {
	Typ string `json:"typ"`
	Alg string `json:"alg"`
	X5t string `json:"x5t"`
	Kid string `json:"kid"`
}

type entraClaims struct {
	Audience string `json:"aud"`
	Issuer   string `json:"iss"`
	IssuedAt int64  `json:"iat"`
	NotBef   int64  `json:"nbf"`
	Expiry   int64  `json:"exp"`
	AIO      string `json:"aio"`
	AppID    string `json:"appid"`
	AppIDACR string `json:"appidacr"` // "1": authenticated with a client secret; "2": a certificate or client assertion
	IDP      string `json:"idp"`
	IDTyp    string `json:"idtyp"`
	OID      string `json:"oid"`
	RH       string `json:"rh"`
	// Real Entra sets sub to the service principal's object ID (= oid). The fake uses the client
	// ID, which is what a fake workspace wants to map to an identity; oid is still there.
	Subject  string `json:"sub"`
	TenantID string `json:"tid"`
	UTI      string `json:"uti"`
	Ver      string `json:"ver"`
}

// tokenTimes computes iat (whole seconds) and exp = iat + lifetime.
func tokenTimes(now time.Time, lifetime time.Duration) (iat, exp int64) {
	iat = now.Unix()
	return iat, iat + int64(lifetime/time.Second)
}

func (s *Server) mintDatabricks(host, clientID, scope string, lifetime time.Duration) (string, error) {
	iat, exp := tokenTimes(s.clock(), lifetime)
	return s.signer.sign(
		databricksHeader{Kid: s.signer.kid, Typ: "at+jwt", Alg: "RS256"},
		databricksClaims{
			ClientID: clientID,
			Scope:    scope,
			Issuer:   host + "/oidc",
			Audience: host,
			Subject:  clientID,
			IssuedAt: iat,
			NotBef:   iat,
			Expiry:   exp,
			JTI:      newUUID(),
		})
}

func (s *Server) mintEntra(tenantID string, app azureApp, acr string, lifetime time.Duration) (string, error) {
	iat, exp := tokenTimes(s.clock(), lifetime)
	iss := "https://sts.windows.net/" + tenantID + "/"
	return s.signer.sign(
		entraHeader{Typ: "JWT", Alg: "RS256", X5t: s.signer.kid, Kid: s.signer.kid},
		entraClaims{
			Audience: AzureDatabricksResourceID,
			Issuer:   iss,
			IssuedAt: iat,
			NotBef:   iat,
			Expiry:   exp,
			AIO:      randB64(48),
			AppID:    app.clientID,
			AppIDACR: acr,
			IDP:      iss,
			IDTyp:    "app",
			OID:      app.objectID,
			RH:       "0." + randB64(60) + ".",
			Subject:  app.clientID,
			TenantID: tenantID,
			UTI:      randB64(16),
			Ver:      "1.0",
		})
}

// ValidateToken checks a token as a resource server (a fake Databricks workspace) would: RS256
// signature by this server's key (kid must match), exp in the future and nbf not in the future
// per Options.Clock. It returns the claims; checking audience or issuer is up to the caller.
// Errors wrap the jwt/v5 sentinels, e.g. errors.Is(err, ErrTokenExpired).
func (s *Server) ValidateToken(token string) (Claims, error) {
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithTimeFunc(s.clock),
		jwt.WithExpirationRequired(),
	)
	mc := jwt.MapClaims{}
	_, err := parser.ParseWithClaims(token, mc, func(t *jwt.Token) (any, error) {
		if kid, _ := t.Header["kid"].(string); kid != s.signer.kid {
			return nil, fmt.Errorf("unknown signing key %q", kid)
		}
		return &s.signer.key.PublicKey, nil
	})
	if err != nil {
		return Claims{}, fmt.Errorf("idp: invalid token: %w", err)
	}
	str := func(names ...string) string {
		for _, n := range names {
			if v, ok := mc[n].(string); ok && v != "" {
				return v
			}
		}
		return ""
	}
	c := Claims{
		Subject:  str("sub"),
		Issuer:   str("iss"),
		Scope:    str("scope", "scp"),
		TenantID: str("tid"),
		ClientID: str("client_id", "appid"),
		ID:       str("jti", "uti"),
	}
	if aud, err := mc.GetAudience(); err == nil && len(aud) > 0 {
		c.Audience = strings.Join(aud, " ")
	}
	if t, err := mc.GetIssuedAt(); err == nil && t != nil {
		c.IssuedAt = t.Time
	}
	if t, err := mc.GetExpirationTime(); err == nil && t != nil {
		c.ExpiresAt = t.Time
	}
	return c, nil
}

// marshalJSON encodes without HTML escaping and without the trailing newline of json.Encoder,
// matching what the real providers put on the wire.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return b
}

func randB64(n int) string { return base64.RawURLEncoding.EncodeToString(randBytes(n)) }

// newUUID returns a random (version 4) UUID, the format of Entra trace/correlation IDs and
// Databricks error_id values.
func newUUID() string {
	b := randBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
