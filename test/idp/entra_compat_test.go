package idp

// Requests that real Entra clients send and Entra accepts, sent as raw forms so that each case
// is pinned independently of any client library (realclients_test.go drives the libraries).

import (
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // x5t is a SHA-1 thumbprint (RFC 7515 §4.1.7)
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// msalScope is what MSAL Go sends as scope on every confidential-client request for azScope:
// the requested scope followed by the OIDC scopes it always appends (AppendDefaultScopes in
// apps/internal/oauth/ops/accesstokens of microsoft-authentication-library-for-go v1.10.1).
const msalScope = azScope + " openid offline_access profile"

// MSAL appends "openid offline_access profile" to the scopes of every confidential-client
// request; Entra accepts them next to one resource's /.default in the client-credentials grant,
// and still refuses what it refused before.
func TestEntraClientCredentialsOIDCScopes(t *testing.T) {
	accepted := map[string]string{
		"MSAL Go's scope string":                      msalScope,
		"OIDC scopes first":                           "openid profile offline_access " + azScope,
		"app ID URI form with OIDC scopes":            "api://" + AzureDatabricksResourceID + "/.default openid offline_access profile",
		"one OIDC scope":                              azScope + " openid",
		"extra spaces between MSAL's scopes (folded)": azScope + "  openid   offline_access profile",
	}
	for name, scope := range accepted {
		t.Run(name, func(t *testing.T) {
			s := start(t, Options{})
			a := send(t, s, call{path: entraPath, form: with(entraForm(), "scope", scope)})
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			c, err := s.ValidateToken(a.object(t)["access_token"].(string))
			if err != nil || c.Audience != AzureDatabricksResourceID || c.Scope != "" {
				t.Errorf("token: %+v, %v", c, err)
			}
			if _, ok := a.object(t)["scope"]; ok {
				t.Error("Entra's client-credentials answer has no scope field")
			}
		})
	}

	refused := []struct {
		name, scope string
		status      int
		errCode     string
		aadsts      int
		message     string
	}{
		// The answer MSAL Go's maintainers quote for a request without a resource scope
		// (microsoft-authentication-library-for-go issue #304 and the comment on scopeError in
		// apps/internal/oauth/oauth.go): the OIDC scopes alone are no client-credentials scope.
		{"OIDC scopes only", "openid offline_access profile", 400, "invalid_scope", AADSTSScopeNeedsDefaultSuffix,
			"The provided value for scope openid offline_access profile is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."},
		{"delegated scope with OIDC scopes", AzureDatabricksResourceID + "/user_impersonation openid offline_access profile", 400, "invalid_scope", AADSTSScopeNeedsDefaultSuffix,
			"The provided value for scope " + AzureDatabricksResourceID + "/user_impersonation openid offline_access profile is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."},
		{"two resources with OIDC scopes", azScope + " https://graph.microsoft.com/.default openid offline_access profile", 400, "invalid_scope", AADSTSInvalidScopeParam, ""},
		// The fake's choice (not observed): only the three OIDC scopes that MSAL sends are
		// set aside; email, which no client sends here, is refused like any other scope.
		{"email", azScope + " email", 400, "invalid_scope", AADSTSScopeNeedsDefaultSuffix, ""},
		{"Databricks scope next to .default", azScope + " all-apis", 400, "invalid_scope", AADSTSScopeNeedsDefaultSuffix, ""},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := start(t, Options{Clock: clock.Now})
			checkEntraError(t, send(t, s, call{path: entraPath, form: with(entraForm(), "scope", tt.scope)}), clock, tt.status, tt.errCode, tt.aadsts, tt.message)
		})
	}
}

// MSAL Go refuses a tenant discovery document without authorization_endpoint, token_endpoint
// or issuer (TenantDiscoveryResponse.Validate), even for the client-credentials grant that
// never uses the authorization endpoint. Entra's document has all of them.
func TestEntraDiscoveryDocument(t *testing.T) {
	s := start(t, Options{})
	a := send(t, s, call{method: http.MethodGet, path: "/" + tenantID + "/v2.0/.well-known/openid-configuration"})
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("%d %s: %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	d := a.object(t)
	base := s.URL() + "/" + tenantID
	for k, want := range map[string]string{
		"authorization_endpoint":        base + "/oauth2/v2.0/authorize",
		"token_endpoint":                base + "/oauth2/v2.0/token",
		"device_authorization_endpoint": base + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":          base + "/oauth2/v2.0/logout",
		"jwks_uri":                      base + "/discovery/v2.0/keys",
		// The issuer is Entra's, whatever host served the document: tokens are validated
		// against it, and MSAL accepts it because login.microsoftonline.com is a trusted host.
		"issuer": "https://login.microsoftonline.com/" + tenantID + "/v2.0",
	} {
		if d[k] != want {
			t.Errorf("%s = %v, want %s", k, d[k], want)
		}
	}
	// The fields of Entra's v2.0 tenant document, in Entra's order.
	wantKeys(t, d, "token_endpoint", "token_endpoint_auth_methods_supported", "jwks_uri", "response_modes_supported",
		"subject_types_supported", "id_token_signing_alg_values_supported", "response_types_supported", "scopes_supported",
		"issuer", "request_uri_parameter_supported", "userinfo_endpoint", "authorization_endpoint",
		"device_authorization_endpoint", "http_logout_supported", "frontchannel_logout_supported", "end_session_endpoint",
		"claims_supported", "kerberos_endpoint", "tenant_region_scope", "cloud_instance_name", "cloud_graph_host_name",
		"msgraph_host", "rbac_url")
	if !strings.HasPrefix(string(a.body), `{"token_endpoint":`) {
		t.Errorf("the document does not start with token_endpoint as Entra's does: %.40s", a.body)
	}
	// The tenant segment is matched case-insensitively, as for the token endpoint.
	if a := send(t, s, call{method: http.MethodGet, path: "/" + strings.ToUpper(tenantID) + "/v2.0/.well-known/openid-configuration"}); a.status != http.StatusOK {
		t.Errorf("upper-case tenant: %d", a.status)
	}
}

// certWithAwkwardThumbprint returns a certificate whose SHA-256 thumbprint has a '+' or '/' in
// standard base64, so that the standard and URL-safe alphabets differ beyond the padding.
func certWithAwkwardThumbprint(t *testing.T, now time.Time) clientCert {
	t.Helper()
	c := newClientCert(t, now.Add(-time.Hour), now.Add(24*time.Hour))
	for serial := int64(100); ; serial++ {
		sum := sha256.Sum256(c.cert.Raw)
		if strings.ContainsAny(base64.StdEncoding.EncodeToString(sum[:]), "+/") {
			return c
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: c.cert.Subject, NotBefore: c.cert.NotBefore, NotAfter: c.cert.NotAfter}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &c.key.PublicKey, c.key)
		if err != nil {
			t.Fatal(err)
		}
		c.cert, _ = x509.ParseCertificate(der)
		c.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
}

// Entra reads the certificate thumbprint of a client assertion as bytes: MSAL Go sends x5t#S256
// in padded standard base64 (base64.StdEncoding in apps/internal/oauth/ops/accesstokens), MSAL
// .NET and the operator in unpadded base64url as RFC 7515 specifies, and both authenticate.
func TestEntraCertificateThumbprintEncodings(t *testing.T) {
	fc := newFakeClock()
	s := start(t, Options{Clock: fc.Now})
	now := fc.Now()
	cert := certWithAwkwardThumbprint(t, now)
	if err := s.AddAzureCertificate(tenantID, azClientID, cert.certPEM); err != nil {
		t.Fatal(err)
	}
	other := newClientCert(t, now.Add(-time.Hour), now.Add(24*time.Hour))
	sum := sha256.Sum256(cert.cert.Raw)
	sha1Sum := sha1.Sum(cert.cert.Raw) //nolint:gosec // see import
	otherSum := sha256.Sum256(other.cert.Raw)
	withHeader := func(method jwt.SigningMethod, set map[string]any) string {
		return cert.assertion(t, s, now, method, func(h, _ map[string]any) {
			delete(h, "x5t#S256")
			for k, v := range set {
				h[k] = v
			}
		})
	}

	accepted := map[string]struct {
		method jwt.SigningMethod
		header map[string]any
	}{
		"x5t#S256 base64url, unpadded (RFC 7515)": {jwt.SigningMethodPS256, map[string]any{"x5t#S256": base64.RawURLEncoding.EncodeToString(sum[:])}},
		"x5t#S256 standard base64, padded (MSAL)": {jwt.SigningMethodPS256, map[string]any{"x5t#S256": base64.StdEncoding.EncodeToString(sum[:])}},
		"x5t#S256 standard base64, unpadded":      {jwt.SigningMethodPS256, map[string]any{"x5t#S256": base64.RawStdEncoding.EncodeToString(sum[:])}},
		"x5t#S256 base64url, padded":              {jwt.SigningMethodPS256, map[string]any{"x5t#S256": base64.URLEncoding.EncodeToString(sum[:])}},
		// Entra's older documentation and MSAL Java before 1.16.2: x5t (SHA-1) with RS256.
		"x5t SHA-1, RS256":                       {jwt.SigningMethodRS256, map[string]any{"x5t": base64.RawURLEncoding.EncodeToString(sha1Sum[:])}},
		"x5t SHA-1, padded standard base64":      {jwt.SigningMethodRS256, map[string]any{"x5t": base64.StdEncoding.EncodeToString(sha1Sum[:])}},
		"both headers: x5t#S256 is the one read": {jwt.SigningMethodPS256, map[string]any{"x5t#S256": base64.RawURLEncoding.EncodeToString(sum[:]), "x5t": "ignored"}},
	}
	for name, tc := range accepted {
		t.Run(name, func(t *testing.T) {
			s.ResetRequests()
			a := send(t, s, call{path: entraPath, form: assertionForm(withHeader(tc.method, tc.header))})
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			if r := s.Requests()[0]; !r.AssertionVerified || r.AssertionAlg != tc.method.Alg() {
				t.Errorf("recorded %s", redacted(r))
			}
		})
	}

	upperHex := func(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }
	refused := map[string]struct {
		header    map[string]any
		wantThumb string // as Entra prints it: the hash in upper-case hex
	}{
		"another certificate's thumbprint, standard base64": {map[string]any{"x5t#S256": base64.StdEncoding.EncodeToString(otherSum[:])}, upperHex(otherSum[:])},
		"SHA-1 thumbprint in x5t#S256":                      {map[string]any{"x5t#S256": base64.RawURLEncoding.EncodeToString(sha1Sum[:])}, upperHex(sha1Sum[:])},
		"SHA-256 thumbprint in x5t":                         {map[string]any{"x5t": base64.RawURLEncoding.EncodeToString(sum[:])}, upperHex(sum[:])},
		"truncated thumbprint":                              {map[string]any{"x5t#S256": base64.RawURLEncoding.EncodeToString(sum[:31])}, upperHex(sum[:31])},
		"mixed alphabets":                                   {map[string]any{"x5t#S256": "-+" + base64.RawURLEncoding.EncodeToString(sum[:])[2:]}, "-+" + base64.RawURLEncoding.EncodeToString(sum[:])[2:]},
		"hex instead of base64":                             {map[string]any{"x5t#S256": hex.EncodeToString(sum[:])}, ""},
	}
	for name, tc := range refused {
		t.Run(name, func(t *testing.T) {
			s.ResetRequests()
			a := send(t, s, call{path: entraPath, form: assertionForm(withHeader(jwt.SigningMethodPS256, tc.header))})
			m := a.object(t)
			desc, _ := m["error_description"].(string)
			if a.status != http.StatusUnauthorized || m["error"] != "invalid_client" || !strings.HasPrefix(desc, "AADSTS700027: ") ||
				!strings.Contains(desc, "The key was not found") || !strings.Contains(desc, "Thumbprint of key used by client: '"+tc.wantThumb) {
				t.Errorf("got %d %s", a.status, a.printable())
			}
			if r := s.Requests()[0]; r.AssertionVerified || r.IssuedToken != "" {
				t.Errorf("recorded %s", redacted(r))
			}
		})
	}
}
