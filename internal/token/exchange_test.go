package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/test/idp"
)

const (
	testNamespace   = "analytics"
	testSA          = "dbt-runner"
	testSubject     = "system:serviceaccount:" + testNamespace + ":" + testSA
	testIssuer      = "https://oidc.cluster.example/"
	testAudience    = "databricks-federation"
	testSPClientID  = "7a1c5e2b-3f4d-4c6e-8a9b-0c1d2e3f4a5b"
	testAppClientID = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
)

// clusterIssuer plays a Kubernetes API server's service-account issuer: an ES256 key (as
// envtest's) and its JWKS.
type clusterIssuer struct {
	key  *ecdsa.PrivateKey
	kid  string
	jwks []byte
}

func newClusterIssuer(t *testing.T) *clusterIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ci := &clusterIssuer{key: key, kid: "k8s-" + newJTI()[:8]}
	b := func(n []byte) string { return base64.RawURLEncoding.EncodeToString(n) }
	x, y := make([]byte, 32), make([]byte, 32)
	key.X.FillBytes(x)
	key.Y.FillBytes(y)
	ci.jwks, err = json.Marshal(map[string]any{"keys": []map[string]string{{
		"use": "sig", "kty": "EC", "kid": ci.kid, "crv": "P-256", "alg": "ES256", "x": b(x), "y": b(y),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return ci
}

// token signs a ServiceAccount-shaped token issued at now and valid for lifetime.
func (ci *clusterIssuer) token(t *testing.T, sub, aud string, now time.Time, lifetime time.Duration) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": testIssuer, "sub": sub, "aud": []string{aud},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(lifetime).Unix(), "jti": newJTI(),
		"kubernetes.io": map[string]any{"namespace": testNamespace, "serviceaccount": map[string]string{"name": testSA}},
	})
	tok.Header["kid"] = ci.kid
	s, err := tok.SignedString(ci.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// saTokens is a SubjectTokenFunc that mints tokens with a clusterIssuer on the fake clock, as the
// TokenRequest API would, and records what it was asked for.
type saTokens struct {
	t      *testing.T
	issuer *clusterIssuer
	now    func() time.Time
	// sub overrides the subject (default: the ServiceAccount's); err fails the request.
	sub string
	err error

	mu     sync.Mutex
	asked  []ServiceAccountToken
	issued []string
}

func (s *saTokens) mint(_ context.Context, sa ServiceAccountToken) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, sa)
	if s.err != nil {
		return "", s.err
	}
	sub := sa.Subject()
	if s.sub != "" {
		sub = s.sub
	}
	tok := s.issuer.token(s.t, sub, sa.Audience, s.now(), time.Duration(sa.ExpirationSeconds)*time.Second)
	s.issued = append(s.issued, tok)
	return tok, nil
}

func federationSpec(host, audience, clientID string) *v1alpha1.DatabricksCredentialSpec {
	return &v1alpha1.DatabricksCredentialSpec{
		Host:       host,
		Federation: &v1alpha1.FederationIdentity{ServiceAccountName: testSA, Audience: audience, ClientID: clientID},
	}
}

func azureWorkloadIdentitySpec(authority string) *v1alpha1.DatabricksCredentialSpec {
	return &v1alpha1.DatabricksCredentialSpec{
		Host: "https://adb-1234567890123456.7.azuredatabricks.net",
		Azure: &v1alpha1.AzureIdentity{TenantID: testTenant, AuthorityHost: authority, ClientID: testAppClientID,
			WorkloadIdentity: &v1alpha1.AzureWorkloadIdentity{ServiceAccountName: testSA}},
	}
}

func azureCertificateSpec(authority string) *v1alpha1.DatabricksCredentialSpec {
	return &v1alpha1.DatabricksCredentialSpec{
		Host: "https://adb-1234567890123456.7.azuredatabricks.net",
		Azure: &v1alpha1.AzureIdentity{TenantID: testTenant, AuthorityHost: authority, ClientID: testAppClientID,
			ClientCertificateRef: &v1alpha1.ClientCertificateReference{Name: "dbt-cert"}},
	}
}

func mustRequestFrom(t *testing.T, spec *v1alpha1.DatabricksCredentialSpec, in Inputs) Request {
	t.Helper()
	r, err := NewRequestFromInputs(spec, in)
	if err != nil {
		t.Fatalf("NewRequestFromInputs: %v", err)
	}
	return r
}

// secretless is the common set-up: the IdP and provider on the fake clock, a cluster issuer and
// a ServiceAccount token source.
type secretless struct {
	srv    *idp.Server
	p      *ClientCredentials
	issuer *clusterIssuer
	tokens *saTokens
	cert   testCert
}

func newSecretless(t *testing.T) *secretless {
	t.Helper()
	srv, fc := startIdP(t, idp.Options{})
	ci := newClusterIssuer(t)
	return &secretless{
		srv:    srv,
		p:      newProvider(srv.CertPool(), fc),
		issuer: ci,
		tokens: &saTokens{t: t, issuer: ci, now: fc.Now},
		cert:   newTestCert(t, t0.Add(-time.Hour), t0.Add(365*24*time.Hour), pkcs8),
	}
}

func (s *secretless) inputs() Inputs {
	return Inputs{Namespace: testNamespace, SubjectToken: s.tokens.mint, CertificatePEM: s.cert.certPEM, PrivateKeyPEM: s.cert.keyPEM}
}

func (s *secretless) addPolicy(t *testing.T, p idp.FederationPolicy) {
	t.Helper()
	if p.JWKS == nil {
		p.JWKS = s.issuer.jwks
	}
	if err := s.srv.AddFederationPolicy(p); err != nil {
		t.Fatal(err)
	}
}

func TestFederationWire(t *testing.T) {
	tests := map[string]struct {
		clientID     string
		wantFormKeys []string
		wantAuth     string
		wantSubject  string // of the issued Databricks token
	}{
		"service principal policy": {
			clientID:     testSPClientID,
			wantFormKeys: []string{"client_id", "grant_type", "scope", "subject_token", "subject_token_type"},
			wantAuth:     "form", wantSubject: testSPClientID,
		},
		"account-wide policy": {
			wantFormKeys: []string{"grant_type", "scope", "subject_token", "subject_token_type"},
			wantAuth:     "none", wantSubject: testSubject,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := newSecretless(t)
			s.addPolicy(t, idp.FederationPolicy{Issuer: testIssuer, Audiences: []string{"other", testAudience}, Subject: testSubject, ClientID: tc.clientID})
			req := mustRequestFrom(t, federationSpec(s.srv.URL(), testAudience, tc.clientID), s.inputs())
			tok, err := s.p.Token(context.Background(), req)
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			claims, err := s.srv.ValidateToken(tok.AccessToken)
			if err != nil || claims.Subject != tc.wantSubject || claims.Scope != "all-apis" {
				t.Errorf("issued token claims %+v (err %v), want subject %s and scope all-apis", claims, err, tc.wantSubject)
			}
			if want := (ServiceAccountToken{Namespace: testNamespace, Name: testSA, Audience: testAudience, ExpirationSeconds: 3600}); len(s.tokens.asked) != 1 || s.tokens.asked[0] != want {
				t.Errorf("ServiceAccount tokens requested: %+v, want one %+v", s.tokens.asked, want)
			}
			r := onlyRequest(t, s.srv)
			if r.Path != "/oidc/v1/token" || r.GrantType != GrantTypeTokenExchange || r.Scope != "all-apis" {
				t.Errorf("request %s grant %q scope %q", r.Path, r.GrantType, r.Scope)
			}
			if !slices.Equal(r.FormKeys, tc.wantFormKeys) || r.AuthMethod != tc.wantAuth || r.SecretPresent {
				t.Errorf("form keys %v auth %q secret %v, want %v, %q and no secret", r.FormKeys, r.AuthMethod, r.SecretPresent, tc.wantFormKeys, tc.wantAuth)
			}
			if r.AssertionType != "subject_token" || !r.AssertionVerified || r.AssertionAlg != "ES256" ||
				r.AssertionIssuer != testIssuer || r.AssertionSubject != testSubject || !slices.Equal(r.AssertionAudience, []string{testAudience}) {
				t.Errorf("the IdP did not verify the expected ServiceAccount token: %+v", r)
			}
			if got := s.srv.Assertions(); len(got) != 1 || got[0] != s.tokens.issued[0] {
				t.Error("the IdP did not receive the minted ServiceAccount token")
			}
			if tok.IssuedAt != t0 || tok.Lifetime() != idp.DefaultTokenLifetime {
				t.Errorf("token issued %s, lifetime %s", tok.IssuedAt, tok.Lifetime())
			}
		})
	}
}

func TestFederationTokenLifetimeFollowsTheServiceAccountToken(t *testing.T) {
	s := newSecretless(t)
	s.addPolicy(t, idp.FederationPolicy{Issuer: testIssuer, Audiences: []string{testAudience}, Subject: testSubject, ClientID: testSPClientID})
	spec := federationSpec(s.srv.URL(), testAudience, testSPClientID)
	spec.Federation.ExpirationSeconds = 1200
	tok, err := s.p.Token(context.Background(), mustRequestFrom(t, spec, s.inputs()))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Lifetime() != 20*time.Minute {
		t.Errorf("lifetime %s, want the ServiceAccount token's 20m", tok.Lifetime())
	}
	if s.tokens.asked[0].ExpirationSeconds != 1200 {
		t.Errorf("requested %d s, want 1200", s.tokens.asked[0].ExpirationSeconds)
	}
}

func TestAzureWorkloadIdentityWire(t *testing.T) {
	s := newSecretless(t)
	if err := s.srv.AddAzureFederatedCredential(testTenant, testAppClientID, testIssuer, testSubject, AzureTokenExchangeAudience, s.issuer.jwks); err != nil {
		t.Fatal(err)
	}
	req := mustRequestFrom(t, azureWorkloadIdentitySpec(s.srv.URL()), s.inputs())
	tok, err := s.p.Token(context.Background(), req)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if claims, err := s.srv.ValidateToken(tok.AccessToken); err != nil || claims.ClientID != testAppClientID || claims.TenantID != testTenant {
		t.Errorf("issued token %+v (err %v)", claims, err)
	}
	want := ServiceAccountToken{Namespace: testNamespace, Name: testSA, Audience: "api://AzureADTokenExchange", ExpirationSeconds: 600}
	if len(s.tokens.asked) != 1 || s.tokens.asked[0] != want {
		t.Errorf("ServiceAccount tokens requested: %+v, want one %+v", s.tokens.asked, want)
	}
	r := onlyRequest(t, s.srv)
	if r.Path != "/"+testTenant+"/oauth2/v2.0/token" || r.GrantType != "client_credentials" || r.Scope != AzureDatabricksScope || r.ClientID != testAppClientID {
		t.Errorf("request %+v", r)
	}
	if want := []string{"client_assertion", "client_assertion_type", "client_id", "grant_type", "scope"}; !slices.Equal(r.FormKeys, want) || r.SecretPresent {
		t.Errorf("form keys %v secret %v, want %v and no secret", r.FormKeys, r.SecretPresent, want)
	}
	if r.AssertionType != "client_assertion" || !r.AssertionVerified || r.AssertionIssuer != testIssuer || r.AssertionSubject != testSubject ||
		!slices.Equal(r.AssertionAudience, []string{"api://AzureADTokenExchange"}) {
		t.Errorf("the IdP did not verify the expected ServiceAccount token: %+v", r)
	}
}

func TestAzureCertificateWire(t *testing.T) {
	for name, format := range map[string]keyFormat{"PKCS#1": pkcs1, "PKCS#8": pkcs8} {
		t.Run(name, func(t *testing.T) {
			s := newSecretless(t)
			s.cert = newTestCert(t, t0.Add(-time.Hour), t0.Add(24*time.Hour), format)
			if err := s.srv.AddAzureCertificate(testTenant, testAppClientID, s.cert.certPEM); err != nil {
				t.Fatal(err)
			}
			tok, err := s.p.Token(context.Background(), mustRequestFrom(t, azureCertificateSpec(s.srv.URL()), s.inputs()))
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if _, err := s.srv.ValidateToken(tok.AccessToken); err != nil {
				t.Error(err)
			}
			r := onlyRequest(t, s.srv)
			if want := []string{"client_assertion", "client_assertion_type", "client_id", "grant_type", "scope"}; !slices.Equal(r.FormKeys, want) || r.SecretPresent {
				t.Errorf("form keys %v secret %v, want %v and no secret", r.FormKeys, r.SecretPresent, want)
			}
			if !r.AssertionVerified || r.AssertionAlg != "PS256" || r.AssertionThumbprint != Thumbprint(s.cert.cert.Raw) ||
				r.AssertionIssuer != testAppClientID || r.AssertionSubject != testAppClientID ||
				!slices.Equal(r.AssertionAudience, []string{s.srv.URL() + "/" + testTenant + "/oauth2/v2.0/token"}) ||
				r.AssertionExpiresAt.Sub(r.AssertionIssuedAt) != ClientAssertionLifetime || !r.AssertionIssuedAt.Equal(t0) {
				t.Errorf("the IdP did not verify the expected certificate assertion: %+v", r)
			}
			if len(s.tokens.asked) != 0 {
				t.Error("a ServiceAccount token was requested for a certificate identity")
			}
		})
	}
}

func TestAssertionExchangeErrors(t *testing.T) {
	tests := map[string]struct {
		setup      func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec
		wantReason string
		wantCode   string
		wantText   string // in the message
		transient  bool
	}{
		"federation: the policy expects another audience": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				s.addPolicy(t, idp.FederationPolicy{Issuer: testIssuer, Audiences: []string{"the-account-id"}, Subject: testSubject, ClientID: testSPClientID})
				return federationSpec(s.srv.URL(), testAudience, testSPClientID)
			},
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "invalid_grant", wantText: "audience",
		},
		"federation: the policy expects another subject": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				s.addPolicy(t, idp.FederationPolicy{Issuer: testIssuer, Audiences: []string{testAudience}, Subject: "system:serviceaccount:other:dbt-runner", ClientID: testSPClientID})
				return federationSpec(s.srv.URL(), testAudience, testSPClientID)
			},
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "invalid_grant", wantText: "subject",
		},
		"federation: the policy trusts another issuer": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				s.addPolicy(t, idp.FederationPolicy{Issuer: "https://other.example/", Audiences: []string{testAudience}, Subject: testSubject, ClientID: testSPClientID})
				return federationSpec(s.srv.URL(), testAudience, testSPClientID)
			},
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "invalid_grant", wantText: "issuer",
		},
		"federation: the policy holds another key set": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				s.addPolicy(t, idp.FederationPolicy{Issuer: testIssuer, Audiences: []string{testAudience}, Subject: testSubject, ClientID: testSPClientID, JWKS: newClusterIssuer(t).jwks})
				return federationSpec(s.srv.URL(), testAudience, testSPClientID)
			},
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "invalid_grant", wantText: "signature",
		},
		"federation: no policy for the service principal": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				return federationSpec(s.srv.URL(), testAudience, testSPClientID)
			},
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "invalid_grant", wantText: testSPClientID,
		},
		"federation: the ServiceAccount is missing": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				s.tokens.err = &Error{Reason: v1alpha1.ReasonSecretNotFound, Message: `ServiceAccount "dbt-runner" does not exist`, Hint: "create it"}
				return federationSpec(s.srv.URL(), testAudience, testSPClientID)
			},
			wantReason: v1alpha1.ReasonSecretNotFound, wantText: `ServiceAccount "dbt-runner"`,
		},
		"federation: the TokenRequest fails": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				s.tokens.err = errors.New("etcdserver: request timed out, token eyJhbGciOiJFUzI1NiJ9.secret")
				return federationSpec(s.srv.URL(), testAudience, testSPClientID)
			},
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "TokenRequest", wantText: "analytics/dbt-runner", transient: true,
		},
		"azure workload identity: no federated credential": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				s.srv.AddAzureApp(testTenant, testAppClientID, "an-unrelated-secret")
				return azureWorkloadIdentitySpec(s.srv.URL())
			},
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "AADSTS70021", wantText: "No matching federated identity record",
		},
		"azure workload identity: issuer mismatch": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				must(t, s.srv.AddAzureFederatedCredential(testTenant, testAppClientID, "https://other.example/", testSubject, AzureTokenExchangeAudience, s.issuer.jwks))
				return azureWorkloadIdentitySpec(s.srv.URL())
			},
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "AADSTS700211", wantText: "issuer",
		},
		"azure workload identity: audience mismatch": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				must(t, s.srv.AddAzureFederatedCredential(testTenant, testAppClientID, testIssuer, testSubject, "api://SomethingElse", s.issuer.jwks))
				return azureWorkloadIdentitySpec(s.srv.URL())
			},
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "AADSTS700212", wantText: "audience",
		},
		"azure workload identity: subject mismatch (case-sensitive)": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				must(t, s.srv.AddAzureFederatedCredential(testTenant, testAppClientID, testIssuer, strings.ToUpper(testSubject), AzureTokenExchangeAudience, s.issuer.jwks))
				return azureWorkloadIdentitySpec(s.srv.URL())
			},
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "AADSTS700213", wantText: "subject",
		},
		"azure workload identity: keys of another issuer": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				must(t, s.srv.AddAzureFederatedCredential(testTenant, testAppClientID, testIssuer, testSubject, AzureTokenExchangeAudience, newClusterIssuer(t).jwks))
				return azureWorkloadIdentitySpec(s.srv.URL())
			},
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "AADSTS700027", wantText: "signature",
		},
		"azure certificate: another certificate is registered": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				other := certFor(t, mustRSA(t), t0.Add(-time.Hour), t0.Add(time.Hour), pkcs1)
				must(t, s.srv.AddAzureCertificate(testTenant, testAppClientID, other.certPEM))
				return azureCertificateSpec(s.srv.URL())
			},
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "AADSTS700027", wantText: "invalid signature",
		},
		"azure certificate: expired locally, nothing sent": {
			setup: func(t *testing.T, s *secretless) *v1alpha1.DatabricksCredentialSpec {
				s.cert = newTestCert(t, t0.Add(-48*time.Hour), t0.Add(-time.Minute), pkcs1)
				must(t, s.srv.AddAzureCertificate(testTenant, testAppClientID, s.cert.certPEM))
				return azureCertificateSpec(s.srv.URL())
			},
			wantReason: v1alpha1.ReasonInvalidSpec, wantText: "expired",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := newSecretless(t)
			spec := tc.setup(t, s)
			_, err := s.p.Token(context.Background(), mustRequestFrom(t, spec, s.inputs()))
			secrets := append(s.tokens.issued, s.srv.Assertions()...)
			e := requireError(t, err, secrets...)
			if e.Reason != tc.wantReason || e.Transient != tc.transient || (tc.wantCode != "" && e.Code != tc.wantCode) ||
				!strings.Contains(e.Message, tc.wantText) || e.Hint == "" {
				t.Errorf("got reason %s transient %v code %q message %q hint %q; want %s/%v/%q mentioning %q with a hint",
					e.Reason, e.Transient, e.Code, e.Message, e.Hint, tc.wantReason, tc.transient, tc.wantCode, tc.wantText)
			}
			if strings.Contains(e.Error(), "eyJ") {
				t.Errorf("error text quotes a JWT: %s", e.Error())
			}
			if tc.wantReason == v1alpha1.ReasonInvalidSpec || tc.wantReason == v1alpha1.ReasonSecretNotFound || tc.transient {
				if n := s.srv.RequestCount(); n != 0 {
					t.Errorf("the IdP saw %d requests; a local failure must send nothing", n)
				}
			}
		})
	}
}

func TestAssertionExchangeHostNotAllowed(t *testing.T) {
	s := newSecretless(t)
	s.addPolicy(t, idp.FederationPolicy{Issuer: testIssuer, Audiences: []string{testAudience}, Subject: testSubject})
	p := newProvider(s.srv.CertPool(), nil, func(o *Options) { o.AllowedHosts = MustParseHostPolicy("*.cloud.databricks.com") })
	_, err := p.Token(context.Background(), mustRequestFrom(t, federationSpec(s.srv.URL(), testAudience, ""), s.inputs()))
	if e := requireError(t, err); e.Reason != v1alpha1.ReasonHostNotAllowed {
		t.Errorf("reason %s, want HostNotAllowed", e.Reason)
	}
	if len(s.tokens.asked) != 0 || s.srv.RequestCount() != 0 {
		t.Error("a ServiceAccount token was minted for, or sent to, a host that is not allowed")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
