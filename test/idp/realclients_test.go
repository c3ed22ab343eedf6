package idp

// Tests that drive the real client libraries users run against the fake: azidentity (MSAL Go
// underneath) for Entra ID, databricks-sdk-go for Databricks OAuth. They prove the fake accepts
// what real clients send, not only what the operator sends; each test checks the issued token
// with ValidateToken, never by printing it.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/databricks/databricks-sdk-go/config"
	"github.com/golang-jwt/jwt/v5"
)

// caTransport is an *http.Transport that trusts the IdP's CA as a user would configure it: the
// PEM of a CA bundle parsed into a pool of its own (no InsecureSkipVerify, no system roots).
func caTransport(t testing.TB, s *Server) *http.Transport {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CACertPEM()) {
		t.Fatal("CACertPEM holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// onlyHost is a transport that sends requests to one host:port and refuses any other without
// dialling, remembering what it refused: the tests must never reach the internet, and must see
// when a client tries to.
type onlyHost struct {
	host string
	next http.RoundTripper

	mu      sync.Mutex
	refused []string
}

func (o *onlyHost) Do(r *http.Request) (*http.Response, error) { return o.RoundTrip(r) }

func (o *onlyHost) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != o.host {
		o.mu.Lock()
		o.refused = append(o.refused, r.URL.Scheme+"://"+r.URL.Host+r.URL.Path)
		o.mu.Unlock()
		return nil, fmt.Errorf("test transport: refusing a request to %s, which is not the test IdP", r.URL.Host)
	}
	return o.next.RoundTrip(r)
}

func (o *onlyHost) Refused() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.refused)
}

// azClientOptions points azidentity at the fake: the authority host is the IdP's URL and the
// transport trusts its CA. Retries are off so that a refused request fails the test at once
// (azcore does not retry 4xx anyway; this only shortens 5xx cases).
func azClientOptions(t testing.TB, s *Server) (azcore.ClientOptions, *onlyHost) {
	t.Helper()
	tr := &onlyHost{host: s.Addr(), next: caTransport(t, s)}
	return azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: s.URL() + "/"},
		Transport: tr,
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}, tr
}

// getAzureDatabricksToken asks cred for a token for Azure Databricks, as an Azure SDK client or
// the operator's users' tooling would, and checks it the way Azure Databricks would.
func getAzureDatabricksToken(t *testing.T, s *Server, cred azcore.TokenCredential, clientID, wantACR string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{azScope}})
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	c, err := s.ValidateToken(tok.Token)
	if err != nil {
		t.Fatalf("ValidateToken: %v", err)
	}
	if c.Audience != AzureDatabricksResourceID || c.ClientID != clientID || c.TenantID != tenantID {
		t.Errorf("token claims: aud %q appid %q tid %q; want %q, %q, %q", c.Audience, c.ClientID, c.TenantID, AzureDatabricksResourceID, clientID, tenantID)
	}
	if acr := jwtClaim(t, tok.Token, "appidacr"); acr != wantACR {
		t.Errorf("appidacr = %v, want %s", acr, wantACR)
	}
	// MSAL computes ExpiresOn from expires_in on its own clock; it matches the token's exp.
	if d := tok.ExpiresOn.Sub(c.ExpiresAt); d < -5*time.Second || d > 5*time.Second {
		t.Errorf("ExpiresOn %v, token exp %v", tok.ExpiresOn, c.ExpiresAt)
	}

	// What MSAL sent: the tenant's discovery document first, then one token request with its
	// scope string (the one Entra accepts and the fake used to refuse).
	var discovery, token []Request
	for _, r := range s.Requests() {
		switch r.Endpoint {
		case EndpointDiscovery:
			discovery = append(discovery, r)
		case EndpointEntraToken:
			token = append(token, r)
		default:
			t.Errorf("unexpected request %s %s", r.Method, r.Path)
		}
	}
	if len(discovery) != 1 || discovery[0].Path != "/"+tenantID+"/v2.0/.well-known/openid-configuration" || discovery[0].Status != http.StatusOK {
		t.Errorf("discovery requests:\n%s", redacted(discovery...))
	}
	if len(token) != 1 || token[0].Status != http.StatusOK || token[0].Scope != msalScope || token[0].ClientID != clientID {
		t.Fatalf("token requests:\n%s", redacted(token...))
	}

	// A second GetToken is served from MSAL's cache: the token is usable as issued.
	if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{azScope}}); err != nil {
		t.Fatalf("second GetToken: %v", err)
	}
	if n := s.TokenRequestCount(); n != 1 {
		t.Errorf("TokenRequestCount after a cached GetToken = %d, want 1", n)
	}
}

// redacted formats recorded requests for a failure message without the tokens they issued.
func redacted(reqs ...Request) string {
	var b strings.Builder
	for _, r := range reqs {
		if r.IssuedToken != "" {
			r.IssuedToken = "(issued, not printed)"
		}
		fmt.Fprintf(&b, "%+v\n", r)
	}
	return b.String()
}

// jwtClaim reads one claim of a token without verifying it (ValidateToken did).
func jwtClaim(t testing.TB, token, name string) any {
	t.Helper()
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		t.Fatalf("parse token: %v", err)
	}
	return claims[name]
}

// Real users of an authority host other than Microsoft's clouds (Azure Stack, sovereign or
// private clouds, and this fake) set DisableInstanceDiscovery: azidentity documents it for
// exactly that case, because otherwise MSAL first asks login.microsoftonline.com whether the
// host is a known Entra instance. TestAzidentityInstanceDiscovery shows that request.
func TestAzidentityClientSecret(t *testing.T) {
	s := start(t, Options{})
	opts, _ := azClientOptions(t, s)
	cred, err := azidentity.NewClientSecretCredential(tenantID, azClientID, azSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	getAzureDatabricksToken(t, s, cred, azClientID, "1")
	if r := s.Requests()[len(s.Requests())-1]; r.AuthMethod != "form" || !r.SecretPresent || r.AssertionType != "" {
		t.Errorf("token request: %s", redacted(r))
	}

	// The real client sees the fake's refusals as Entra's: a wrong secret is AADSTS7000215.
	bad, err := azidentity.NewClientSecretCredential(tenantID, azClientID, "not-the-secret",
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{azScope}})
	var authErr *azidentity.AuthenticationFailedError
	if !errors.As(err, &authErr) || authErr.RawResponse == nil || authErr.RawResponse.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("wrong secret: %v", err)
	}
}

func TestAzidentityClientCertificate(t *testing.T) {
	s := start(t, Options{})
	now := time.Now()
	cert := newClientCert(t, now.Add(-time.Hour), now.Add(24*time.Hour))
	if err := s.AddAzureCertificate(tenantID, azClientID, cert.certPEM); err != nil {
		t.Fatal(err)
	}
	// What a user has: a PEM file with the certificate and its private key.
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.key)
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(append([]byte(nil), cert.certPEM...), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	certs, key, err := azidentity.ParseCertificates(bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := azClientOptions(t, s)
	cred, err := azidentity.NewClientCertificateCredential(tenantID, azClientID, certs, key,
		&azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	getAzureDatabricksToken(t, s, cred, azClientID, "2")
	r := s.Requests()[len(s.Requests())-1]
	// MSAL Go signs PS256 and sends the thumbprint in padded standard base64: the fake has to
	// decode it, as Entra does, rather than compare strings.
	if !r.AssertionVerified || r.AssertionType != "client_assertion" || r.AssertionAlg != "PS256" || r.SecretPresent {
		t.Errorf("token request: %s", redacted(r))
	}
	if !strings.HasSuffix(r.AssertionThumbprint, "=") {
		t.Errorf("x5t#S256 %q is not MSAL Go's padded standard base64 any more; the test no longer covers that encoding", r.AssertionThumbprint)
	}
}

// federatedIdentity registers a federated identity credential for a ServiceAccount-like issuer
// and returns a function that signs a fresh token for it, as the kubelet projects one.
func federatedIdentity(t *testing.T, s *Server, clientID string) func() string {
	t.Helper()
	iss := newECIssuer(t)
	const audience = "api://AzureADTokenExchange" // the audience Entra's docs prescribe
	if err := s.AddAzureFederatedCredential(tenantID, clientID, fedIssuer, fedSubject, audience, iss.jwks); err != nil {
		t.Fatal(err)
	}
	return func() string {
		return iss.saToken(t, time.Now(), time.Hour, func(c jwt.MapClaims) { c["aud"] = []string{audience} })
	}
}

func TestAzidentityClientAssertion(t *testing.T) {
	s := start(t, Options{})
	const app = "5e6f7a8b-0000-4000-8000-00000000a55e"
	saToken := federatedIdentity(t, s, app)
	calls := 0
	opts, _ := azClientOptions(t, s)
	cred, err := azidentity.NewClientAssertionCredential(tenantID, app, func(context.Context) (string, error) {
		calls++
		return saToken(), nil
	}, &azidentity.ClientAssertionCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	getAzureDatabricksToken(t, s, cred, app, "2")
	if r := s.Requests()[len(s.Requests())-1]; !r.AssertionVerified || r.AssertionAlg != "ES256" || r.AssertionIssuer != fedIssuer || r.AssertionSubject != fedSubject {
		t.Errorf("token request: %s", redacted(r))
	}
	if calls != 1 {
		t.Errorf("assertion callback called %d times, want 1", calls)
	}
}

// WorkloadIdentityCredential is what AKS workload identity users run: the same client assertion,
// read from the projected ServiceAccount token file.
func TestAzidentityWorkloadIdentity(t *testing.T) {
	s := start(t, Options{})
	const app = "5e6f7a8b-0000-4000-8000-00000000a55f"
	saToken := federatedIdentity(t, s, app)
	file := filepath.Join(t.TempDir(), "azure-identity-token")
	if err := os.WriteFile(file, []byte(saToken()), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, _ := azClientOptions(t, s)
	cred, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
		ClientOptions: opts, DisableInstanceDiscovery: true, TenantID: tenantID, ClientID: app, TokenFilePath: file,
	})
	if err != nil {
		t.Fatal(err)
	}
	getAzureDatabricksToken(t, s, cred, app, "2")
}

// Without DisableInstanceDiscovery, MSAL asks login.microsoftonline.com about any authority host
// it does not know (authority.go, AADInstanceDiscovery: the discovery host is the default one
// unless the authority is trusted), before it talks to the authority at all. Entra answers
// invalid_instance for a host it does not know, so the option is required for this fake as for
// any private cloud; the test transport refuses the request instead of letting it leave.
func TestAzidentityInstanceDiscovery(t *testing.T) {
	s := start(t, Options{})
	opts, tr := azClientOptions(t, s)
	cred, err := azidentity.NewClientSecretCredential(tenantID, azClientID, azSecret, &azidentity.ClientSecretCredentialOptions{ClientOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{azScope}}); err == nil {
		t.Fatal("GetToken succeeded without reaching instance discovery")
	}
	refused := tr.Refused()
	if len(refused) == 0 || refused[0] != "https://login.microsoftonline.com/common/discovery/instance" {
		t.Errorf("refused requests %v, want instance discovery at login.microsoftonline.com", refused)
	}
	if n := s.RequestCount(); n != 0 {
		t.Errorf("the IdP saw %d requests before instance discovery", n)
	}
}

// explicitOnly is a databricks-sdk-go config loader that loads nothing, so that the SDK uses
// exactly the fields the test sets and neither DATABRICKS_* / ARM_* variables nor a
// ~/.databrickscfg of the machine running the tests. The requests are the same as with the
// default loaders.
type explicitOnly struct{}

func (explicitOnly) Name() string                   { return "test: explicit fields only" }
func (explicitOnly) Configure(*config.Config) error { return nil }

// databricksBearer authenticates a request as the SDK does before every API call and returns
// the bearer token it set, checked against the fake as a workspace would check it.
func databricksBearer(t *testing.T, s *Server, cfg *config.Config) Claims {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL()+"/api/2.0/clusters/list", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Authenticate(req); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	h := req.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		t.Fatalf("Authorization header is not a bearer token (%d characters)", len(h))
	}
	c, err := s.ValidateToken(token)
	if err != nil {
		t.Fatalf("ValidateToken: %v", err)
	}
	if c.Issuer != s.URL()+"/oidc" || c.Audience != s.URL() || c.Scope != "all-apis" {
		t.Errorf("token claims: iss %q aud %q scope %q", c.Issuer, c.Audience, c.Scope)
	}
	// The SDK discovers the token endpoint from the workspace's metadata, then asks for a token.
	var paths []string
	for _, r := range s.Requests() {
		paths = append(paths, r.Method+" "+r.Path)
		if r.Status != http.StatusOK {
			t.Errorf("%s %s answered %d", r.Method, r.Path, r.Status)
		}
	}
	if want := []string{"GET /oidc/.well-known/oauth-authorization-server", "POST /oidc/v1/token"}; !slices.Equal(paths, want) {
		t.Errorf("requests %v, want %v", paths, want)
	}
	return c
}

func TestDatabricksSDKM2M(t *testing.T) {
	s := start(t, Options{})
	cfg := &config.Config{
		Host:          s.URL(),
		ClientID:      dbClientID,
		ClientSecret:  dbSecret,
		AuthType:      "oauth-m2m",
		HTTPTransport: caTransport(t, s),
		Loaders:       []config.Loader{explicitOnly{}},
	}
	c := databricksBearer(t, s, cfg)
	if c.ClientID != dbClientID || c.Subject != dbClientID {
		t.Errorf("token for client %q subject %q, want %q", c.ClientID, c.Subject, dbClientID)
	}
	if r := s.Requests()[1]; r.AuthMethod != "basic" || !r.SecretPresent || r.GrantType != "client_credentials" || r.Scope != "all-apis" {
		t.Errorf("token request: %s", redacted(r))
	}

	// A wrong secret is refused through the SDK too, with the fake's invalid_client.
	s.ResetRequests()
	bad := &config.Config{Host: s.URL(), ClientID: dbClientID, ClientSecret: "nope", AuthType: "oauth-m2m",
		HTTPTransport: caTransport(t, s), Loaders: []config.Loader{explicitOnly{}}}
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/api/2.0/clusters/list", nil)
	if err := bad.Authenticate(req); err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("wrong secret: %v", err)
	}
}

// databricks-sdk-go v0.90.0 exchanges a federated JWT read from a file (auth type file-oidc,
// DATABRICKS_OIDC_TOKEN_FILEPATH) for a Databricks token with an RFC 8693 token exchange at the
// workspace's token endpoint; env-oidc and github-oidc send the same request with the JWT taken
// from elsewhere. With a client ID it is workload identity federation (a service principal's
// policy); without, account-wide federation.
func TestDatabricksSDKTokenFederation(t *testing.T) {
	for _, tc := range []struct {
		name, clientID, wantSubject string
	}{
		{"service principal policy", spClientID, spClientID},
		{"account-wide policy", "", fedSubject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, Options{})
			iss := newECIssuer(t)
			if err := s.AddFederationPolicy(FederationPolicy{Issuer: fedIssuer, Audiences: []string{fedAudience},
				Subject: fedSubject, JWKS: iss.jwks, ClientID: tc.clientID}); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(file, []byte(iss.saToken(t, time.Now(), time.Hour)), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := &config.Config{
				Host:              s.URL(),
				ClientID:          tc.clientID,
				AuthType:          "file-oidc",
				OIDCTokenFilepath: file,
				HTTPTransport:     caTransport(t, s),
				Loaders:           []config.Loader{explicitOnly{}},
			}
			c := databricksBearer(t, s, cfg)
			if c.Subject != tc.wantSubject {
				t.Errorf("token subject %q, want %q", c.Subject, tc.wantSubject)
			}
			r := s.Requests()[1]
			if r.GrantType != GrantTypeTokenExchange || !r.AssertionVerified || r.AssertionType != "subject_token" || r.SecretPresent {
				t.Errorf("token request: %s", redacted(r))
			}
			if got := slices.Contains(r.FormKeys, "client_id"); got != (tc.clientID != "") {
				t.Errorf("client_id sent = %v, form keys %v", got, r.FormKeys)
			}
		})
	}
}
