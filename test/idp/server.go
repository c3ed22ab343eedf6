package idp

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// DefaultTokenLifetime is the lifetime of issued access tokens unless configured otherwise. It
// matches the one hour Databricks issues (Entra issues a random 60–90 minutes; the fake is
// deterministic so tests can reason about refresh times).
const DefaultTokenLifetime = time.Hour

// Options configures a Server.
type Options struct {
	// TokenLifetime is the lifetime of issued access tokens; default DefaultTokenLifetime. JWT
	// times have whole-second precision, so it is rounded up to whole seconds (at least 1 s).
	TokenLifetime time.Duration
	// Clock is the time source for iat/nbf/exp, error timestamps, Request.Time and
	// ValidateToken; default time.Now. It does not affect Failure.Delay (real time) nor the TLS
	// certificate's validity (which the client checks against its own clock).
	Clock func() time.Time
	// OmitExpiresIn makes 200 answers leave out "expires_in" (and Entra's "ext_expires_in"), so
	// that the client has to read the JWT's exp claim, as the design requires.
	OmitExpiresIn bool
}

// Endpoint names the kind of endpoint a recorded request was routed to.
const (
	EndpointDatabricksToken = "databricks-token" // POST /oidc/v1/token
	EndpointEntraToken      = "entra-token"      // POST /{tenant}/oauth2/v2.0/token
	EndpointJWKS            = "jwks"             // GET /oidc/v1/keys, /oidc/jwks.json, /{tenant}/discovery/v2.0/keys
	EndpointDiscovery       = "discovery"        // GET /oidc/.well-known/oauth-authorization-server, /{tenant}/v2.0/.well-known/openid-configuration
	EndpointUnknown         = "unknown"          // anything else (answered 404)
)

// Request is what the server recorded about one HTTP request. It deliberately has no field for
// the client secret: tests assert on how credentials were sent (AuthMethod, SecretPresent), and
// the fake must not become a place where secrets pile up.
type Request struct {
	Time          time.Time // per Options.Clock, when the request arrived
	Path          string    // e.g. /oidc/v1/token or /<tenant>/oauth2/v2.0/token
	Method        string
	Endpoint      string // one of the Endpoint* constants
	ContentType   string // the request's Content-Type header, verbatim
	GrantType     string
	Scope         string
	ClientID      string // from Basic auth (URL-decoded, RFC 6749 §2.3.1) or the form
	AuthMethod    string // "basic", "form", or "none"
	SecretPresent bool   // whether a non-empty client secret was sent
	FormKeys      []string
	Status        int    // status code answered; 0 if the client gave up (or the server closed) before an answer
	Injected      bool   // the answer came from FailNext
	IssuedToken   string // the access token issued, if any ("" otherwise)

	// Requests that prove the client's identity with a JWT instead of a secret: a Databricks
	// token exchange (the federated token in subject_token) or an Entra client assertion.
	// The token itself is not recorded here (see Assertions); these fields describe it.
	AssertionType string // "subject_token", "client_assertion", or "" when neither was sent
	// AssertionVerified reports that the signature (against the registered JWKS or certificate),
	// issuer, subject, audience and validity period all checked out.
	AssertionVerified   bool
	AssertionAlg        string    // the JWT header's alg, e.g. ES256 or PS256
	AssertionThumbprint string    // the header's x5t#S256 (certificate assertions)
	AssertionIssuer     string    // iss, as presented (before verification)
	AssertionSubject    string    // sub, as presented
	AssertionAudience   []string  // aud, as presented
	AssertionIssuedAt   time.Time // iat, zero when absent
	AssertionExpiresAt  time.Time // exp, zero when absent
}

// Server is a fake Databricks + Entra ID token endpoint over TLS. All methods are safe for
// concurrent use.
type Server struct {
	clock     func() time.Time
	ln        net.Listener
	srv       *http.Server
	url       string
	tls       *tlsMaterial
	transport *http.Transport
	signer    *signer

	done      chan struct{}
	closeOnce sync.Once
	inflight  sync.WaitGroup

	mu            sync.Mutex
	closed        bool
	lifetime      time.Duration
	omitExpiresIn bool
	dbClients     map[string][sha256.Size]byte // client ID → SHA-256 of the secret
	tenants       map[string]*tenant           // lower-case tenant ID → tenant
	failures      []*failureRule
	requests      []Request
	issued        []string
	federation    []*federationPolicy
	assertions    []string
}

type tenant struct {
	id   string               // as registered; used in iss/tid
	apps map[string]*azureApp // lower-case client ID → app
}

type azureApp struct {
	clientID   string
	objectID   string // the service principal's object ID (oid claim)
	secretHash [sha256.Size]byte
	noSecret   bool // registered through a federated credential or certificate only
	expired    bool
	federated  []azureFederatedCredential
	certs      []azureCertificate
}

// Start generates a CA, a serving certificate (valid for 127.0.0.1, ::1 and localhost) and an
// RS256 signing key, and serves on 127.0.0.1 with a random port. Call Close when done.
func Start(opts Options) (*Server, error) {
	material, err := newTLSMaterial()
	if err != nil {
		return nil, err
	}
	sg, err := newSigner()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("idp: listen: %w", err)
	}
	s := &Server{
		clock:         opts.Clock,
		ln:            ln,
		url:           "https://" + ln.Addr().String(),
		tls:           material,
		signer:        sg,
		done:          make(chan struct{}),
		lifetime:      normalizeLifetime(opts.TokenLifetime),
		omitExpiresIn: opts.OmitExpiresIn,
		dbClients:     map[string][sha256.Size]byte{},
		tenants:       map[string]*tenant{},
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	s.transport = &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: material.pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	s.srv = &http.Server{
		Handler:           s,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{material.leaf}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		// Handshake failures from clients that (correctly) refuse the CA would otherwise be
		// printed to stderr by net/http; tests assert on the client's error instead.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	return s, nil
}

// Close stops the server. Handlers that are hanging because of an injected Delay are released,
// and Close waits for all handlers to return, so no request is recorded after Close.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		_ = s.srv.Close()
		close(s.done)
		s.inflight.Wait()
		s.transport.CloseIdleConnections()
	})
}

// URL is the base URL, e.g. https://127.0.0.1:41234 (no trailing slash). It serves as the
// Databricks workspace host and as the Entra authority host.
func (s *Server) URL() string { return s.url }

// Addr is host:port of the listener.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// CACertPEM is the PEM of the CA that signed the serving certificate: what a caBundleRef
// ConfigMap would hold.
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.tls.caPEM...) }

// CertPool is a pool holding only the CA (no system roots).
func (s *Server) CertPool() *x509.CertPool { return s.tls.pool.Clone() }

// Client returns an http.Client that trusts the CA (and nothing else). It has no timeout: use
// request contexts. Clients share one transport, whose idle connections Close drops.
func (s *Server) Client() *http.Client { return &http.Client{Transport: s.transport} }

// AddDatabricksClient registers (or replaces the secret of) a Databricks service principal for
// POST /oidc/v1/token. Only a hash of the secret is kept.
func (s *Server) AddDatabricksClient(clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dbClients[clientID] = sha256.Sum256([]byte(secret))
}

// RemoveDatabricksClient forgets a Databricks client; its requests then fail with invalid_client.
func (s *Server) RemoveDatabricksClient(clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.dbClients, clientID)
}

// AddTenant registers an Entra tenant. Tenant IDs (GUIDs) are matched case-insensitively, as
// Entra does; the registered spelling is used in issued tokens.
func (s *Server) AddTenant(tenantID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addTenantLocked(tenantID)
}

func (s *Server) addTenantLocked(tenantID string) *tenant {
	key := strings.ToLower(tenantID)
	t, ok := s.tenants[key]
	if !ok {
		t = &tenant{id: tenantID, apps: map[string]*azureApp{}}
		s.tenants[key] = t
	}
	return t
}

// AddAzureApp registers an app (service principal) with a client secret in a tenant, adding the
// tenant if needed. Registering an existing app replaces its secret with a fresh, unexpired one
// (a rotation). Client IDs are matched case-insensitively. Only a hash of the secret is kept.
func (s *Server) AddAzureApp(tenantID, clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.addTenantLocked(tenantID)
	key := strings.ToLower(clientID)
	app, ok := t.apps[key]
	if !ok {
		app = &azureApp{clientID: clientID, objectID: newUUID()}
		t.apps[key] = app
	}
	app.secretHash = sha256.Sum256([]byte(secret))
	app.noSecret = false
	app.expired = false
}

// RemoveAzureApp deletes an app from a tenant; its requests then get AADSTS700016.
func (s *Server) RemoveAzureApp(tenantID, clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tenants[strings.ToLower(tenantID)]; ok {
		delete(t.apps, strings.ToLower(clientID))
	}
}

// ExpireAzureSecret marks the app's secret as expired: requests that present it get
// AADSTS7000222 (a wrong secret still gets AADSTS7000215). AddAzureApp un-expires it. Unknown
// tenants or apps are ignored.
func (s *Server) ExpireAzureSecret(tenantID, clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tenants[strings.ToLower(tenantID)]; ok {
		if app, ok := t.apps[strings.ToLower(clientID)]; ok {
			app.expired = true
		}
	}
}

// SetTokenLifetime changes the lifetime of tokens issued from now on; d <= 0 restores
// DefaultTokenLifetime.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = normalizeLifetime(d)
}

// SetOmitExpiresIn changes Options.OmitExpiresIn for answers from now on.
func (s *Server) SetOmitExpiresIn(omit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.omitExpiresIn = omit
}

// Requests returns a copy of every request recorded since Start or the last ResetRequests, in
// the order the answers completed.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		r.FormKeys = append([]string(nil), r.FormKeys...)
		r.AssertionAudience = append([]string(nil), r.AssertionAudience...)
		out[i] = r
	}
	return out
}

// RequestCount is len(Requests()) without the copy.
func (s *Server) RequestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// TokenRequestCount counts recorded requests to either token endpoint (any outcome), leaving
// out JWKS, discovery and 404 requests.
func (s *Server) TokenRequestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if r.Endpoint == EndpointDatabricksToken || r.Endpoint == EndpointEntraToken {
			n++
		}
	}
	return n
}

// Assertions returns every federated token (subject_token) and client assertion received since
// Start, verified or not, so that tests can assert none of them reached logs, events or status.
// ResetRequests does not clear it.
func (s *Server) Assertions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.assertions...)
}

// ResetRequests forgets recorded requests (not IssuedTokens).
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// IssuedTokens returns every access token issued since Start (ResetRequests does not clear
// it), so tests can assert that none of them appears in logs, events or status.
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

func normalizeLifetime(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultTokenLifetime
	}
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return d
}

// statusWriter remembers the status code a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// credentials is how the client authenticated. The secret lives only for the duration of the
// request and is never copied into a Request.
type credentials struct {
	method   string // "basic", "form" or "none"
	clientID string
	secret   string
}

// readCredentials follows RFC 6749 §2.3.1: HTTP Basic with form-urlencoded user and password
// (golang.org/x/oauth2 encodes them so), or client_id/client_secret in the body. If a Basic
// header is present it wins, as the RFC forbids using both.
func readCredentials(r *http.Request) credentials {
	if h := r.Header.Get("Authorization"); len(h) >= 6 && strings.EqualFold(h[:6], "Basic ") {
		c := credentials{method: "basic"}
		if id, secret, ok := r.BasicAuth(); ok {
			c.clientID, c.secret = formUnescape(id), formUnescape(secret)
		}
		return c
	}
	if r.PostForm.Has("client_id") || r.PostForm.Has("client_secret") {
		return credentials{method: "form", clientID: r.PostForm.Get("client_id"), secret: r.PostForm.Get("client_secret")}
	}
	return credentials{method: "none"}
}

func formUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

func secretMatches(want [sha256.Size]byte, got string) bool {
	h := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(want[:], h[:]) == 1
}

// ServeHTTP routes requests; it is exported only because Server is an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		w.Header().Set("Connection", "close")
		writeHTML(w, http.StatusServiceUnavailable)
		return
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()

	endpoint, tenantSeg := route(r.URL.Path)
	if r.Method == http.MethodPost {
		// Parse errors (bad percent-encoding, oversize body) leave the form partially filled;
		// the endpoint then answers with the provider's "missing parameter" error, as a real
		// server would.
		_ = r.ParseForm()
	}
	creds := readCredentials(r)
	rec := Request{
		Time:          s.clock(),
		Path:          r.URL.Path,
		Method:        r.Method,
		Endpoint:      endpoint,
		ContentType:   r.Header.Get("Content-Type"),
		GrantType:     r.PostForm.Get("grant_type"),
		Scope:         r.PostForm.Get("scope"),
		ClientID:      creds.clientID,
		AuthMethod:    creds.method,
		SecretPresent: creds.secret != "",
	}
	for k := range r.PostForm {
		rec.FormKeys = append(rec.FormKeys, k)
	}
	sort.Strings(rec.FormKeys)
	var assertion string
	for _, k := range []string{"subject_token", "client_assertion"} {
		if v := r.PostForm.Get(k); v != "" {
			rec.AssertionType, assertion = k, v
		}
	}

	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		rec.Status = sw.status
		s.mu.Lock()
		s.requests = append(s.requests, rec)
		if rec.IssuedToken != "" {
			s.issued = append(s.issued, rec.IssuedToken)
		}
		if assertion != "" {
			s.assertions = append(s.assertions, assertion)
		}
		s.mu.Unlock()
	}()

	switch endpoint {
	case EndpointDatabricksToken, EndpointEntraToken:
		if f, ok := s.takeFailure(); ok {
			if f.Delay > 0 && !s.sleep(r.Context(), f.Delay) {
				// The client gave up or the server is closing. Abort the exchange rather than
				// return, which would make net/http send an empty 200 that a still-connected
				// client could mistake for an answer. The deferred recording still runs.
				panic(http.ErrAbortHandler)
			}
			if f.injectsAnswer() {
				rec.Injected = true
				s.writeFailure(sw, r, endpoint, creds, f)
				return
			}
		}
		if endpoint == EndpointDatabricksToken {
			s.databricksToken(sw, r, creds, &rec)
		} else {
			s.entraToken(sw, r, tenantSeg, creds, &rec)
		}
	case EndpointJWKS:
		s.serveJWKS(sw, r, tenantSeg)
	case EndpointDiscovery:
		s.serveDiscovery(sw, r, tenantSeg)
	default:
		writeHTML(sw, http.StatusNotFound)
	}
}

// route maps a path to an endpoint kind and, for Entra paths, the tenant segment.
func route(path string) (endpoint, tenantSeg string) {
	switch path {
	case "/oidc/v1/token":
		return EndpointDatabricksToken, ""
	case "/oidc/v1/keys", "/oidc/jwks.json":
		return EndpointJWKS, ""
	case "/oidc/.well-known/oauth-authorization-server":
		return EndpointDiscovery, ""
	}
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(parts) != 4 || parts[0] == "" {
		return EndpointUnknown, ""
	}
	switch {
	case parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "token":
		return EndpointEntraToken, parts[0]
	case parts[1] == "discovery" && parts[2] == "v2.0" && parts[3] == "keys":
		return EndpointJWKS, parts[0]
	case parts[1] == "v2.0" && parts[2] == ".well-known" && parts[3] == "openid-configuration":
		return EndpointDiscovery, parts[0]
	}
	return EndpointUnknown, ""
}

// sleep waits d of real time; false if the request context ends or the server closes first.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// lookupAzureApp returns copies of the tenant's registered ID and the app, under the lock.
func (s *Server) lookupAzureApp(tenantID, clientID string) (tenantCanonical string, tenantOK bool, app azureApp, appOK bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tenants[strings.ToLower(tenantID)]
	if !ok {
		return "", false, azureApp{}, false
	}
	a, ok := t.apps[strings.ToLower(clientID)]
	if !ok {
		return t.id, true, azureApp{}, false
	}
	return t.id, true, *a, true
}

func (s *Server) tenantExists(tenantID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.tenants[strings.ToLower(tenantID)]
	return ok
}

// tokenSettings snapshots the settings that shape a 200 answer.
func (s *Server) tokenSettings() (lifetime time.Duration, omitExpiresIn bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lifetime, s.omitExpiresIn
}
