package idp

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const (
	dbClientID = "6a1b7c0e-1111-4e5f-9a3b-0123456789ab"
	dbSecret   = "dose0123456789abcdefSECRETdb"
	tenantID   = "f4da2730-4463-4910-98a7-13d0523c0b2a"
	azClientID = "0b1c2d3e-2222-4f5a-8b9c-abcdefabcdef"
	azSecret   = "Abc8Q~secret.value_with-chars~XYZ"
	dbScope    = "all-apis"
	azScope    = AzureDatabricksResourceID + "/.default"
	entraPath  = "/" + tenantID + "/oauth2/v2.0/token"
	dbPath     = "/oidc/v1/token"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// fakeClock is a settable Options.Clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	s.AddDatabricksClient(dbClientID, dbSecret)
	s.AddAzureApp(tenantID, azClientID, azSecret)
	return s
}

// call describes one HTTP request to the server.
type call struct {
	method      string // default POST
	path        string
	form        url.Values
	body        *string // raw body instead of form
	contentType string  // default application/x-www-form-urlencoded
	basic       []string
	header      map[string]string
	ctx         context.Context
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) object(t testing.TB) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, a.body)
	}
	return m
}

// printable is the body for a failure message: an answer that carries a token is not printed,
// so that a test expecting a refusal never writes a token to the test output.
func (a answer) printable() string {
	if bytes.Contains(a.body, []byte(`"access_token"`)) {
		return "(an answer with an access token, not printed)"
	}
	return string(a.body)
}

func trySend(s *Server, c call) (answer, error) {
	method := c.method
	if method == "" {
		method = http.MethodPost
	}
	body := c.form.Encode()
	if c.body != nil {
		body = *c.body
	}
	ctx := c.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	var rd io.Reader
	if method == http.MethodPost {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL()+c.path, rd)
	if err != nil {
		return answer{}, err
	}
	if method == http.MethodPost {
		ct := c.contentType
		if ct == "" {
			ct = "application/x-www-form-urlencoded"
		}
		req.Header.Set("Content-Type", ct)
	}
	if c.basic != nil {
		// RFC 6749 §2.3.1, as golang.org/x/oauth2 does it.
		req.SetBasicAuth(url.QueryEscape(c.basic[0]), url.QueryEscape(c.basic[1]))
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func send(t testing.TB, s *Server, c call) answer {
	t.Helper()
	a, err := trySend(s, c)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	return a
}

func dbForm() url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "scope": {dbScope}}
}

func entraForm() url.Values {
	return url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {azClientID},
		"client_secret": {azSecret},
		"scope":         {azScope},
	}
}

func with(v url.Values, kv ...string) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "<delete>" {
			out.Del(kv[i])
		} else {
			out.Set(kv[i], kv[i+1])
		}
	}
	return out
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func wantKeys(t testing.TB, m map[string]any, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := keys(m); !slices.Equal(got, want) {
		t.Errorf("JSON keys = %v, want %v", got, want)
	}
}

func jwtHeader(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatalf("header: %v", err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("header: %v", err)
	}
	return h
}

func TestStartTLS(t *testing.T) {
	s := start(t, Options{})

	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") || strings.HasSuffix(s.URL(), "/") {
		t.Errorf("URL() = %q", s.URL())
	}
	if s.URL() != "https://"+s.Addr() {
		t.Errorf("URL() = %q, Addr() = %q", s.URL(), s.Addr())
	}

	block, rest := pem.Decode(s.CACertPEM())
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("CACertPEM is not a single PEM certificate")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA {
		t.Errorf("CA certificate is not a CA")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CACertPEM()) {
		t.Fatal("AppendCertsFromPEM failed")
	}

	// The serving certificate chains to the CA and is valid for every loopback name.
	conn, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("dial with ServerName localhost: %v", err)
	}
	state := conn.ConnectionState()
	_ = conn.Close()
	leaf := state.PeerCertificates[0]
	if leaf.IsCA {
		t.Error("serving certificate must be a leaf, not the CA")
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("leaf not valid for %s: %v", name, err)
		}
	}

	// The provided client works; a client with only system roots must refuse the server.
	if a := send(t, s, call{method: http.MethodGet, path: "/oidc/v1/keys"}); a.status != http.StatusOK {
		t.Errorf("GET keys with Client(): %d", a.status)
	}
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}
	_, err = plain.Get(s.URL() + "/oidc/v1/keys")
	var unknown x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &unknown) {
		t.Errorf("client without the CA: err = %v, want x509.UnknownAuthorityError", err)
	}
	pooled := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}}}
	resp, err := pooled.Get(strings.Replace(s.URL(), "127.0.0.1", "localhost", 1) + "/oidc/v1/keys")
	if err != nil {
		t.Fatalf("via localhost with CertPool(): %v", err)
	}
	_ = resp.Body.Close()
}

func TestDatabricksSuccess(t *testing.T) {
	tests := []struct {
		name       string
		omit       bool
		formCreds  bool
		wantMethod string
		wantKeys   []string
	}{
		{name: "basic auth", wantMethod: "basic", wantKeys: []string{"grant_type", "scope"}},
		{name: "credentials in form", formCreds: true, wantMethod: "form", wantKeys: []string{"client_id", "client_secret", "grant_type", "scope"}},
		{name: "omit expires_in", omit: true, wantMethod: "basic", wantKeys: []string{"grant_type", "scope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			s := start(t, Options{Clock: clock.Now, OmitExpiresIn: tt.omit})
			c := call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}}
			if tt.formCreds {
				c.basic = nil
				c.form = with(c.form, "client_id", dbClientID, "client_secret", dbSecret)
			}
			a := send(t, s, c)
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			shape := `^\{"access_token":"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+","token_type":"Bearer","scope":"all-apis","expires_in":3600\}$`
			if tt.omit {
				shape = `^\{"access_token":"[A-Za-z0-9_.-]+","token_type":"Bearer","scope":"all-apis"\}$`
			}
			if !regexp.MustCompile(shape).Match(a.body) {
				t.Errorf("body %s does not match %s", a.body, shape)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if cc := a.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q", cc)
			}
			m := a.object(t)
			token := m["access_token"].(string)
			if h := jwtHeader(t, token); h["alg"] != "RS256" || h["kid"] == "" || h["typ"] != "at+jwt" {
				t.Errorf("JWT header = %v", h)
			}
			if !strings.HasPrefix(token, "eyJraWQi") {
				t.Errorf("Databricks tokens start with {\"kid\": but got %.10s", token)
			}
			claims, err := s.ValidateToken(token)
			if err != nil {
				t.Fatalf("ValidateToken: %v", err)
			}
			want := Claims{
				Subject:   dbClientID,
				Audience:  s.URL(),
				Issuer:    s.URL() + "/oidc",
				Scope:     "all-apis",
				ClientID:  dbClientID,
				IssuedAt:  clock.Now(),
				ExpiresAt: clock.Now().Add(time.Hour),
				ID:        claims.ID,
			}
			if !claims.IssuedAt.Equal(want.IssuedAt) || !claims.ExpiresAt.Equal(want.ExpiresAt) {
				t.Errorf("iat/exp = %v/%v, want %v/%v", claims.IssuedAt, claims.ExpiresAt, want.IssuedAt, want.ExpiresAt)
			}
			claims.IssuedAt, claims.ExpiresAt, want.IssuedAt, want.ExpiresAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if claims != want || !uuidPattern.MatchString(claims.ID) {
				t.Errorf("claims = %+v\nwant %+v", claims, want)
			}

			reqs := s.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests recorded", len(reqs))
			}
			r := reqs[0]
			if r.Path != dbPath || r.Method != http.MethodPost || r.Endpoint != EndpointDatabricksToken ||
				r.ContentType != "application/x-www-form-urlencoded" || r.GrantType != "client_credentials" ||
				r.Scope != dbScope || r.ClientID != dbClientID || r.AuthMethod != tt.wantMethod ||
				!r.SecretPresent || r.Status != http.StatusOK || r.Injected || r.IssuedToken != token ||
				!r.Time.Equal(clock.Now()) || !slices.Equal(r.FormKeys, tt.wantKeys) {
				t.Errorf("recorded %+v", r)
			}
			if got := s.IssuedTokens(); !slices.Equal(got, []string{token}) {
				t.Errorf("IssuedTokens = %v", got)
			}
		})
	}
}

func TestEntraSuccess(t *testing.T) {
	tests := []struct {
		name       string
		path       string
		form       url.Values
		basic      bool
		omit       bool
		lifetime   time.Duration
		wantMethod string
		wantExpiry int
	}{
		{name: "form post", path: entraPath, form: entraForm(), wantMethod: "form", wantExpiry: 3600},
		{name: "basic auth", path: entraPath, form: with(entraForm(), "client_id", "<delete>", "client_secret", "<delete>"), basic: true, wantMethod: "basic", wantExpiry: 3600},
		{name: "app ID URI scope", path: entraPath, form: with(entraForm(), "scope", "api://"+AzureDatabricksResourceID+"/.default"), wantMethod: "form", wantExpiry: 3600},
		{name: "case-insensitive tenant, client and scope", path: "/" + strings.ToUpper(tenantID) + "/oauth2/v2.0/token",
			form: with(entraForm(), "client_id", strings.ToUpper(azClientID), "scope", strings.ToUpper(AzureDatabricksResourceID)+"/.default"), wantMethod: "form", wantExpiry: 3600},
		{name: "custom lifetime", path: entraPath, form: entraForm(), lifetime: 90 * time.Second, wantMethod: "form", wantExpiry: 90},
		{name: "omit expires_in", path: entraPath, form: entraForm(), omit: true, wantMethod: "form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			s := start(t, Options{Clock: clock.Now, OmitExpiresIn: tt.omit, TokenLifetime: tt.lifetime})
			c := call{path: tt.path, form: tt.form}
			if tt.basic {
				c.basic = []string{azClientID, azSecret}
			}
			a := send(t, s, c)
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			shape := fmt.Sprintf(`^\{"token_type":"Bearer","expires_in":%d,"ext_expires_in":%d,"access_token":"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"\}$`, tt.wantExpiry, tt.wantExpiry)
			if tt.omit {
				shape = `^\{"token_type":"Bearer","access_token":"[A-Za-z0-9_.-]+"\}$`
			}
			if !regexp.MustCompile(shape).Match(a.body) {
				t.Errorf("body %s does not match %s", a.body, shape)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			if !uuidPattern.MatchString(a.header.Get("X-Ms-Request-Id")) {
				t.Errorf("x-ms-request-id = %q", a.header.Get("X-Ms-Request-Id"))
			}
			m := a.object(t)
			if _, ok := m["refresh_token"]; ok {
				t.Error("client credentials answers carry no refresh token")
			}
			token := m["access_token"].(string)
			if !strings.HasPrefix(token, "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIs") {
				t.Errorf("Entra tokens start with {\"typ\":\"JWT\",\"alg\":\"RS256\", but got %.20s", token)
			}
			h := jwtHeader(t, token)
			if h["kid"] == "" || h["x5t"] != h["kid"] {
				t.Errorf("JWT header = %v", h)
			}
			claims, err := s.ValidateToken(token)
			if err != nil {
				t.Fatalf("ValidateToken: %v", err)
			}
			lifetime := time.Duration(tt.wantExpiry) * time.Second
			if tt.omit {
				lifetime = time.Hour
			}
			if claims.Issuer != "https://sts.windows.net/"+tenantID+"/" || claims.Audience != AzureDatabricksResourceID ||
				claims.TenantID != tenantID || claims.ClientID != azClientID || claims.Subject != azClientID ||
				claims.Scope != "" || claims.ID == "" ||
				!claims.IssuedAt.Equal(clock.Now()) || !claims.ExpiresAt.Equal(clock.Now().Add(lifetime)) {
				t.Errorf("claims = %+v", claims)
			}
			r := s.Requests()[0]
			if r.Endpoint != EndpointEntraToken || r.AuthMethod != tt.wantMethod || r.ClientID == "" || !r.SecretPresent ||
				r.Status != http.StatusOK || r.IssuedToken != token || r.Path != tt.path {
				t.Errorf("recorded %+v", r)
			}
		})
	}
}

var entraDescription = regexp.MustCompile(`^AADSTS(\d+): (.+)\r\nTrace ID: ([0-9a-f-]{36})\r\nCorrelation ID: ([0-9a-f-]{36})\r\nTimestamp: (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z)$`)

var entraErrorShape = regexp.MustCompile(`^\{"error":"[a-z_]+","error_description":"(?:[^"\\]|\\.)+","error_codes":\[\d+\],"timestamp":"[^"]+","trace_id":"[^"]+","correlation_id":"[^"]+","error_uri":"[^"]+"\}$`)

// checkEntraError asserts an answer is an Entra error exactly as Entra sends it.
func checkEntraError(t *testing.T, a answer, clock *fakeClock, status int, errCode string, aadsts int, message string) {
	t.Helper()
	if a.status != status {
		t.Errorf("status = %d, want %d (%s)", a.status, status, a.printable())
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if !entraErrorShape.Match(a.body) {
		t.Errorf("body fields/order differ from Entra's: %s", a.printable())
	}
	m := a.object(t)
	wantKeys(t, m, "error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id", "error_uri")
	if m["error"] != errCode {
		t.Errorf("error = %v, want %s", m["error"], errCode)
	}
	codes, _ := m["error_codes"].([]any)
	if len(codes) != 1 || codes[0] != json.Number(fmt.Sprint(aadsts)) {
		t.Errorf("error_codes = %v, want [%d]", m["error_codes"], aadsts)
	}
	ts := clock.Now().UTC().Format("2006-01-02 15:04:05Z")
	if m["timestamp"] != ts {
		t.Errorf("timestamp = %v, want %s", m["timestamp"], ts)
	}
	trace, _ := m["trace_id"].(string)
	corr, _ := m["correlation_id"].(string)
	if !uuidPattern.MatchString(trace) || !uuidPattern.MatchString(corr) {
		t.Errorf("trace_id %q / correlation_id %q are not GUIDs", trace, corr)
	}
	if a.header.Get("X-Ms-Request-Id") != trace {
		t.Errorf("x-ms-request-id %q != trace_id %q", a.header.Get("X-Ms-Request-Id"), trace)
	}
	if want := fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", aadsts); m["error_uri"] != want {
		t.Errorf("error_uri = %v, want %s", m["error_uri"], want)
	}
	desc, _ := m["error_description"].(string)
	sm := entraDescription.FindStringSubmatch(desc)
	if sm == nil {
		t.Fatalf("error_description %q does not have Entra's shape", desc)
	}
	if sm[1] != fmt.Sprint(aadsts) || sm[3] != trace || sm[4] != corr || sm[5] != ts {
		t.Errorf("error_description %q inconsistent with the other fields", desc)
	}
	if message != "" && sm[2] != message {
		t.Errorf("message = %q\nwant      %q", sm[2], message)
	}
}

func TestEntraErrors(t *testing.T) {
	const otherTenant = "00000000-0000-0000-0000-000000000001"
	tests := []struct {
		name    string
		c       call
		setup   func(s *Server)
		status  int
		errCode string
		aadsts  int
		message string
	}{
		{
			name: "unknown tenant", c: call{path: "/" + otherTenant + "/oauth2/v2.0/token", form: entraForm()},
			status: 400, errCode: "invalid_request", aadsts: 90002,
			message: "Tenant '" + otherTenant + "' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.",
		},
		{
			name: "unknown client", c: call{path: entraPath, form: with(entraForm(), "client_id", "11111111-2222-3333-4444-555555555555")},
			status: 400, errCode: "unauthorized_client", aadsts: 700016,
			message: "Application with identifier '11111111-2222-3333-4444-555555555555' was not found in the directory '" + tenantID + "'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
		},
		{
			name: "app removed", c: call{path: entraPath, form: entraForm()}, setup: func(s *Server) { s.RemoveAzureApp(tenantID, azClientID) },
			status: 400, errCode: "unauthorized_client", aadsts: 700016,
		},
		{
			name: "app registered in another tenant", c: call{path: "/" + otherTenant + "/oauth2/v2.0/token", form: entraForm()},
			setup:  func(s *Server) { s.AddTenant(otherTenant) },
			status: 400, errCode: "unauthorized_client", aadsts: 700016,
		},
		{
			name: "wrong secret", c: call{path: entraPath, form: with(entraForm(), "client_secret", "not-the-secret")},
			status: 401, errCode: "invalid_client", aadsts: 7000215,
			message: "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '" + azClientID + "'.",
		},
		{
			name: "wrong secret via basic", c: call{path: entraPath, form: with(entraForm(), "client_id", "<delete>", "client_secret", "<delete>"), basic: []string{azClientID, "nope"}},
			status: 401, errCode: "invalid_client", aadsts: 7000215,
		},
		{
			name: "expired secret", c: call{path: entraPath, form: entraForm()}, setup: func(s *Server) { s.ExpireAzureSecret(tenantID, azClientID) },
			status: 401, errCode: "invalid_client", aadsts: 7000222,
			message: "The provided client secret keys for app '" + azClientID + "' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
		},
		{
			name: "wrong secret for an app whose secret expired", c: call{path: entraPath, form: with(entraForm(), "client_secret", "x")},
			setup:  func(s *Server) { s.ExpireAzureSecret(tenantID, azClientID) },
			status: 401, errCode: "invalid_client", aadsts: 7000215,
		},
		{
			name: "missing secret", c: call{path: entraPath, form: with(entraForm(), "client_secret", "<delete>")},
			status: 401, errCode: "invalid_client", aadsts: 7000216,
			message: "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
		},
		{
			name: "resource not in tenant", c: call{path: entraPath, form: with(entraForm(), "scope", "https://graph.microsoft.com/.default")},
			status: 400, errCode: "invalid_resource", aadsts: 500011,
			message: "The resource principal named https://graph.microsoft.com was not found in the tenant named " + tenantID + ". This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
		},
		{
			name: "scope without /.default", c: call{path: entraPath, form: with(entraForm(), "scope", AzureDatabricksResourceID+"/user_impersonation")},
			status: 400, errCode: "invalid_scope", aadsts: 1002012,
			message: "The provided value for scope " + AzureDatabricksResourceID + "/user_impersonation is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
		},
		{
			name: "bare resource as scope", c: call{path: entraPath, form: with(entraForm(), "scope", AzureDatabricksResourceID)},
			status: 400, errCode: "invalid_scope", aadsts: 1002012,
		},
		{
			name: "Databricks scope sent to Entra", c: call{path: entraPath, form: with(entraForm(), "scope", "all-apis")},
			status: 400, errCode: "invalid_scope", aadsts: 1002012,
		},
		{
			name: "two resources", c: call{path: entraPath, form: with(entraForm(), "scope", azScope+" https://graph.microsoft.com/.default")},
			status: 400, errCode: "invalid_scope", aadsts: 70011,
		},
		{
			name: "missing scope", c: call{path: entraPath, form: with(entraForm(), "scope", "<delete>")},
			status: 400, errCode: "invalid_request", aadsts: 900144,
			message: "The request body must contain the following parameter: 'scope'.",
		},
		{
			name: "unsupported grant", c: call{path: entraPath, form: with(entraForm(), "grant_type", "password")},
			status: 400, errCode: "unsupported_grant_type", aadsts: 70003,
		},
		{
			name: "missing grant", c: call{path: entraPath, form: with(entraForm(), "grant_type", "<delete>")},
			status: 400, errCode: "invalid_request", aadsts: 900144,
			message: "The request body must contain the following parameter: 'grant_type'.",
		},
		{
			name: "JSON body instead of a form", c: call{path: entraPath, body: ptr(`{"grant_type":"client_credentials"}`), contentType: "application/json"},
			status: 400, errCode: "invalid_request", aadsts: 900144,
		},
		{
			name: "missing client_id", c: call{path: entraPath, form: with(entraForm(), "client_id", "<delete>")},
			status: 400, errCode: "invalid_request", aadsts: 900144,
			message: "The request body must contain the following parameter: 'client_id'.",
		},
		{
			name: "GET", c: call{method: http.MethodGet, path: entraPath},
			status: 400, errCode: "invalid_request", aadsts: 900561,
			message: "The endpoint only accepts POST, OPTIONS requests. Received a GET request.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			s := start(t, Options{Clock: clock.Now})
			if tt.setup != nil {
				tt.setup(s)
			}
			a := send(t, s, tt.c)
			checkEntraError(t, a, clock, tt.status, tt.errCode, tt.aadsts, tt.message)
			reqs := s.Requests()
			if len(reqs) != 1 || reqs[0].Status != tt.status || reqs[0].IssuedToken != "" || len(s.IssuedTokens()) != 0 {
				t.Errorf("recorded %+v", reqs)
			}
		})
	}
}

func TestEntraSecretRotation(t *testing.T) {
	clock := newFakeClock()
	s := start(t, Options{Clock: clock.Now})
	s.ExpireAzureSecret(tenantID, azClientID)
	checkEntraError(t, send(t, s, call{path: entraPath, form: entraForm()}), clock, 401, "invalid_client", 7000222, "")
	s.AddAzureApp(tenantID, azClientID, "new-secret")
	checkEntraError(t, send(t, s, call{path: entraPath, form: entraForm()}), clock, 401, "invalid_client", 7000215, "")
	if a := send(t, s, call{path: entraPath, form: with(entraForm(), "client_secret", "new-secret")}); a.status != 200 {
		t.Errorf("rotated secret: %d %s", a.status, a.body)
	}
	// Unknown tenant/app: ignored, no panic.
	s.ExpireAzureSecret("nope", azClientID)
	s.ExpireAzureSecret(tenantID, "nope")
}

func TestEntraCorrelationID(t *testing.T) {
	clock := newFakeClock()
	s := start(t, Options{Clock: clock.Now})
	const id = "0f0e0d0c-0b0a-4908-8706-050403020100"
	a := send(t, s, call{path: entraPath, form: with(entraForm(), "client_secret", "bad"), header: map[string]string{"client-request-id": id}})
	checkEntraError(t, a, clock, 401, "invalid_client", 7000215, "")
	if m := a.object(t); m["correlation_id"] != id {
		t.Errorf("correlation_id = %v, want the client-request-id %s", m["correlation_id"], id)
	}
	if a.header.Get("Client-Request-Id") != id {
		t.Errorf("client-request-id not echoed: %q", a.header.Get("Client-Request-Id"))
	}
}

func TestDatabricksErrors(t *testing.T) {
	tests := []struct {
		name    string
		c       call
		setup   func(s *Server)
		status  int
		errCode string
		desc    string
	}{
		{name: "no credentials", c: call{path: dbPath, form: dbForm()}, status: 401, errCode: "invalid_client", desc: "Client authentication failed"},
		{name: "unknown client", c: call{path: dbPath, form: dbForm(), basic: []string{"someone", dbSecret}}, status: 401, errCode: "invalid_client", desc: "Client authentication failed"},
		{name: "wrong secret", c: call{path: dbPath, form: dbForm(), basic: []string{dbClientID, "wrong"}}, status: 401, errCode: "invalid_client", desc: "Client authentication failed"},
		{name: "empty secret", c: call{path: dbPath, form: dbForm(), basic: []string{dbClientID, ""}}, status: 401, errCode: "invalid_client", desc: "Client authentication failed"},
		{name: "wrong secret in form", c: call{path: dbPath, form: with(dbForm(), "client_id", dbClientID, "client_secret", "wrong")}, status: 401, errCode: "invalid_client", desc: "Client authentication failed"},
		{name: "client removed", c: call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}}, setup: func(s *Server) { s.RemoveDatabricksClient(dbClientID) }, status: 401, errCode: "invalid_client"},
		{name: "Entra secret on Databricks", c: call{path: dbPath, form: dbForm(), basic: []string{azClientID, azSecret}}, status: 401, errCode: "invalid_client"},
		{name: "unsupported grant", c: call{path: dbPath, form: with(dbForm(), "grant_type", "password"), basic: []string{dbClientID, dbSecret}}, status: 400, errCode: "unsupported_grant_type"},
		{name: "missing grant", c: call{path: dbPath, form: with(dbForm(), "grant_type", "<delete>"), basic: []string{dbClientID, dbSecret}}, status: 400, errCode: "invalid_request"},
		{name: "missing scope", c: call{path: dbPath, form: with(dbForm(), "scope", "<delete>"), basic: []string{dbClientID, dbSecret}}, status: 400, errCode: "invalid_request"},
		{name: "GET", c: call{method: http.MethodGet, path: dbPath, basic: []string{dbClientID, dbSecret}}, status: 405, errCode: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, Options{})
			if tt.setup != nil {
				tt.setup(s)
			}
			a := send(t, s, tt.c)
			if a.status != tt.status {
				t.Errorf("status = %d, want %d (%s)", a.status, tt.status, a.body)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if !regexp.MustCompile(`^\{"error":"[a-z_]+","error_description":"[^"]+","error_id":"[0-9a-f-]{36}"\}$`).Match(a.body) {
				t.Errorf("body shape: %s", a.body)
			}
			m := a.object(t)
			wantKeys(t, m, "error", "error_description", "error_id")
			if m["error"] != tt.errCode {
				t.Errorf("error = %v, want %s", m["error"], tt.errCode)
			}
			if tt.desc != "" && m["error_description"] != tt.desc {
				t.Errorf("error_description = %v, want %s", m["error_description"], tt.desc)
			}
			if id, _ := m["error_id"].(string); !uuidPattern.MatchString(id) {
				t.Errorf("error_id = %v", m["error_id"])
			}
			if r := s.Requests(); len(r) != 1 || r[0].Status != tt.status || r[0].IssuedToken != "" {
				t.Errorf("recorded %+v", r)
			}
		})
	}
}

func TestUnknownPaths(t *testing.T) {
	s := start(t, Options{})
	for _, p := range []string{"/", "/oauth2/v2.0/token", "/" + tenantID + "/oauth2/v2.0/token/", "/oidc/v1/token/x",
		"/" + tenantID + "/oauth2/token", "/api/2.0/clusters/list", "//oauth2/v2.0/token"} {
		a := send(t, s, call{path: p, form: entraForm()})
		if a.status != http.StatusNotFound {
			t.Errorf("%s: status %d", p, a.status)
		}
		if ct := a.header.Get("Content-Type"); ct != "text/html; charset=utf-8" || !bytes.Contains(a.body, []byte("<html>")) {
			t.Errorf("%s: Content-Type %q body %s", p, ct, a.body)
		}
	}
	for _, r := range s.Requests() {
		if r.Endpoint != EndpointUnknown || r.Status != 404 {
			t.Errorf("recorded %+v", r)
		}
	}
	if n := s.TokenRequestCount(); n != 0 {
		t.Errorf("TokenRequestCount = %d", n)
	}
}

func TestJWKSAndDiscovery(t *testing.T) {
	clock := newFakeClock()
	s := start(t, Options{Clock: clock.Now})

	var set struct {
		Keys []struct {
			Kty, Use, Kid, X5t, N, E, Alg string
			X5c                           []string
		}
	}
	if err := json.Unmarshal(s.JWKS(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS: %v %s", err, s.JWKS())
	}
	k := set.Keys[0]
	if k.Kty != "RSA" || k.Use != "sig" || k.Alg != "RS256" || k.Kid == "" || k.X5t != k.Kid || len(k.X5c) != 1 {
		t.Errorf("JWK = %+v", k)
	}
	n, _ := base64.RawURLEncoding.DecodeString(k.N)
	e, _ := base64.RawURLEncoding.DecodeString(k.E)
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	if pub.N.BitLen() != 2048 {
		t.Errorf("key size %d", pub.N.BitLen())
	}
	der, _ := base64.StdEncoding.DecodeString(k.X5c[0])
	cert, err := x509.ParseCertificate(der)
	if err != nil || !pub.Equal(cert.PublicKey) {
		t.Errorf("x5c does not hold the key: %v", err)
	}

	for _, p := range []string{"/oidc/v1/keys", "/oidc/jwks.json", "/" + tenantID + "/discovery/v2.0/keys"} {
		a := send(t, s, call{method: http.MethodGet, path: p})
		if a.status != 200 || !bytes.Equal(a.body, s.JWKS()) {
			t.Errorf("GET %s: %d %s", p, a.status, a.body)
		}
	}
	checkEntraError(t, send(t, s, call{method: http.MethodGet, path: "/nope/discovery/v2.0/keys"}), clock, 400, "invalid_request", 90002, "")

	// A token verifies with the published key, as a resource server using JWKS would do it.
	a := send(t, s, call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}})
	token := a.object(t)["access_token"].(string)
	parsed, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(clock.Now))
	if err != nil || !parsed.Valid {
		t.Errorf("verify with JWKS key: %v", err)
	}

	d := send(t, s, call{method: http.MethodGet, path: "/oidc/.well-known/oauth-authorization-server"}).object(t)
	if d["token_endpoint"] != s.URL()+"/oidc/v1/token" || d["issuer"] != s.URL()+"/oidc" || d["jwks_uri"] != s.URL()+"/oidc/jwks.json" {
		t.Errorf("Databricks discovery = %v", d)
	}
	d = send(t, s, call{method: http.MethodGet, path: "/" + tenantID + "/v2.0/.well-known/openid-configuration"}).object(t)
	if d["token_endpoint"] != s.URL()+entraPath || d["jwks_uri"] != s.URL()+"/"+tenantID+"/discovery/v2.0/keys" {
		t.Errorf("Entra discovery = %v", d)
	}
	for _, r := range s.Requests() {
		if r.Path == dbPath {
			continue
		}
		if r.Endpoint != EndpointJWKS && r.Endpoint != EndpointDiscovery {
			t.Errorf("recorded %+v", r)
		}
	}
	if n := s.TokenRequestCount(); n != 1 {
		t.Errorf("TokenRequestCount = %d, want 1", n)
	}
}

func TestFailNextCounts(t *testing.T) {
	s := start(t, Options{})
	db := call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}}
	statuses := func(n int, c call) []int {
		var out []int
		for i := 0; i < n; i++ {
			out = append(out, send(t, s, c).status)
		}
		return out
	}

	s.FailNext(2, Failure{Status: 500})
	if got := statuses(3, db); !slices.Equal(got, []int{500, 500, 200}) {
		t.Errorf("FailNext(2): %v", got)
	}

	// Rules queue up, and apply to both token endpoints.
	s.FailNext(1, Failure{Status: 429, RetryAfter: "7"})
	s.FailNext(1, Failure{Status: 503})
	a := send(t, s, call{path: entraPath, form: entraForm()})
	if a.status != 429 || a.header.Get("Retry-After") != "7" {
		t.Errorf("first queued: %d Retry-After %q", a.status, a.header.Get("Retry-After"))
	}
	if got := statuses(2, db); !slices.Equal(got, []int{503, 200}) {
		t.Errorf("second queued: %v", got)
	}

	// n <= 0: until ClearFailures, whatever the request (even an unknown tenant).
	s.FailNext(0, Failure{Status: 502})
	if got := statuses(3, call{path: "/unknown-tenant/oauth2/v2.0/token", form: entraForm()}); !slices.Equal(got, []int{502, 502, 502}) {
		t.Errorf("unlimited: %v", got)
	}
	s.FailNext(-1, Failure{Status: 400}) // queued behind the unlimited rule: never applies
	if got := statuses(2, db); !slices.Equal(got, []int{502, 502}) {
		t.Errorf("unlimited head: %v", got)
	}
	s.ClearFailures()
	if got := statuses(1, db); !slices.Equal(got, []int{200}) {
		t.Errorf("after ClearFailures: %v", got)
	}

	// Non-token paths are not affected and do not consume failures.
	s.FailNext(1, Failure{Status: 500})
	if a := send(t, s, call{method: http.MethodGet, path: "/oidc/v1/keys"}); a.status != 200 {
		t.Errorf("JWKS got an injected failure: %d", a.status)
	}
	if a := send(t, s, call{path: "/nope", form: dbForm()}); a.status != 404 {
		t.Errorf("unknown path got an injected failure: %d", a.status)
	}
	if got := statuses(2, db); !slices.Equal(got, []int{500, 200}) {
		t.Errorf("after non-token requests: %v", got)
	}

	injected := 0
	for _, r := range s.Requests() {
		if r.Injected {
			injected++
			if r.IssuedToken != "" || r.Status < 400 {
				t.Errorf("injected answer recorded as %+v", r)
			}
		}
	}
	if injected != 10 {
		t.Errorf("%d requests recorded as injected, want 10", injected)
	}
}

func TestFailNextConcurrentCount(t *testing.T) {
	s := start(t, Options{})
	s.FailNext(10, Failure{Status: 500})
	var wg sync.WaitGroup
	var mu sync.Mutex
	count := map[int]int{}
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := trySend(s, call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			count[a.status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if count[500] != 10 || count[200] != 20 {
		t.Errorf("status counts = %v, want 10×500 and 20×200", count)
	}
}

func TestFailureDefaultBodies(t *testing.T) {
	tests := []struct {
		status   int
		path     string
		wantCT   string
		wantErr  string // JSON "error", or "" for HTML
		wantCode int    // Entra AADSTS code
	}{
		{500, entraPath, "application/json; charset=utf-8", "server_error", 50000},
		{500, dbPath, "application/json", "server_error", 0},
		{429, entraPath, "application/json; charset=utf-8", "temporarily_unavailable", 90055},
		{429, dbPath, "application/json", "temporarily_unavailable", 0},
		{401, entraPath, "application/json; charset=utf-8", "invalid_client", 7000215},
		{401, dbPath, "application/json", "invalid_client", 0},
		{400, entraPath, "application/json; charset=utf-8", "invalid_request", 9002313},
		{403, entraPath, "application/json; charset=utf-8", "access_denied", 53003},
		{503, entraPath, "text/html; charset=utf-8", "", 0},
		{503, dbPath, "text/html; charset=utf-8", "", 0},
		{502, dbPath, "text/html; charset=utf-8", "", 0},
		{504, entraPath, "text/html; charset=utf-8", "", 0},
		{404, dbPath, "text/html; charset=utf-8", "", 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d %s", tt.status, tt.path), func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			s := start(t, Options{Clock: clock.Now})
			s.FailNext(1, Failure{Status: tt.status})
			c := call{path: tt.path, form: entraForm()}
			if tt.path == dbPath {
				c = call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}}
			}
			a := send(t, s, c)
			if a.status != tt.status || a.header.Get("Content-Type") != tt.wantCT {
				t.Fatalf("status %d Content-Type %q: %s", a.status, a.header.Get("Content-Type"), a.body)
			}
			switch {
			case tt.wantErr == "":
				if !bytes.Contains(a.body, []byte(http.StatusText(tt.status))) || !bytes.Contains(a.body, []byte("<html>")) {
					t.Errorf("HTML body: %s", a.body)
				}
			case tt.wantCode != 0:
				checkEntraError(t, a, clock, tt.status, tt.wantErr, tt.wantCode, "")
			default:
				m := a.object(t)
				wantKeys(t, m, "error", "error_description", "error_id")
				if m["error"] != tt.wantErr {
					t.Errorf("error = %v", m["error"])
				}
			}
		})
	}

	t.Run("403 Databricks IP access list", func(t *testing.T) {
		s := start(t, Options{})
		s.FailNext(1, Failure{Status: 403})
		a := send(t, s, call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}})
		m := a.object(t)
		if a.status != 403 || m["error_code"] != "403" || !strings.Contains(m["message"].(string), "blocked by Databricks IP ACL") {
			t.Errorf("%d %s", a.status, a.body)
		}
	})
}

func TestFailureCustomBodies(t *testing.T) {
	s := start(t, Options{})
	db := call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}}
	tests := []struct {
		name   string
		f      Failure
		status int
		ct     string
		body   string
	}{
		{"malformed JSON", Failure{Status: 200, Body: `{"access_token":`}, 200, "application/json", `{"access_token":`},
		{"no access_token", Failure{Status: 200, Body: `{"token_type":"Bearer","expires_in":3600}`}, 200, "application/json", `{"token_type":"Bearer","expires_in":3600}`},
		{"plain text 500", Failure{Status: 500, Body: "oops", ContentType: "text/plain"}, 500, "text/plain", "oops"},
		{"content type override on default body", Failure{Status: 500, ContentType: "text/plain"}, 500, "text/plain", ""},
		{"204 without body", Failure{Status: 204}, 204, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.ResetRequests()
			s.FailNext(1, tt.f)
			a := send(t, s, db)
			if a.status != tt.status || a.header.Get("Content-Type") != tt.ct || (tt.body != "" && string(a.body) != tt.body) {
				t.Errorf("got %d %q %q", a.status, a.header.Get("Content-Type"), a.body)
			}
			if r := s.Requests()[0]; !r.Injected || r.IssuedToken != "" {
				t.Errorf("recorded %+v", r)
			}
		})
	}
	t.Run("200 without body answers normally", func(t *testing.T) {
		s.ResetRequests()
		s.FailNext(1, Failure{Status: 200})
		a := send(t, s, db)
		if a.status != 200 || a.object(t)["access_token"] == nil {
			t.Errorf("got %d %s", a.status, a.body)
		}
		if r := s.Requests()[0]; r.Injected || r.IssuedToken == "" {
			t.Errorf("recorded %+v", r)
		}
	})
}

func TestFailureDelay(t *testing.T) {
	s := start(t, Options{})
	db := call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}}
	const delay = 300 * time.Millisecond

	t.Run("delay then normal answer", func(t *testing.T) {
		s.FailNext(1, Failure{Delay: delay})
		begin := time.Now()
		a := send(t, s, db)
		if el := time.Since(begin); el < delay || a.status != 200 {
			t.Errorf("status %d after %v", a.status, el)
		}
	})
	t.Run("delay then failure", func(t *testing.T) {
		s.FailNext(1, Failure{Status: 500, Delay: delay})
		begin := time.Now()
		a := send(t, s, db)
		if el := time.Since(begin); el < delay || a.status != 500 {
			t.Errorf("status %d after %v", a.status, el)
		}
	})
	t.Run("client gives up", func(t *testing.T) {
		s.ResetRequests()
		s.FailNext(1, Failure{Status: 500, Delay: time.Hour})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		c := db
		c.ctx = ctx
		begin := time.Now()
		_, err := trySend(s, c)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
		if el := time.Since(begin); el > 5*time.Second {
			t.Errorf("client waited %v", el)
		}
		// The handler is freed: it records the request, with no status.
		deadline := time.Now().Add(5 * time.Second)
		for s.RequestCount() == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if r := s.Requests(); len(r) != 1 || r[0].Status != 0 {
			t.Errorf("recorded %+v", r)
		}
		// The server keeps answering.
		if a := send(t, s, db); a.status != 200 {
			t.Errorf("next request: %d", a.status)
		}
	})
}

func TestCloseReleasesHungHandlers(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.AddDatabricksClient(dbClientID, dbSecret)
	s.FailNext(0, Failure{Status: 500, Delay: time.Hour})
	errc := make(chan error, 1)
	go func() {
		_, err := trySend(s, call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}})
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	begin := time.Now()
	s.Close()
	if el := time.Since(begin); el > 5*time.Second {
		t.Errorf("Close took %v", el)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("hung request succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Error("hung request not released by Close")
	}
	s.Close() // idempotent
}

func TestValidateToken(t *testing.T) {
	clock := newFakeClock()
	s := start(t, Options{Clock: clock.Now, TokenLifetime: 10 * time.Minute})
	a := send(t, s, call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}})
	token := a.object(t)["access_token"].(string)
	entra := send(t, s, call{path: entraPath, form: entraForm()}).object(t)["access_token"].(string)

	other := start(t, Options{Clock: clock.Now})
	foreign := send(t, other, call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}}).object(t)["access_token"].(string)

	parts := strings.Split(token, ".")
	sig := []byte(parts[2])
	mid := len(sig) / 2
	if sig[mid] == 'A' {
		sig[mid] = 'B'
	} else {
		sig[mid] = 'A'
	}
	tamperedSig := parts[0] + "." + parts[1] + "." + string(sig)

	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = bytes.Replace(payload, []byte(dbClientID), []byte("admin-00000000-0000-0000-0000-000000000"), -1)
	tamperedPayload := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]

	noneToken := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."

	pubDER, _ := x509.MarshalPKIXPublicKey(&s.signer.key.PublicKey)
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": dbClientID, "exp": clock.Now().Add(time.Hour).Unix()})
	hs.Header["kid"] = s.signer.kid
	hsToken, _ := hs.SignedString(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))

	for name, tok := range map[string]string{
		"tampered signature":    tamperedSig,
		"tampered payload":      tamperedPayload,
		"alg none":              noneToken,
		"HS256 with public key": hsToken,
		"other server's key":    foreign,
		"garbage":               "not-a-jwt",
		"empty":                 "",
	} {
		if _, err := s.ValidateToken(tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	for _, tok := range []string{token, entra} {
		if _, err := s.ValidateToken(tok); err != nil {
			t.Errorf("fresh token rejected: %v", err)
		}
	}
	clock.Advance(10*time.Minute - time.Second)
	if _, err := s.ValidateToken(token); err != nil {
		t.Errorf("token 1s before exp rejected: %v", err)
	}
	clock.Advance(time.Second)
	for _, tok := range []string{token, entra} {
		if _, err := s.ValidateToken(tok); !errors.Is(err, ErrTokenExpired) {
			t.Errorf("token at exp: err = %v, want ErrTokenExpired", err)
		}
	}
	clock.Advance(-time.Hour)
	if _, err := s.ValidateToken(token); !errors.Is(err, jwt.ErrTokenNotValidYet) {
		t.Errorf("token before nbf: err = %v, want ErrTokenNotValidYet", err)
	}
}

func TestTokenLifetimeAndUniqueness(t *testing.T) {
	clock := newFakeClock() // frozen: every token is issued in the same second
	s := start(t, Options{Clock: clock.Now})
	expiresIn := func() (json.Number, Claims) {
		m := send(t, s, call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}}).object(t)
		c, err := s.ValidateToken(m["access_token"].(string))
		if err != nil {
			t.Fatal(err)
		}
		return m["expires_in"].(json.Number), c
	}
	for _, tt := range []struct {
		set  time.Duration
		want time.Duration
	}{
		{90 * time.Second, 90 * time.Second},
		{1500 * time.Millisecond, 2 * time.Second},
		{0, time.Hour},
		{-time.Minute, time.Hour},
	} {
		s.SetTokenLifetime(tt.set)
		n, c := expiresIn()
		if n.String() != fmt.Sprint(int(tt.want.Seconds())) || c.ExpiresAt.Sub(c.IssuedAt) != tt.want {
			t.Errorf("SetTokenLifetime(%v): expires_in %s, exp-iat %v; want %v", tt.set, n, c.ExpiresAt.Sub(c.IssuedAt), tt.want)
		}
	}
	s.SetOmitExpiresIn(true)
	if m := send(t, s, call{path: entraPath, form: entraForm()}).object(t); m["expires_in"] != nil || m["ext_expires_in"] != nil {
		t.Errorf("SetOmitExpiresIn(true): %v", keys(m))
	}
	s.SetOmitExpiresIn(false)

	seen := map[string]bool{}
	ids := map[string]bool{}
	for i := 0; i < 20; i++ {
		for _, c := range []call{
			{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}},
			{path: entraPath, form: entraForm()},
		} {
			tok := send(t, s, c).object(t)["access_token"].(string)
			claims, _ := s.ValidateToken(tok)
			if seen[tok] || ids[claims.ID] {
				t.Fatalf("duplicate token or ID within one second")
			}
			seen[tok], ids[claims.ID] = true, true
		}
	}
}

// TestRecordingNeverHoldsSecrets checks every field of every recorded request, whatever path
// the credentials took (Basic, form, wrong secret, injected failure, unknown path).
func TestRecordingNeverHoldsSecrets(t *testing.T) {
	s := start(t, Options{})
	const special = "s3cr3t+/=&%~ value"
	s.AddDatabricksClient("special", special)
	s.FailNext(1, Failure{Status: 500})
	calls := []call{
		{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}}, // injected 500
		{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}},
		{path: dbPath, form: with(dbForm(), "client_id", dbClientID, "client_secret", dbSecret)},
		{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret + "x"}},
		{path: dbPath, form: dbForm(), basic: []string{"special", special}},
		{path: entraPath, form: entraForm()},
		{path: entraPath, form: with(entraForm(), "client_id", "<delete>", "client_secret", "<delete>"), basic: []string{azClientID, azSecret}},
		{path: entraPath, form: with(entraForm(), "client_secret", azSecret+"x")},
		{path: "/nope", form: entraForm()},
	}
	for _, c := range calls {
		send(t, s, c)
	}
	reqs := s.Requests()
	if len(reqs) != len(calls) || s.RequestCount() != len(calls) {
		t.Fatalf("%d requests recorded, want %d", len(reqs), len(calls))
	}
	if reqs[4].Status != 200 || reqs[4].ClientID != "special" {
		t.Errorf("URL-encoded Basic credentials: %+v", reqs[4])
	}
	secrets := []string{dbSecret, azSecret, special}
	for i, r := range reqs {
		v := reflect.ValueOf(r)
		for j := 0; j < v.NumField(); j++ {
			var values []string
			switch f := v.Field(j).Interface().(type) {
			case string:
				values = []string{f}
			case []string:
				values = f
			}
			for _, val := range values {
				for _, secret := range secrets {
					if val == secret || (val != "" && strings.Contains(val, secret)) {
						t.Errorf("request %d field %s holds a secret", i, v.Type().Field(j).Name)
					}
				}
			}
		}
		dump := fmt.Sprintf("%+v %#v", r, r)
		for _, secret := range secrets {
			if strings.Contains(dump, secret) {
				t.Errorf("request %d formats with a secret: %s", i, dump)
			}
		}
		if !sort.StringsAreSorted(r.FormKeys) {
			t.Errorf("FormKeys not sorted: %v", r.FormKeys)
		}
	}
	want := []bool{true, true, true, true, true, true, true, true, true}
	for i, r := range reqs {
		if r.SecretPresent != want[i] {
			t.Errorf("request %d SecretPresent = %v", i, r.SecretPresent)
		}
	}
	if got := reqs[5].FormKeys; !slices.Equal(got, []string{"client_id", "client_secret", "grant_type", "scope"}) {
		t.Errorf("FormKeys = %v", got)
	}
	if reqs[6].AuthMethod != "basic" || reqs[5].AuthMethod != "form" || reqs[0].AuthMethod != "basic" {
		t.Errorf("AuthMethod: %q %q %q", reqs[0].AuthMethod, reqs[5].AuthMethod, reqs[6].AuthMethod)
	}

	issued := s.IssuedTokens()
	if len(issued) != 5 {
		t.Errorf("%d tokens issued, want 5", len(issued))
	}
	for i, r := range reqs {
		if (r.IssuedToken != "") != (r.Status == 200) || (r.IssuedToken != "" && !slices.Contains(issued, r.IssuedToken)) {
			t.Errorf("request %d: status %d, issued token %t", i, r.Status, r.IssuedToken != "")
		}
	}
	s.ResetRequests()
	if s.RequestCount() != 0 || len(s.Requests()) != 0 || len(s.IssuedTokens()) != 5 {
		t.Error("ResetRequests must clear requests but keep IssuedTokens")
	}
	a := send(t, s, call{path: dbPath, form: dbForm()})
	if r := s.Requests()[0]; r.AuthMethod != "none" || r.SecretPresent || r.ClientID != "" || a.status != 401 {
		t.Errorf("no credentials recorded as %+v", r)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := start(t, Options{})
	const n = 64
	var wg sync.WaitGroup
	tokens := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Registrations and reads race with requests.
			s.AddAzureApp(tenantID, fmt.Sprintf("app-%d", i), "secret")
			_ = s.Requests()
			c := call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}}
			if i%2 == 1 {
				c = call{path: entraPath, form: entraForm()}
			}
			a, err := trySend(s, c)
			if err != nil || a.status != 200 {
				t.Errorf("request %d: %v %d", i, err, a.status)
				return
			}
			var m struct {
				AccessToken string `json:"access_token"`
			}
			if err := json.Unmarshal(a.body, &m); err != nil {
				t.Error(err)
			}
			tokens[i] = m.AccessToken
		}(i)
	}
	wg.Wait()
	if s.RequestCount() != n || s.TokenRequestCount() != n || len(s.IssuedTokens()) != n {
		t.Errorf("counts: %d %d %d", s.RequestCount(), s.TokenRequestCount(), len(s.IssuedTokens()))
	}
	slices.Sort(tokens)
	if len(slices.Compact(tokens)) != n {
		t.Error("duplicate tokens")
	}
}

// TestOAuth2Compatibility drives the server with golang.org/x/oauth2, the client library the
// design mandates, to show that both wire shapes parse as intended.
func TestOAuth2Compatibility(t *testing.T) {
	s := start(t, Options{})
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, s.Client())
	const special = "a+b/c=d&e%f g~h"
	s.AddDatabricksClient("sp-special", special)

	db := clientcredentials.Config{ClientID: "sp-special", ClientSecret: special, TokenURL: s.URL() + dbPath,
		Scopes: []string{dbScope}, AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := db.Token(ctx)
	if err != nil {
		t.Fatalf("Databricks: %v", err)
	}
	if until := time.Until(tok.Expiry); until < 59*time.Minute || until > 61*time.Minute || tok.TokenType != "Bearer" {
		t.Errorf("Databricks token: type %q expiry in %v", tok.TokenType, until)
	}

	az := clientcredentials.Config{ClientID: azClientID, ClientSecret: azSecret, TokenURL: s.URL() + entraPath,
		Scopes: []string{azScope}, AuthStyle: oauth2.AuthStyleInParams}
	if _, err := az.Token(ctx); err != nil {
		t.Fatalf("Entra: %v", err)
	}

	az.ClientSecret = "wrong"
	_, err = az.Token(ctx)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != 401 || re.ErrorCode != "invalid_client" ||
		!strings.HasPrefix(re.ErrorDescription, "AADSTS7000215: ") {
		t.Errorf("Entra wrong secret: %v", err)
	}

	s.SetOmitExpiresIn(true)
	db.ClientSecret = special
	tok, err = db.Token(ctx)
	if err != nil || !tok.Expiry.IsZero() {
		t.Errorf("without expires_in the client cannot know the expiry by itself: %v %v", tok, err)
	}

	s.FailNext(1, Failure{Status: 200, Body: `{"access_token":`})
	if _, err := db.Token(ctx); err == nil {
		t.Error("malformed body accepted")
	}
}

func ptr[T any](v T) *T { return &v }

func BenchmarkDatabricksToken(b *testing.B) {
	s := start(b, Options{})
	c := call{path: dbPath, form: dbForm(), basic: []string{dbClientID, dbSecret}}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if a, err := trySend(s, c); err != nil || a.status != 200 {
				b.Errorf("%v %d", err, a.status)
			}
		}
	})
}

func BenchmarkEntraToken(b *testing.B) {
	s := start(b, Options{})
	c := call{path: entraPath, form: entraForm()}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if a, err := trySend(s, c); err != nil || a.status != 200 {
				b.Errorf("%v %d", err, a.status)
			}
		}
	})
}
