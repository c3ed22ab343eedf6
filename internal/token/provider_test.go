package token

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/test/idp"
)

// t0 is the fixed time of the fake clock that the provider and the IdP share.
var t0 = time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)

// startIdP starts the test IdP on the fake clock's time, with one Databricks service principal
// and one Entra app (same client ID and secret) registered.
func startIdP(t *testing.T, opts idp.Options) (*idp.Server, *clocktesting.FakeClock) {
	t.Helper()
	fc := clocktesting.NewFakeClock(t0)
	if opts.Clock == nil {
		opts.Clock = fc.Now
	}
	srv, err := idp.Start(opts)
	if err != nil {
		t.Fatalf("idp.Start: %v", err)
	}
	t.Cleanup(srv.Close)
	srv.AddDatabricksClient(testClientID, testClientSecret)
	srv.AddAzureApp(testTenant, testClientID, testClientSecret)
	return srv, fc
}

// newProvider returns a provider trusting pool only, allowed to send credentials to 127.0.0.1.
func newProvider(pool *x509.CertPool, c clock.PassiveClock, mods ...func(*Options)) *ClientCredentials {
	opts := Options{RootCAs: pool, AllowedHosts: MustParseHostPolicy("127.0.0.1"), Clock: c}
	for _, m := range mods {
		m(&opts)
	}
	return NewClientCredentials(opts)
}

func mustRequest(t *testing.T, spec *v1alpha1.DatabricksCredentialSpec, secret string, ca []byte) Request {
	t.Helper()
	r, err := NewRequest(spec, testClientID, secret, ca)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	return r
}

func onlyRequest(t *testing.T, srv *idp.Server) idp.Request {
	t.Helper()
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("IdP saw %d requests, want 1: %+v", len(reqs), reqs)
	}
	return reqs[0]
}

func TestTokenWire(t *testing.T) {
	tests := map[string]struct {
		spec         func(base string) *v1alpha1.DatabricksCredentialSpec
		wantPath     string
		wantScope    string
		wantAuth     string
		wantFormKeys []string
	}{
		"databricks": {
			spec:      func(base string) *v1alpha1.DatabricksCredentialSpec { return databricksSpec(base + "/") },
			wantPath:  "/oidc/v1/token",
			wantScope: "all-apis", wantAuth: "basic", wantFormKeys: []string{"grant_type", "scope"},
		},
		"databricks, custom scopes sent space-separated": {
			spec: func(base string) *v1alpha1.DatabricksCredentialSpec {
				return databricksSpec(base, "sql", "offline_access")
			},
			wantPath:  "/oidc/v1/token",
			wantScope: "sql offline_access", wantAuth: "basic", wantFormKeys: []string{"grant_type", "scope"},
		},
		"azure": {
			spec:      func(base string) *v1alpha1.DatabricksCredentialSpec { return azureSpec(base, testTenant) },
			wantPath:  "/" + testTenant + "/oauth2/v2.0/token",
			wantScope: AzureDatabricksScope, wantAuth: "form", wantFormKeys: []string{"client_id", "client_secret", "grant_type", "scope"},
		},
		"azure, authority with trailing slash and custom scope": {
			spec: func(base string) *v1alpha1.DatabricksCredentialSpec {
				return azureSpec(base+"/", testTenant, "api://2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default")
			},
			wantPath:  "/" + testTenant + "/oauth2/v2.0/token",
			wantScope: "api://2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default", wantAuth: "form",
			wantFormKeys: []string{"client_id", "client_secret", "grant_type", "scope"},
		},
		"oauth2, Header": {
			spec: func(base string) *v1alpha1.DatabricksCredentialSpec {
				return oauth2Spec(base+"/oidc/v1/token", v1alpha1.AuthStyleHeader, "all-apis")
			},
			wantPath:  "/oidc/v1/token",
			wantScope: "all-apis", wantAuth: "basic", wantFormKeys: []string{"grant_type", "scope"},
		},
		"oauth2, Params": {
			spec: func(base string) *v1alpha1.DatabricksCredentialSpec {
				return oauth2Spec(base+"/oidc/v1/token", v1alpha1.AuthStyleParams, "all-apis")
			},
			wantPath:  "/oidc/v1/token",
			wantScope: "all-apis", wantAuth: "form", wantFormKeys: []string{"client_id", "client_secret", "grant_type", "scope"},
		},
		"oauth2, Params against an Entra endpoint": {
			spec: func(base string) *v1alpha1.DatabricksCredentialSpec {
				return oauth2Spec(base+"/"+testTenant+"/oauth2/v2.0/token", v1alpha1.AuthStyleParams, AzureDatabricksScope)
			},
			wantPath:  "/" + testTenant + "/oauth2/v2.0/token",
			wantScope: AzureDatabricksScope, wantAuth: "form", wantFormKeys: []string{"client_id", "client_secret", "grant_type", "scope"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, fc := startIdP(t, idp.Options{})
			p := newProvider(srv.CertPool(), fc)
			tok, err := p.Token(context.Background(), mustRequest(t, tc.spec(srv.URL()), testClientSecret, nil))
			if err != nil {
				t.Fatalf("Token: %v", err)
			}

			got := onlyRequest(t, srv)
			if got.Method != http.MethodPost || got.Path != tc.wantPath {
				t.Errorf("request %s %s, want POST %s", got.Method, got.Path, tc.wantPath)
			}
			if got.ContentType != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type %q, want a form", got.ContentType)
			}
			if got.GrantType != "client_credentials" {
				t.Errorf("grant_type %q, want client_credentials", got.GrantType)
			}
			if got.Scope != tc.wantScope {
				t.Errorf("scope %q, want %q", got.Scope, tc.wantScope)
			}
			if got.AuthMethod != tc.wantAuth || got.ClientID != testClientID || !got.SecretPresent {
				t.Errorf("credentials sent by %q as %q (secret present %v), want %q as %q", got.AuthMethod, got.ClientID, got.SecretPresent, tc.wantAuth, testClientID)
			}
			if !slices.Equal(got.FormKeys, tc.wantFormKeys) {
				t.Errorf("form keys %q, want %q", got.FormKeys, tc.wantFormKeys)
			}
			if got.Status != http.StatusOK || got.IssuedToken != tok.AccessToken {
				t.Errorf("IdP answered %d with another token than the provider returned", got.Status)
			}

			claims, err := srv.ValidateToken(tok.AccessToken)
			if err != nil {
				t.Fatalf("ValidateToken: %v", err)
			}
			if claims.ClientID != testClientID {
				t.Errorf("token for client %q, want %q", claims.ClientID, testClientID)
			}
			if !tok.IssuedAt.Equal(t0) || !tok.ExpiresAt.Equal(t0.Add(idp.DefaultTokenLifetime)) {
				t.Errorf("token issued %s expires %s, want %s and %s", tok.IssuedAt, tok.ExpiresAt, t0, t0.Add(idp.DefaultTokenLifetime))
			}
			if !tok.ExpiresAt.Equal(claims.ExpiresAt) {
				t.Errorf("ExpiresAt %s, but the token's exp is %s", tok.ExpiresAt, claims.ExpiresAt)
			}
			if tok.Lifetime() != idp.DefaultTokenLifetime {
				t.Errorf("Lifetime %s, want %s", tok.Lifetime(), idp.DefaultTokenLifetime)
			}
		})
	}
}

func TestTokenIssuedAtUsesTheClockInWholeSeconds(t *testing.T) {
	srv, fc := startIdP(t, idp.Options{TokenLifetime: 90 * time.Minute})
	fc.SetTime(t0.Add(700 * time.Millisecond))
	p := newProvider(srv.CertPool(), fc)
	tok, err := p.Token(context.Background(), mustRequest(t, databricksSpec(srv.URL()), testClientSecret, nil))
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if !tok.IssuedAt.Equal(t0) || !tok.ExpiresAt.Equal(t0.Add(90*time.Minute)) {
		t.Errorf("issued %s expires %s, want %s and +90m", tok.IssuedAt, tok.ExpiresAt, t0)
	}
}

func TestTokenOAuth2SendsNoDefaultScope(t *testing.T) {
	srv, fc := startIdP(t, idp.Options{})
	p := newProvider(srv.CertPool(), fc)
	_, err := p.Token(context.Background(), mustRequest(t, oauth2Spec(srv.URL()+"/oidc/v1/token", ""), testClientSecret, nil))
	// The fake Databricks endpoint insists on a scope: what matters here is what was sent.
	e := requireError(t, err, testClientSecret)
	if e.Code != "invalid_request" || e.Reason != v1alpha1.ReasonUnauthorized {
		t.Errorf("error %q (%s), want invalid_request, Unauthorized", e, e.Reason)
	}
	got := onlyRequest(t, srv)
	if got.Scope != "" || slices.Contains(got.FormKeys, "scope") {
		t.Errorf("scope %q sent (form keys %q), want none", got.Scope, got.FormKeys)
	}
	if got.AuthMethod != "basic" {
		t.Errorf("auth method %q, want basic (Header is the default)", got.AuthMethod)
	}
}

func TestTokenSecretWithSpecialCharacters(t *testing.T) {
	const secret = "a+b/c=d%e&f g~h:i"
	tests := map[string]func(base string) *v1alpha1.DatabricksCredentialSpec{
		"basic": func(base string) *v1alpha1.DatabricksCredentialSpec { return databricksSpec(base) },
		"form":  func(base string) *v1alpha1.DatabricksCredentialSpec { return azureSpec(base, testTenant) },
		"params": func(base string) *v1alpha1.DatabricksCredentialSpec {
			return oauth2Spec(base+"/oidc/v1/token", v1alpha1.AuthStyleParams, "all-apis")
		},
	}
	for name, spec := range tests {
		t.Run(name, func(t *testing.T) {
			srv, fc := startIdP(t, idp.Options{})
			srv.AddDatabricksClient(testClientID, secret)
			srv.AddAzureApp(testTenant, testClientID, secret)
			p := newProvider(srv.CertPool(), fc)
			if _, err := p.Token(context.Background(), mustRequest(t, spec(srv.URL()), secret, nil)); err != nil {
				t.Fatalf("Token: %v", err)
			}
		})
	}
}

func TestTokenHostNotAllowed(t *testing.T) {
	tests := map[string]func(*Options){
		"host not in the list": func(o *Options) {
			o.AllowedHosts = MustParseHostPolicy("login.microsoftonline.com,*.azuredatabricks.net")
		},
		"default list":            func(o *Options) { o.AllowedHosts = MustParseHostPolicy(DefaultAllowedTokenHosts) },
		"localhost is not an IP":  func(o *Options) { o.AllowedHosts = MustParseHostPolicy("localhost") },
		"no policy configured":    func(o *Options) { o.AllowedHosts = HostPolicy{} },
		"wildcard of another one": func(o *Options) { o.AllowedHosts = MustParseHostPolicy("*.127.0.0.1") },
	}
	for name, mod := range tests {
		t.Run(name, func(t *testing.T) {
			srv, fc := startIdP(t, idp.Options{})
			p := newProvider(srv.CertPool(), fc, mod)
			for _, spec := range []*v1alpha1.DatabricksCredentialSpec{databricksSpec(srv.URL()), azureSpec(srv.URL(), testTenant)} {
				_, err := p.Token(context.Background(), mustRequest(t, spec, testClientSecret, srv.CACertPEM()))
				e := requireError(t, err, testClientSecret)
				if e.Reason != v1alpha1.ReasonHostNotAllowed {
					t.Errorf("Reason %q, want %s", e.Reason, v1alpha1.ReasonHostNotAllowed)
				}
				if !strings.Contains(e.Message, srv.Addr()) || !strings.Contains(e.Hint, "--allowed-token-hosts") {
					t.Errorf("error %q, want it to name %s and --allowed-token-hosts", e, srv.Addr())
				}
			}
			if n := srv.RequestCount(); n != 0 {
				t.Errorf("IdP saw %d requests, want none: credentials must not leave", n)
			}
		})
	}
}

func TestTokenCABundle(t *testing.T) {
	tests := map[string]struct {
		rootCAs    func(srv *idp.Server) *x509.CertPool
		bundle     func(srv *idp.Server) []byte
		wantReason string // "" for success
		wantCode   string
		wantSent   bool // whether the request reached the IdP
	}{
		"system roots plus the bundle": {
			rootCAs:  func(*idp.Server) *x509.CertPool { return nil },
			bundle:   func(srv *idp.Server) []byte { return srv.CACertPEM() },
			wantSent: true,
		},
		"configured roots plus the bundle": {
			rootCAs:  func(*idp.Server) *x509.CertPool { return x509.NewCertPool() },
			bundle:   func(srv *idp.Server) []byte { return srv.CACertPEM() },
			wantSent: true,
		},
		"bundle among other certificates": {
			rootCAs: func(*idp.Server) *x509.CertPool { return nil },
			bundle: func(srv *idp.Server) []byte {
				other, err := idp.Start(idp.Options{})
				if err != nil {
					t.Fatal(err)
				}
				other.Close()
				return append(append(other.CACertPEM(), "\n# corporate proxy\n"...), srv.CACertPEM()...)
			},
			wantSent: true,
		},
		"system roots without the bundle": {
			rootCAs:    func(*idp.Server) *x509.CertPool { return nil },
			bundle:     func(*idp.Server) []byte { return nil },
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "tls",
		},
		"bundle of another CA": {
			rootCAs: func(*idp.Server) *x509.CertPool { return nil },
			bundle: func(*idp.Server) []byte {
				other, err := idp.Start(idp.Options{})
				if err != nil {
					t.Fatal(err)
				}
				other.Close()
				return other.CACertPEM()
			},
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "tls",
		},
		"garbage bundle": {
			rootCAs:    func(srv *idp.Server) *x509.CertPool { return srv.CertPool() },
			bundle:     func(*idp.Server) []byte { return []byte("this is not PEM") },
			wantReason: v1alpha1.ReasonInvalidSpec,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, fc := startIdP(t, idp.Options{})
			p := newProvider(tc.rootCAs(srv), fc)
			req := mustRequest(t, databricksSpec(srv.URL()), testClientSecret, tc.bundle(srv))
			tok, err := p.Token(context.Background(), req)
			if sent := srv.RequestCount() > 0; sent != tc.wantSent {
				t.Errorf("request reached the IdP: %v, want %v", sent, tc.wantSent)
			}
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("Token: %v", err)
				}
				if _, err := srv.ValidateToken(tok.AccessToken); err != nil {
					t.Errorf("ValidateToken: %v", err)
				}
				return
			}
			e := requireError(t, err, testClientSecret)
			if e.Reason != tc.wantReason || e.Code != tc.wantCode {
				t.Errorf("error %q: Reason %q Code %q, want %q %q", e, e.Reason, e.Code, tc.wantReason, tc.wantCode)
			}
			if tc.wantCode == "tls" && (!strings.Contains(e.Hint, "caBundleRef") || !strings.Contains(e.Message, "not trusted")) {
				t.Errorf("error %q, want it to say the certificate is not trusted and mention caBundleRef", e)
			}
			if tc.wantReason == v1alpha1.ReasonInvalidSpec && !strings.Contains(e.Hint, "caBundleRef") {
				t.Errorf("error %q, want a hint about caBundleRef", e)
			}
		})
	}
}

// idpErrorCase is an exchange that the test IdP refuses.
type idpErrorCase struct {
	spec   func(base string) *v1alpha1.DatabricksCredentialSpec // default: the databricks block
	secret string                                               // default: the registered one
	setup  func(srv *idp.Server)

	wantReason     string
	wantCode       string
	wantStatus     int
	wantRetryAfter time.Duration
	wantIn         []string
	wantMatch      *regexp.Regexp
	wantNotIn      []string
}

func TestTokenProviderErrors(t *testing.T) {
	const wrongSecret = "wrong~secret.value-0123456789"
	azure := func(base string) *v1alpha1.DatabricksCredentialSpec { return azureSpec(base, testTenant) }
	html := "<!DOCTYPE html><html><body><h1>Forbidden</h1><p>by the corporate proxy</p></body></html>"
	tests := map[string]idpErrorCase{
		"entra, wrong secret": {
			spec: azure, secret: wrongSecret,
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "AADSTS7000215", wantStatus: 401,
			wantIn: []string{"Invalid client secret provided.", "Value", "Secret ID"},
		},
		"entra, secret expired": {
			spec: azure, setup: func(srv *idp.Server) { srv.ExpireAzureSecret(testTenant, testClientID) },
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "AADSTS7000222", wantStatus: 401,
			wantIn: []string{"expired"},
		},
		"entra, app not in the tenant": {
			spec: azure, setup: func(srv *idp.Server) { srv.RemoveAzureApp(testTenant, testClientID) },
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "AADSTS700016", wantStatus: 400,
			wantIn: []string{testClientID, "tenantID"},
		},
		"entra, tenant not found": {
			spec: func(base string) *v1alpha1.DatabricksCredentialSpec {
				return azureSpec(base, "00000000-0000-4000-8000-000000000000")
			},
			wantReason: v1alpha1.ReasonNotFound, wantCode: "AADSTS90002", wantStatus: 400,
			wantIn: []string{"not found", "tenantID"},
		},
		"entra, resource not in the tenant": {
			spec: func(base string) *v1alpha1.DatabricksCredentialSpec {
				return azureSpec(base, testTenant, "00000003-0000-0000-c000-000000000000/.default")
			},
			wantReason: v1alpha1.ReasonNotFound, wantCode: "AADSTS500011", wantStatus: 400,
			wantIn: []string{"spec.scopes"},
		},
		"entra, scope without /.default": {
			spec:       func(base string) *v1alpha1.DatabricksCredentialSpec { return azureSpec(base, testTenant, "all-apis") },
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "AADSTS1002012", wantStatus: 400,
		},
		"entra, conditional access": {
			spec: azure, setup: func(srv *idp.Server) { srv.FailNext(1, idp.Failure{Status: 403}) },
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "access_denied AADSTS53003", wantStatus: 403,
		},
		"entra, 500": {
			spec: azure, setup: func(srv *idp.Server) { srv.FailNext(1, idp.Failure{Status: 500}) },
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 500 server_error", wantStatus: 500,
		},
		"entra, throttled": {
			spec: azure, setup: func(srv *idp.Server) { srv.FailNext(1, idp.Failure{Status: 429, RetryAfter: "7"}) },
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 429 temporarily_unavailable", wantStatus: 429,
			wantRetryAfter: 7 * time.Second,
		},
		"databricks, wrong secret": {
			secret:     wrongSecret,
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "invalid_client", wantStatus: 401,
			wantMatch: regexp.MustCompile(`^invalid_client: Client authentication failed \(error_id [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\) \(hint: `),
		},
		"databricks, unknown client": {
			setup:      func(srv *idp.Server) { srv.RemoveDatabricksClient(testClientID) },
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "invalid_client", wantStatus: 401,
			wantIn: []string{"error_id "},
		},
		"databricks, invalid scope": {
			spec:       func(base string) *v1alpha1.DatabricksCredentialSpec { return databricksSpec(base, `bad"scope`) },
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "invalid_scope", wantStatus: 400,
			wantIn: []string{"spec.scopes"},
		},
		"500": {
			setup:      func(srv *idp.Server) { srv.FailNext(1, idp.Failure{Status: 500}) },
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 500 server_error", wantStatus: 500,
		},
		"429 with Retry-After": {
			setup:      func(srv *idp.Server) { srv.FailNext(1, idp.Failure{Status: 429, RetryAfter: "7"}) },
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 429 temporarily_unavailable", wantStatus: 429,
			wantRetryAfter: 7 * time.Second, wantIn: []string{"Retry-After 7s"},
		},
		"503 HTML": {
			setup:      func(srv *idp.Server) { srv.FailNext(1, idp.Failure{Status: 503}) },
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 503", wantStatus: 503,
			wantNotIn: []string{"test IdP", "Service Unavailable"},
		},
		"502 HTML": {
			setup:      func(srv *idp.Server) { srv.FailNext(1, idp.Failure{Status: 502}) },
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 502", wantStatus: 502,
		},
		"504 HTML with Retry-After": {
			setup:      func(srv *idp.Server) { srv.FailNext(1, idp.Failure{Status: 504, RetryAfter: "120"}) },
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 504", wantStatus: 504, wantRetryAfter: 2 * time.Minute,
		},
		"403 HTML": {
			setup:      func(srv *idp.Server) { srv.FailNext(1, idp.Failure{Status: 403, Body: html, ContentType: "text/html"}) },
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "HTTP 403", wantStatus: 403,
			wantIn: []string{"non-JSON", "text/html", "IP access list"}, wantNotIn: []string{"corporate proxy", "Forbidden"},
		},
		"403 Databricks IP access list": {
			setup:      func(srv *idp.Server) { srv.FailNext(1, idp.Failure{Status: 403}) },
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "HTTP 403", wantStatus: 403,
			wantIn: []string{"IP access list"}, wantNotIn: []string{"Source IP", "127.0.0.1"},
		},
		"404 HTML": {
			setup:      func(srv *idp.Server) { srv.FailNext(1, idp.Failure{Status: 404}) },
			wantReason: v1alpha1.ReasonNotFound, wantCode: "HTTP 404", wantStatus: 404,
		},
		"404, no such endpoint": {
			spec: func(base string) *v1alpha1.DatabricksCredentialSpec {
				return oauth2Spec(base+"/no/such/token", "", "x")
			},
			wantReason: v1alpha1.ReasonNotFound, wantCode: "HTTP 404", wantStatus: 404,
			wantIn: []string{"spec.oauth2.tokenURL"},
		},
		"200 with malformed JSON": {
			setup:      func(srv *idp.Server) { srv.FailNext(1, idp.Failure{Status: 200, Body: `{"access_token":`}) },
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 200", wantStatus: 200,
			wantIn: []string{"could not be read"}, wantNotIn: []string{"non-JSON"},
		},
		"200 without access_token": {
			setup: func(srv *idp.Server) {
				srv.FailNext(1, idp.Failure{Status: 200, Body: `{"token_type":"Bearer","expires_in":3600}`})
			},
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 200", wantStatus: 200,
			wantIn: []string{"could not be read"},
		},
		"200 HTML": {
			setup:      func(srv *idp.Server) { srv.FailNext(1, idp.Failure{Status: 200, Body: html, ContentType: "text/html"}) },
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 200", wantStatus: 200,
			wantIn: []string{"non-JSON", "text/html"}, wantNotIn: []string{"corporate proxy"},
		},
		"200 with an OAuth error": {
			setup: func(srv *idp.Server) {
				srv.FailNext(1, idp.Failure{Status: 200, Body: `{"error":"invalid_client","error_description":"Nope. Really."}`})
			},
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "invalid_client", wantStatus: 200,
			wantIn: []string{"Nope."}, wantNotIn: []string{"Really"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, fc := startIdP(t, idp.Options{})
			if tc.setup != nil {
				tc.setup(srv)
			}
			spec, secret := databricksSpec(srv.URL()), testClientSecret
			if tc.spec != nil {
				spec = tc.spec(srv.URL())
			}
			if tc.secret != "" {
				secret = tc.secret
			}
			p := newProvider(srv.CertPool(), fc)
			tok, err := p.Token(context.Background(), mustRequest(t, spec, secret, nil))
			if err == nil {
				t.Fatalf("Token succeeded (%v), want an error", tok)
			}
			e := requireError(t, err, testClientSecret, wrongSecret)
			if e.Reason != tc.wantReason || e.Code != tc.wantCode {
				t.Errorf("error %q: Reason %q Code %q, want %q %q", e, e.Reason, e.Code, tc.wantReason, tc.wantCode)
			}
			if e.StatusCode != tc.wantStatus {
				t.Errorf("StatusCode %d, want %d", e.StatusCode, tc.wantStatus)
			}
			if e.RetryAfter != tc.wantRetryAfter {
				t.Errorf("RetryAfter %s, want %s", e.RetryAfter, tc.wantRetryAfter)
			}
			if e.Hint == "" {
				t.Errorf("error %q has no hint", e)
			}
			for _, s := range tc.wantIn {
				if !strings.Contains(e.Error(), s) {
					t.Errorf("Error() = %q, want it to contain %q", e, s)
				}
			}
			for _, s := range tc.wantNotIn {
				if strings.Contains(e.Error(), s) {
					t.Errorf("Error() = %q, want it not to contain %q", e, s)
				}
			}
			if tc.wantMatch != nil && !tc.wantMatch.MatchString(e.Error()) {
				t.Errorf("Error() = %q, want it to match %s", e, tc.wantMatch)
			}
			if got := onlyRequest(t, srv); got.Status != tc.wantStatus {
				t.Errorf("IdP answered %d, want %d", got.Status, tc.wantStatus)
			}
		})
	}
}

// tlsServer starts an httptest TLS server and a provider (on the fake clock at t0) that trusts it.
func tlsServer(t *testing.T, h http.HandlerFunc, mods ...func(*Options)) (*httptest.Server, *ClientCredentials) {
	t.Helper()
	ts := httptest.NewTLSServer(h)
	t.Cleanup(ts.Close)
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	return ts, newProvider(pool, clocktesting.NewFakeClock(t0), mods...)
}

func TestTokenRedactsEchoedSecret(t *testing.T) {
	const secret = "Zq8~Kv.pW3+a/b=c"
	escaped := url.QueryEscape(secret) // how x/oauth2 puts it into HTTP Basic
	tests := map[string]struct {
		style  v1alpha1.AuthStyle
		status int
		body   func(sent string) string
		header bool // sent is the whole Authorization header
	}{
		"description echoes the secret from the form": {
			style: v1alpha1.AuthStyleParams, status: 401,
			body: func(sent string) string {
				return `{"error":"invalid_client","error_description":"Secret ` + sent + ` is wrong."}`
			},
		},
		"description echoes the secret as sent in Basic auth": {
			style: v1alpha1.AuthStyleHeader, status: 401,
			body: func(sent string) string {
				return `{"error":"invalid_client","error_description":"Secret ` + sent + ` is wrong."}`
			},
		},
		"Entra-style description echoes it before the trace": {
			style: v1alpha1.AuthStyleParams, status: 401,
			body: func(sent string) string {
				return `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret ` + sent + ` provided.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[7000215]}`
			},
		},
		"description echoes it at the length limit": {
			style: v1alpha1.AuthStyleParams, status: 400,
			body: func(sent string) string {
				return `{"error":"invalid_request","error_description":"` + strings.Repeat("x", 236) + sent + `"}`
			},
		},
		"error code echoes it": {
			style: v1alpha1.AuthStyleParams, status: 400,
			body: func(sent string) string { return `{"error":"bad_secret_` + sent + `"}` },
		},
		"error_id echoes it": {
			style: v1alpha1.AuthStyleParams, status: 401,
			body: func(sent string) string { return `{"error":"invalid_client","error_id":"` + sent + `"}` },
		},
		"5xx error code echoes it": {
			style: v1alpha1.AuthStyleParams, status: 503,
			body: func(sent string) string { return `{"error":"server_error for ` + sent + `"}` },
		},
		"200 error echoes it": {
			style: v1alpha1.AuthStyleParams, status: 200,
			body: func(sent string) string { return `{"error":"invalid_client","error_description":"` + sent + `"}` },
		},
		"description quotes the Authorization header (base64 of id:secret)": {
			style: v1alpha1.AuthStyleHeader, status: 401,
			body: func(sent string) string {
				return `{"error":"invalid_client","error_description":"Client authentication failed for Authorization: ` + sent + `."}`
			},
			header: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var header string
			ts, p := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
				_ = r.ParseForm()
				sent := r.PostForm.Get("client_secret")
				if _, pw, ok := r.BasicAuth(); ok {
					sent = pw // still form-encoded, as x/oauth2 sent it
				}
				if tc.header {
					header = r.Header.Get("Authorization")
					sent = header
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body(sent)))
			})
			req := mustRequest(t, oauth2Spec(ts.URL+"/token", tc.style, "x"), secret, nil)
			_, err := p.Token(context.Background(), req)
			e := requireError(t, err, secret, escaped, secret[:6], escaped[:len(escaped)-3])
			if !strings.Contains(e.Error(), "[red") {
				t.Errorf("Error() = %q, want the echoed secret replaced by [redacted]", e)
			}
			if encoded := strings.TrimPrefix(header, "Basic "); encoded != "" && strings.Contains(e.Error(), encoded[4:len(encoded)-4]) {
				t.Error("Error() still holds the base64 of the client ID and secret")
			}
		})
	}
}

// unsignedJWT builds a JWT with the given claims; the provider reads exp without verifying.
func unsignedJWT(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc([]byte(claims)) + ".c2lnbmF0dXJl"
}

func TestTokenExpiry(t *testing.T) {
	exp := func(d time.Duration) string { return fmt.Sprintf(`{"sub":"x","exp":%d}`, t0.Add(d).Unix()) }
	tests := map[string]struct {
		contentType string
		token       string
		extra       string // more JSON members, or the form's tail
		want        time.Time
		wantErr     string
	}{
		"expires_in": {
			token: "opaque-token-value", extra: `,"expires_in":1800`, want: t0.Add(30 * time.Minute),
		},
		"expires_in as a string": {
			token: "opaque-token-value", extra: `,"expires_in":"1800"`, want: t0.Add(30 * time.Minute),
		},
		"expires_in in a form-encoded answer": {
			contentType: "application/x-www-form-urlencoded",
			token:       "opaque-token-value", extra: "&expires_in=1800", want: t0.Add(30 * time.Minute),
		},
		"expires_in wins over the JWT's exp": {
			token: unsignedJWT(exp(45 * time.Minute)), extra: `,"expires_in":600`, want: t0.Add(10 * time.Minute),
		},
		"JWT exp without expires_in": {
			token: unsignedJWT(exp(45 * time.Minute)), want: t0.Add(45 * time.Minute),
		},
		"JWT exp with a fraction": {
			token: unsignedJWT(fmt.Sprintf(`{"exp":%d.75}`, t0.Add(time.Hour).Unix())), want: t0.Add(time.Hour),
		},
		"JWT exp when expires_in is 0": {
			token: unsignedJWT(exp(45 * time.Minute)), extra: `,"expires_in":0`, want: t0.Add(45 * time.Minute),
		},
		"JWT exp when expires_in is negative": {
			token: unsignedJWT(exp(45 * time.Minute)), extra: `,"expires_in":-5`, want: t0.Add(45 * time.Minute),
		},
		"JWT exp in a form-encoded answer": {
			contentType: "application/x-www-form-urlencoded",
			token:       unsignedJWT(exp(20 * time.Minute)), want: t0.Add(20 * time.Minute),
		},
		// x/oauth2 refuses a JSON answer whose expires_in is not an integer: unreadable, transient.
		"fractional expires_in in JSON": {
			token: "opaque-token-value", extra: `,"expires_in":1800.9`, wantErr: "could not be read",
		},
		"fractional expires_in in a form-encoded answer": {
			contentType: "application/x-www-form-urlencoded",
			token:       "opaque-token-value", extra: "&expires_in=1800.5", want: t0.Add(30 * time.Minute),
		},
		"absurd expires_in in a form-encoded answer falls back to the JWT's exp": {
			contentType: "application/x-www-form-urlencoded",
			token:       unsignedJWT(exp(45 * time.Minute)), extra: "&expires_in=1e300", want: t0.Add(45 * time.Minute),
		},
		"absurd expires_in with an opaque token": {
			token: "opaque-token-value", extra: `,"expires_in":99999999999999`, wantErr: "no expires_in",
		},
		"expires_in that is not a number": {
			token: "opaque-token-value", extra: `,"expires_in":"an hour"`, wantErr: "could not be read",
		},
		"expires_in that is not a number in a form-encoded answer": {
			contentType: "application/x-www-form-urlencoded",
			token:       "opaque-token-value", extra: "&expires_in=an+hour", wantErr: "no expires_in",
		},
		"opaque token without expires_in": {
			token: "opaque-token-value", wantErr: "no expires_in",
		},
		"opaque token, expires_in 0": {
			token: "opaque-token-value", extra: `,"expires_in":0`, wantErr: "no expires_in",
		},
		"JWT without exp": {
			token: unsignedJWT(`{"sub":"x"}`), wantErr: "no expires_in",
		},
		"JWT with a string exp that is not a number": {
			token: unsignedJWT(`{"exp":"soon"}`), wantErr: "no expires_in",
		},
		"JWT with an absurd exp": {
			token: unsignedJWT(`{"exp":1e300}`), wantErr: "no expires_in",
		},
		"JWT whose payload is not base64": {
			token: "aaa.!!!.bbb", wantErr: "no expires_in",
		},
		"JWT exp in the past": {
			token: unsignedJWT(exp(-time.Minute)), wantErr: "already expired",
		},
		"JWT exp now": {
			token: unsignedJWT(exp(0)), wantErr: "already expired",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ts, p := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.contentType == "application/x-www-form-urlencoded" {
					w.Header().Set("Content-Type", tc.contentType)
					_, _ = fmt.Fprintf(w, "access_token=%s&token_type=bearer%s", url.QueryEscape(tc.token), tc.extra)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer"%s}`, tc.token, tc.extra)
			})
			tok, err := p.Token(context.Background(), mustRequest(t, oauth2Spec(ts.URL+"/token", "", "x"), testClientSecret, nil))
			if tc.wantErr != "" {
				e := requireError(t, err, testClientSecret, tc.token)
				if !e.Transient || !strings.Contains(e.Message, tc.wantErr) {
					t.Errorf("error %q (transient %v), want a transient error saying %q", e, e.Transient, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.AccessToken != tc.token || !tok.IssuedAt.Equal(t0) || !tok.ExpiresAt.Equal(tc.want) {
				t.Errorf("token issued %s expires %s (token ok: %v), want %s and %s", tok.IssuedAt, tok.ExpiresAt, tok.AccessToken == tc.token, t0, tc.want)
			}
		})
	}
}

func TestTokenExpiryFromJWTWithTheIdP(t *testing.T) {
	tests := map[string]struct {
		spec func(base string) *v1alpha1.DatabricksCredentialSpec
		omit func(srv *idp.Server) // makes the IdP leave out expires_in
	}{
		"databricks, OmitExpiresIn option": {
			spec: func(base string) *v1alpha1.DatabricksCredentialSpec { return databricksSpec(base) },
		},
		"azure, SetOmitExpiresIn": {
			spec: func(base string) *v1alpha1.DatabricksCredentialSpec { return azureSpec(base, testTenant) },
			omit: func(srv *idp.Server) { srv.SetOmitExpiresIn(true) },
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, fc := startIdP(t, idp.Options{OmitExpiresIn: tc.omit == nil, TokenLifetime: 75 * time.Minute})
			if tc.omit != nil {
				tc.omit(srv)
			}
			p := newProvider(srv.CertPool(), fc)
			tok, err := p.Token(context.Background(), mustRequest(t, tc.spec(srv.URL()), testClientSecret, nil))
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			claims, err := srv.ValidateToken(tok.AccessToken)
			if err != nil {
				t.Fatalf("ValidateToken: %v", err)
			}
			if !tok.ExpiresAt.Equal(claims.ExpiresAt) || !tok.ExpiresAt.Equal(t0.Add(75*time.Minute)) {
				t.Errorf("ExpiresAt %s, want the token's exp %s (= t0+75m)", tok.ExpiresAt, claims.ExpiresAt)
			}
		})
	}
}

func TestTokenRedirectIsNotFollowed(t *testing.T) {
	for _, status := range []int{301, 302, 303, 307, 308} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			other, fc := startIdP(t, idp.Options{})
			var hits int
			var mu sync.Mutex
			ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				hits++
				mu.Unlock()
				http.Redirect(w, r, strings.Replace(other.URL(), "127.0.0.1", "localhost", 1)+"/oidc/v1/token", status)
			}))
			t.Cleanup(ts.Close)
			// Trust both servers and allow both hosts: only the refusal to follow protects the secret.
			pool := other.CertPool()
			pool.AddCert(ts.Certificate())
			p := newProvider(pool, fc, func(o *Options) { o.AllowedHosts = MustParseHostPolicy("127.0.0.1,localhost") })

			_, err := p.Token(context.Background(), mustRequest(t, oauth2Spec(ts.URL+"/token", "", "all-apis"), testClientSecret, nil))
			e := requireError(t, err, testClientSecret)
			if e.Reason != v1alpha1.ReasonInvalidSpec || e.Code != fmt.Sprintf("HTTP %d", status) || !strings.Contains(e.Message, "redirect") {
				t.Errorf("error %q: Reason %q Code %q, want InvalidSpec, HTTP %d, about a redirect", e, e.Reason, e.Code, status)
			}
			if n := other.RequestCount(); n != 0 {
				t.Errorf("the redirect target saw %d requests, want none", n)
			}
			mu.Lock()
			defer mu.Unlock()
			if hits != 1 {
				t.Errorf("the redirecting server saw %d requests, want 1", hits)
			}
		})
	}
}

func TestTokenTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tests := map[string]func(t *testing.T) (*ClientCredentials, Request){
		"IdP hangs before answering": func(t *testing.T) (*ClientCredentials, Request) {
			srv, fc := startIdP(t, idp.Options{})
			srv.FailNext(1, idp.Failure{Delay: 5 * time.Second})
			p := newProvider(srv.CertPool(), fc, func(o *Options) { o.Timeout = timeout })
			return p, mustRequest(t, databricksSpec(srv.URL()), testClientSecret, nil)
		},
		"headers sent, then the body hangs": func(t *testing.T) (*ClientCredentials, Request) {
			release := make(chan struct{})
			ts, p := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte(`{"access_token":"`))
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
				case <-release:
				}
			}, func(o *Options) { o.Timeout = timeout })
			t.Cleanup(func() { close(release) }) // runs before ts.Close
			return p, mustRequest(t, oauth2Spec(ts.URL+"/token", "", "x"), testClientSecret, nil)
		},
	}
	for name, setup := range tests {
		t.Run(name, func(t *testing.T) {
			p, req := setup(t)
			start := time.Now()
			_, err := p.Token(context.Background(), req)
			elapsed := time.Since(start)
			e := requireError(t, err, testClientSecret)
			if e.Code != "timeout" || !e.Transient {
				t.Errorf("error %q: Code %q transient %v, want a transient timeout", e, e.Code, e.Transient)
			}
			if !strings.Contains(e.Message, timeout.String()) {
				t.Errorf("Message %q, want it to name the timeout %s", e.Message, timeout)
			}
			// A generous bound: the point is that the 5 s hang does not hold the caller.
			if elapsed > 3*time.Second {
				t.Errorf("Token returned after %s, want about %s", elapsed, timeout)
			}
		})
	}
}

func TestTokenCallerContext(t *testing.T) {
	tests := map[string]struct {
		ctx      func() (context.Context, context.CancelFunc)
		wantCode string
		wantIn   string
	}{
		"caller's deadline is shorter than Timeout": {
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 200*time.Millisecond)
			},
			wantCode: "timeout",
		},
		"caller cancels": {
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(200*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantCode: "connection", wantIn: "cancelled",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, fc := startIdP(t, idp.Options{})
			srv.FailNext(1, idp.Failure{Delay: 5 * time.Second})
			p := newProvider(srv.CertPool(), fc) // default Timeout, 30 s
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			_, err := p.Token(ctx, mustRequest(t, databricksSpec(srv.URL()), testClientSecret, nil))
			e := requireError(t, err, testClientSecret)
			if e.Code != tc.wantCode || !e.Transient || !strings.Contains(e.Message, tc.wantIn) {
				t.Errorf("error %q: Code %q transient %v, want transient %q mentioning %q", e, e.Code, e.Transient, tc.wantCode, tc.wantIn)
			}
			if elapsed := time.Since(start); elapsed > 3*time.Second {
				t.Errorf("Token returned after %s, want it to follow the caller's context", elapsed)
			}
		})
	}
}

func TestTokenConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newProvider(x509.NewCertPool(), clocktesting.NewFakeClock(t0))
	_, err = p.Token(context.Background(), mustRequest(t, databricksSpec("https://"+addr), testClientSecret, nil))
	e := requireError(t, err, testClientSecret)
	if e.Code != "connection" || !e.Transient || e.Reason != v1alpha1.ReasonRefreshFailing {
		t.Errorf("error %q: Code %q Reason %q transient %v, want a transient connection error", e, e.Code, e.Reason, e.Transient)
	}
	if !strings.Contains(e.Message, addr) || !strings.Contains(e.Message, "refused") {
		t.Errorf("Message %q, want it to name %s and say the connection was refused", e.Message, addr)
	}
}

func TestTokenConcurrent(t *testing.T) {
	srv, fc := startIdP(t, idp.Options{})
	p := newProvider(srv.CertPool(), fc)
	reqs := []Request{
		mustRequest(t, databricksSpec(srv.URL()), testClientSecret, nil),
		mustRequest(t, azureSpec(srv.URL(), testTenant), testClientSecret, nil),
		mustRequest(t, databricksSpec(srv.URL()), testClientSecret, srv.CACertPEM()), // a second transport
	}
	const workers, each = 12, 3
	var wg sync.WaitGroup
	var mu sync.Mutex
	tokens := map[string]bool{}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tok, err := p.Token(context.Background(), reqs[(w+i)%len(reqs)])
				if err != nil {
					t.Errorf("Token: %v", err)
					return
				}
				mu.Lock()
				tokens[tok.AccessToken] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(tokens) != workers*each {
		t.Errorf("got %d distinct tokens, want %d: one exchange per call, no caching", len(tokens), workers*each)
	}
	if n := srv.TokenRequestCount(); n != workers*each {
		t.Errorf("IdP saw %d token requests, want %d", n, workers*each)
	}
}

func TestNewClientCredentialsDefaults(t *testing.T) {
	p := NewClientCredentials(Options{})
	if p.opts.Timeout != DefaultTimeout {
		t.Errorf("Timeout %s, want %s", p.opts.Timeout, DefaultTimeout)
	}
	if _, ok := p.opts.Clock.(clock.RealClock); !ok {
		t.Errorf("Clock %T, want clock.RealClock", p.opts.Clock)
	}
	// The zero HostPolicy refuses everything, so a provider without AllowedHosts sends nothing.
	_, err := p.Token(context.Background(), Request{Kind: KindDatabricks, TokenURL: "https://dbc-x.cloud.databricks.com/oidc/v1/token",
		ClientID: testClientID, ClientSecret: testClientSecret})
	if e := requireError(t, err, testClientSecret); e.Reason != v1alpha1.ReasonHostNotAllowed {
		t.Errorf("Reason %q, want %s", e.Reason, v1alpha1.ReasonHostNotAllowed)
	}
}

// TestTokenRefusesUnicodeHostTricks sends a token request for every host trick the default
// allow-list must refuse, as spec.host (databricks), spec.oauth2.tokenURL and
// spec.azure.authorityHost, and expects HostNotAllowed before any connection: the message names
// the host the request would have connected to.
func TestTokenRefusesUnicodeHostTricks(t *testing.T) {
	p := NewClientCredentials(Options{AllowedHosts: MustParseHostPolicy(DefaultAllowedTokenHosts), Timeout: 2 * time.Second})
	for name, tc := range unicodeHostTricks {
		if tc.allowed {
			continue
		}
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", tc.url, err)
		}
		origin := u.Scheme + "://" + u.Host
		specs := map[string]*v1alpha1.DatabricksCredentialSpec{
			"databricks host": databricksSpec(origin),
			"oauth2 tokenURL": {Host: "https://adb-1.azuredatabricks.net", OAuth2: &v1alpha1.OAuth2Identity{TokenURL: tc.url}},
			"azure authorityHost": {Host: "https://adb-1.azuredatabricks.net", Azure: &v1alpha1.AzureIdentity{
				TenantID: testTenant, AuthorityHost: origin, ClientSecretRef: &v1alpha1.ClientSecretReference{Name: "sp"}}},
		}
		for field, spec := range specs {
			t.Run(name+"/"+field, func(t *testing.T) {
				_, err := p.Token(context.Background(), mustRequest(t, spec, testClientSecret, nil))
				e := requireError(t, err, testClientSecret)
				if e.Reason != v1alpha1.ReasonHostNotAllowed {
					t.Fatalf("Reason %q (%v), want %s", e.Reason, e, v1alpha1.ReasonHostNotAllowed)
				}
				if tc.dialled != "" && !strings.Contains(e.Message, tc.dialled) {
					t.Errorf("message %q does not name the host it would connect to, %q", e.Message, tc.dialled)
				}
			})
		}
	}
}

// TestTransportsAreBounded is the bound on connection pools: a CA bundle rewritten 60 times keeps
// at most maxTransports pools, and a bundle in use keeps its pool.
func TestTransportsAreBounded(t *testing.T) {
	p := NewClientCredentials(Options{AllowedHosts: MustParseHostPolicy("127.0.0.1")})
	inUse, err := p.transport(nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: fmt.Sprint("ca-", i)},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.transport(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
			t.Fatal(err)
		}
		if again, _ := p.transport(nil); again != inUse {
			t.Fatal("the pool of a bundle in use was replaced")
		}
	}
	if n := len(p.transports); n > maxTransports {
		t.Fatalf("%d connection pools kept for 61 bundles, want at most %d", n, maxTransports)
	}
}
