package idp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	fedIssuer   = "https://kubernetes.default.svc.cluster.local"
	fedSubject  = "system:serviceaccount:analytics:dbt-runner"
	fedAudience = "databricks-federation"
	spClientID  = "7a1c5e2b-3f4d-4c6e-8a9b-0c1d2e3f4a5b"
)

// issuer signs federated tokens with an ES256 key (as a Kubernetes API server) or an RS256 key.
type issuer struct {
	method jwt.SigningMethod
	key    any
	kid    string
	jwks   []byte
}

func newECIssuer(t testing.TB) *issuer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x, y := make([]byte, 32), make([]byte, 32)
	k.X.FillBytes(x)
	k.Y.FillBytes(y)
	b := base64.RawURLEncoding.EncodeToString
	doc, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"use": "sig", "kty": "EC", "kid": "ec-1", "crv": "P-256", "alg": "ES256", "x": b(x), "y": b(y)},
	}})
	return &issuer{method: jwt.SigningMethodES256, key: k, kid: "ec-1", jwks: doc}
}

func newRSAIssuer(t testing.TB) *issuer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b := base64.RawURLEncoding.EncodeToString
	doc, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"use": "enc", "kty": "RSA", "kid": "ignored", "n": b(k.N.Bytes()), "e": "AQAB"},
		{"use": "sig", "kty": "RSA", "kid": "rsa-1", "alg": "RS256", "n": b(k.N.Bytes()), "e": "AQAB"},
	}})
	return &issuer{method: jwt.SigningMethodRS256, key: k, kid: "rsa-1", jwks: doc}
}

func (i *issuer) sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(i.method, claims)
	tok.Header["kid"] = i.kid
	s, err := tok.SignedString(i.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// saToken is a ServiceAccount-shaped token valid from now for lifetime.
func (i *issuer) saToken(t testing.TB, now time.Time, lifetime time.Duration, mods ...func(jwt.MapClaims)) string {
	c := jwt.MapClaims{"iss": fedIssuer, "sub": fedSubject, "aud": []string{fedAudience},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(lifetime).Unix()}
	for _, m := range mods {
		m(c)
	}
	return i.sign(t, c)
}

func exchangeForm(subjectToken, clientID string) url.Values {
	v := url.Values{"grant_type": {GrantTypeTokenExchange}, "subject_token": {subjectToken},
		"subject_token_type": {TokenTypeJWT}, "scope": {"all-apis"}}
	if clientID != "" {
		v.Set("client_id", clientID)
	}
	return v
}

func TestDatabricksTokenExchange(t *testing.T) {
	fc := newFakeClock()
	s := start(t, Options{Clock: fc.Now})
	ec, rs := newECIssuer(t), newRSAIssuer(t)
	if err := s.AddFederationPolicy(FederationPolicy{Issuer: fedIssuer, Audiences: []string{"x", fedAudience}, Subject: fedSubject, JWKS: ec.jwks, ClientID: spClientID}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddFederationPolicy(FederationPolicy{Issuer: "https://token.actions.githubusercontent.com", Audiences: []string{fedAudience}, JWKS: rs.jwks}); err != nil {
		t.Fatal(err)
	}

	t.Run("service principal policy, ES256: the token lives as long as the subject token", func(t *testing.T) {
		s.ResetRequests()
		subject := ec.saToken(t, fc.Now(), 20*time.Minute)
		a := send(t, s, call{path: dbPath, form: exchangeForm(subject, spClientID)})
		if a.status != http.StatusOK {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		m := a.object(t)
		wantKeys(t, m, "access_token", "token_type", "scope", "expires_in")
		if m["expires_in"].(json.Number).String() != "1200" {
			t.Errorf("expires_in %v, want the subject token's remaining 1200 s", m["expires_in"])
		}
		claims, err := s.ValidateToken(m["access_token"].(string))
		if err != nil || claims.Subject != spClientID || claims.ClientID != spClientID {
			t.Errorf("claims %+v, err %v", claims, err)
		}
		r := s.Requests()[0]
		if !r.AssertionVerified || r.AssertionType != "subject_token" || r.AssertionAlg != "ES256" || r.AssertionIssuer != fedIssuer ||
			r.AssertionSubject != fedSubject || !slices.Equal(r.AssertionAudience, []string{fedAudience}) || r.SecretPresent || r.ClientID != spClientID {
			t.Errorf("recorded %+v", r)
		}
		if got := s.Assertions(); got[len(got)-1] != subject {
			t.Error("Assertions() does not hold the subject token")
		}
	})

	t.Run("account-wide policy, RS256: the configured lifetime caps it", func(t *testing.T) {
		subject := rs.saToken(t, fc.Now(), 3*time.Hour, func(c jwt.MapClaims) {
			c["iss"], c["sub"] = "https://token.actions.githubusercontent.com", "repo:org/repo:environment:prod"
		})
		a := send(t, s, call{path: dbPath, form: exchangeForm(subject, "")})
		if a.status != http.StatusOK {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		m := a.object(t)
		if m["expires_in"].(json.Number).String() != "3600" {
			t.Errorf("expires_in %v, want 3600", m["expires_in"])
		}
		if claims, _ := s.ValidateToken(m["access_token"].(string)); claims.Subject != "repo:org/repo:environment:prod" {
			t.Errorf("an account-wide policy issues the token for the subject, got %q", claims.Subject)
		}
	})

	bad := map[string]struct {
		form       url.Values
		wantStatus int
		wantError  string
		wantDesc   string
	}{
		"no subject_token":      {with(exchangeForm("x", spClientID), "subject_token", "<delete>"), 400, "invalid_request", "Missing required parameter: subject_token"},
		"no subject_token_type": {with(exchangeForm("x", spClientID), "subject_token_type", "<delete>"), 400, "invalid_request", "subject_token_type"},
		"access token type": {with(exchangeForm("x", spClientID), "subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
			400, "invalid_request", "Unsupported subject_token_type"},
		"no scope":                               {with(exchangeForm(ec.saToken(t, fc.Now(), time.Hour), spClientID), "scope", "<delete>"), 400, "invalid_request", "scope"},
		"not a JWT":                              {exchangeForm("not-a-jwt", spClientID), 400, "invalid_request", "not a valid JWT"},
		"unknown service principal":              {exchangeForm(ec.saToken(t, fc.Now(), time.Hour), "00000000-0000-4000-8000-000000000000"), 400, "invalid_grant", "no federation policy is configured for service principal"},
		"another issuer":                         {exchangeForm(ec.saToken(t, fc.Now(), time.Hour, func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), spClientID), 400, "invalid_grant", "issuer"},
		"signed by another key":                  {exchangeForm(newECIssuer(t).saToken(t, fc.Now(), time.Hour), spClientID), 400, "invalid_grant", "signature"},
		"unsigned (alg none)":                    {exchangeForm(noneToken(t, fc.Now()), spClientID), 400, "invalid_grant", "signature"},
		"expired":                                {exchangeForm(ec.saToken(t, fc.Now().Add(-2*time.Hour), time.Hour), spClientID), 400, "invalid_grant", "expired"},
		"not yet valid":                          {exchangeForm(ec.saToken(t, fc.Now().Add(time.Hour), time.Hour), spClientID), 400, "invalid_grant", "not yet valid"},
		"no exp":                                 {exchangeForm(ec.saToken(t, fc.Now(), time.Hour, func(c jwt.MapClaims) { delete(c, "exp") }), spClientID), 400, "invalid_grant", "expired"},
		"another audience":                       {exchangeForm(ec.saToken(t, fc.Now(), time.Hour, func(c jwt.MapClaims) { c["aud"] = "https://kubernetes.default.svc" }), spClientID), 400, "invalid_grant", "audience"},
		"another subject":                        {exchangeForm(ec.saToken(t, fc.Now(), time.Hour, func(c jwt.MapClaims) { c["sub"] = "system:serviceaccount:other:dbt-runner" }), spClientID), 400, "invalid_grant", "subject"},
		"account-wide, no policy for the issuer": {exchangeForm(ec.saToken(t, fc.Now(), time.Hour), ""), 400, "invalid_grant", "issuer"},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			s.ResetRequests()
			a := send(t, s, call{path: dbPath, form: tc.form})
			m := a.object(t)
			if a.status != tc.wantStatus || m["error"] != tc.wantError || !strings.Contains(m["error_description"].(string), tc.wantDesc) {
				t.Errorf("got %d %s", a.status, a.body)
			}
			wantKeys(t, m, "error", "error_description", "error_id")
			if !uuidPattern.MatchString(m["error_id"].(string)) {
				t.Errorf("error_id %v is not a UUID", m["error_id"])
			}
			if r := s.Requests()[0]; r.AssertionVerified || r.IssuedToken != "" {
				t.Errorf("a refused exchange was recorded as verified: %+v", r)
			}
		})
	}
}

// noneToken is an unsigned JWT (alg none), which no policy may accept.
func noneToken(t testing.TB, now time.Time) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": fedIssuer, "sub": fedSubject, "aud": fedAudience, "exp": now.Add(time.Hour).Unix()})
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAddFederationPolicyRefusesBadJWKS(t *testing.T) {
	s := start(t, Options{})
	for name, doc := range map[string]string{
		"not JSON":       "nope",
		"no keys":        `{"keys":[]}`,
		"only enc keys":  `{"keys":[{"use":"enc","kty":"RSA","n":"AQAB","e":"AQAB"}]}`,
		"bad EC point":   `{"keys":[{"kty":"EC","crv":"P-256","x":"AQ","y":"AQ"}]}`,
		"unknown curve":  `{"keys":[{"kty":"EC","crv":"P-192","x":"AQ","y":"AQ"}]}`,
		"bad RSA modulo": `{"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]}`,
	} {
		if err := s.AddFederationPolicy(FederationPolicy{Issuer: fedIssuer, JWKS: []byte(doc)}); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if err := s.AddAzureFederatedCredential(tenantID, azClientID, fedIssuer, fedSubject, "api://AzureADTokenExchange", []byte(doc)); err == nil {
			t.Errorf("%s: accepted for Entra", name)
		}
	}
}

// clientCert is a self-signed RSA certificate for Entra certificate credentials.
type clientCert struct {
	certPEM []byte
	cert    *x509.Certificate
	key     *rsa.PrivateKey
}

func newClientCert(t testing.TB, notBefore, notAfter time.Time) clientCert {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "client"}, NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return clientCert{certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert: cert, key: key}
}

func (c clientCert) thumbprint() string {
	sum := sha256.Sum256(c.cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// assertion signs a client assertion as Entra documents it, then applies mods.
func (c clientCert) assertion(t testing.TB, s *Server, now time.Time, method jwt.SigningMethod, mods ...func(h, claims map[string]any)) string {
	t.Helper()
	claims := jwt.MapClaims{"aud": s.URL() + entraPath, "iss": azClientID, "sub": azClientID, "jti": newUUID(),
		"nbf": now.Unix(), "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["x5t#S256"] = c.thumbprint()
	for _, m := range mods {
		m(tok.Header, claims)
	}
	signed, err := tok.SignedString(c.key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func assertionForm(assertion string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {azClientID}, "scope": {azScope},
		"client_assertion_type": {ClientAssertionTypeJWTBearer}, "client_assertion": {assertion}}
}

func TestEntraClientAssertion(t *testing.T) {
	fc := newFakeClock()
	s := start(t, Options{Clock: fc.Now})
	now := fc.Now()
	cert := newClientCert(t, now.Add(-time.Hour), now.Add(24*time.Hour))
	expired := newClientCert(t, now.Add(-48*time.Hour), now.Add(-time.Hour))
	unregistered := newClientCert(t, now.Add(-time.Hour), now.Add(24*time.Hour))
	ec := newECIssuer(t)
	for _, c := range []clientCert{cert, expired} {
		if err := s.AddAzureCertificate(tenantID, azClientID, c.certPEM); err != nil {
			t.Fatal(err)
		}
	}
	const fedApp = "1b2c3d4e-0000-4000-8000-00000000fed0"
	if err := s.AddAzureFederatedCredential(tenantID, fedApp, fedIssuer, fedSubject, "api://AzureADTokenExchange", ec.jwks); err != nil {
		t.Fatal(err)
	}
	const noFICApp = "1b2c3d4e-0000-4000-8000-0000000000f1"
	s.AddAzureApp(tenantID, noFICApp, "some-secret")
	fedToken := func(mods ...func(jwt.MapClaims)) string {
		return ec.saToken(t, now, 10*time.Minute, append([]func(jwt.MapClaims){func(c jwt.MapClaims) { c["aud"] = "api://AzureADTokenExchange" }}, mods...)...)
	}
	fedForm := func(app, assertion string) url.Values {
		return with(assertionForm(assertion), "client_id", app)
	}

	good := map[string]struct {
		form    url.Values
		wantAlg string
	}{
		"certificate, PS256":           {assertionForm(cert.assertion(t, s, now, jwt.SigningMethodPS256)), "PS256"},
		"certificate, RS256":           {assertionForm(cert.assertion(t, s, now, jwt.SigningMethodRS256)), "RS256"},
		"federated ServiceAccount JWT": {fedForm(fedApp, fedToken()), "ES256"},
	}
	for name, tc := range good {
		t.Run(name, func(t *testing.T) {
			s.ResetRequests()
			a := send(t, s, call{path: entraPath, form: tc.form})
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			tok := a.object(t)["access_token"].(string)
			if _, err := s.ValidateToken(tok); err != nil {
				t.Fatal(err)
			}
			payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
			if !strings.Contains(string(payload), `"appidacr":"2"`) {
				t.Errorf("appidacr is not 2 (certificate or assertion): %s", payload)
			}
			r := s.Requests()[0]
			if !r.AssertionVerified || r.AssertionType != "client_assertion" || r.AssertionAlg != tc.wantAlg || r.SecretPresent {
				t.Errorf("recorded %+v", r)
			}
		})
	}

	bad := map[string]struct {
		form       url.Values
		wantStatus int
		wantError  string
		wantCode   int
		wantDesc   string
	}{
		"no client_assertion_type": {with(assertionForm("x"), "client_assertion_type", "<delete>"), 400, "invalid_request", AADSTSMissingParameter, "client_assertion_type"},
		"no client_assertion":      {with(assertionForm(""), "client_assertion", "<delete>"), 400, "invalid_request", AADSTSMissingParameter, "client_assertion"},
		"not a JWT":                {assertionForm("nope"), 400, "invalid_request", AADSTSInvalidJWT, "JWT token is invalid or malformed."},
		"unregistered certificate": {assertionForm(unregistered.assertion(t, s, now, jwt.SigningMethodPS256)), 401, "invalid_client", AADSTSAssertionSignature, "The key was not found"},
		"expired certificate":      {assertionForm(expired.assertion(t, s, now, jwt.SigningMethodPS256)), 401, "invalid_client", AADSTSAssertionSignature, "The key used is expired"},
		"signed by another key": {assertionForm(unregistered.assertion(t, s, now, jwt.SigningMethodPS256, func(h, _ map[string]any) { h["x5t#S256"] = cert.thumbprint() })),
			401, "invalid_client", AADSTSAssertionSignature, "did not match the expected signature value"},
		"expired assertion": {assertionForm(cert.assertion(t, s, now, jwt.SigningMethodPS256, func(_, c map[string]any) {
			c["nbf"], c["exp"] = now.Add(-10*time.Minute).Unix(), now.Add(-5*time.Minute).Unix()
		})), 401, "invalid_client", AADSTSAssertionTimeRange, "not within its valid time range"},
		"assertion valid for an hour": {assertionForm(cert.assertion(t, s, now, jwt.SigningMethodPS256, func(_, c map[string]any) { c["exp"] = now.Add(time.Hour).Unix() })),
			401, "invalid_client", AADSTSAssertionTimeRange, "not within its valid time range"},
		"no jti": {assertionForm(cert.assertion(t, s, now, jwt.SigningMethodPS256, func(_, c map[string]any) { delete(c, "jti") })),
			400, "invalid_request", AADSTSInvalidJWT, "malformed"},
		"aud is the issuer": {assertionForm(cert.assertion(t, s, now, jwt.SigningMethodPS256, func(_, c map[string]any) { c["aud"] = "https://login.microsoftonline.com/" + tenantID + "/v2.0" })),
			401, "invalid_client", AADSTSAssertionAudience, "audience claim does not match"},
		"iss is not the client": {assertionForm(cert.assertion(t, s, now, jwt.SigningMethodPS256, func(_, c map[string]any) { c["iss"], c["sub"] = "other", "other" })),
			401, "invalid_client", AADSTSAssertionClientMismatch, "application identifier"},
		"sub is not iss": {assertionForm(cert.assertion(t, s, now, jwt.SigningMethodPS256, func(_, c map[string]any) { c["sub"] = "other" })),
			401, "invalid_client", AADSTSAssertionSubjectNotIssuer, "Subject must match Issuer"},
		"no federated credential":   {fedForm(noFICApp, fedToken()), 400, "invalid_request", AADSTSNoMatchingFederatedRecord, "Assertion Issuer: '" + fedIssuer + "'. Assertion Subject: '" + fedSubject + "'"},
		"federated, another issuer": {fedForm(fedApp, fedToken(func(c jwt.MapClaims) { c["iss"] = "https://other" })), 401, "invalid_client", AADSTSFederatedIssuerMismatch, "issuer 'https://other'"},
		"federated, another audience": {fedForm(fedApp, fedToken(func(c jwt.MapClaims) { c["aud"] = "api://other" })),
			401, "invalid_client", AADSTSFederatedAudienceMismatch, "audience 'api://other'"},
		"federated, another subject": {fedForm(fedApp, fedToken(func(c jwt.MapClaims) { c["sub"] = "system:serviceaccount:analytics:DBT-RUNNER" })),
			401, "invalid_client", AADSTSFederatedSubjectMismatch, "subject 'system:serviceaccount:analytics:DBT-RUNNER'"},
		"federated, another key": {fedForm(fedApp, newECIssuer(t).saToken(t, now, time.Hour, func(c jwt.MapClaims) { c["aud"] = "api://AzureADTokenExchange" })),
			401, "invalid_client", AADSTSAssertionSignature, "signature validation"},
		"federated, expired": {fedForm(fedApp, fedToken(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() })),
			401, "invalid_client", AADSTSAssertionTimeRange, "not within its valid time range"},
		"federated app, client secret": {with(entraForm(), "client_id", fedApp), 401, "invalid_client", AADSTSInvalidSecret, "Invalid client secret"},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			s.ResetRequests()
			a := send(t, s, call{path: entraPath, form: tc.form})
			m := a.object(t)
			desc, _ := m["error_description"].(string)
			if a.status != tc.wantStatus || m["error"] != tc.wantError || !strings.HasPrefix(desc, fmt.Sprintf("AADSTS%d: ", tc.wantCode)) || !strings.Contains(desc, tc.wantDesc) {
				t.Errorf("got %d %s", a.status, a.body)
			}
			if r := s.Requests()[0]; r.AssertionVerified || r.IssuedToken != "" {
				t.Errorf("a refused assertion was recorded as verified: %+v", r)
			}
		})
	}
}
