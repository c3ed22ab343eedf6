// Package workspace is a fake Databricks workspace REST API for tests and the local demo.
//
// It plays the consumer's side of the operator's job: a dbt pod (or the Databricks CLI) presents
// the token from the target Secret as `Authorization: Bearer <token>`, and the workspace accepts
// it only if the identity provider issued it and it has not expired. That closes the loop of the
// demo and of end-to-end tests: not just "a token was written", but "the token that was written
// works".
//
// The token is checked the way a resource server does it, through a TokenValidator (the test
// identity provider's ValidateToken: RS256 signature, exp, nbf), plus an optional audience check.
// Rejections are answered like Databricks answers them:
//
//   - no credential, or one that is not a bearer token: 401
//     {"error_code":"UNAUTHENTICATED","message":"Credential was not sent or was of an unsupported type for this API."}
//   - a bearer token that is malformed, forged, expired or for another audience: 403
//     {"error_code":"PERMISSION_DENIED","message":"Invalid access token."}
//
// The endpoints are the ones a connection check uses: the caller's identity
// (GET /api/2.0/preview/scim/v2/Me, what `databricks current-user me` calls) and SQL warehouses
// (GET /api/2.0/sql/warehouses[/{id}], the compute behind dbt's http_path). Anything else is
// 404 ENDPOINT_NOT_FOUND once the caller is authenticated.
//
// Not modelled: Azure Databricks refusing tokens with 30 s or less left, IP access lists, and
// workspace membership (any subject the identity provider vouches for is a user here).
package workspace

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dbtoken/databricks-token-operator/test/idp"
)

// Error codes and messages of the Databricks REST API that the fake answers with.
const (
	CodeUnauthenticated    = "UNAUTHENTICATED"
	CodePermissionDenied   = "PERMISSION_DENIED"
	CodeEndpointNotFound   = "ENDPOINT_NOT_FOUND"
	CodeResourceNotFound   = "RESOURCE_DOES_NOT_EXIST"
	MessageUnauthenticated = "Credential was not sent or was of an unsupported type for this API."
	MessageInvalidToken    = "Invalid access token."
)

// DefaultWarehouseID is the ID of the one SQL warehouse the workspace has unless Options say
// otherwise (16 hex digits, like real warehouse IDs).
const DefaultWarehouseID = "8f3a2b1c4d5e6f70"

// Paths of the endpoints served.
const (
	PathMe         = "/api/2.0/preview/scim/v2/Me"
	PathWarehouses = "/api/2.0/sql/warehouses"
)

// Why a request was rejected, as recorded in Request.Rejection (never sent to the client, which
// gets the same answer for all of them, as from Databricks).
const (
	RejectNoCredential = "no-credential"  // 401: no Authorization header, or not "Bearer"
	RejectInvalid      = "invalid"        // 403: not a token the validator accepts (bad signature, malformed)
	RejectExpired      = "expired"        // 403: a genuine token past its exp
	RejectAudience     = "wrong-audience" // 403: a genuine token for another resource
)

// TokenValidator verifies a bearer token and returns its claims; *idp.Server implements it.
// Errors that wrap idp.ErrTokenExpired are recorded as RejectExpired.
type TokenValidator interface {
	ValidateToken(token string) (idp.Claims, error)
}

// Options configure a Server.
type Options struct {
	// Validator checks bearer tokens. Required.
	Validator TokenValidator
	// Audiences, when set, are the token audiences accepted, e.g. idp.AzureDatabricksResourceID
	// for Entra tokens (what Azure Databricks requires). Empty accepts any audience.
	Audiences []string
	// WarehouseID is the ID of the workspace's SQL warehouse; default DefaultWarehouseID.
	WarehouseID string
	// WarehouseName is its display name; default "Starter Warehouse".
	WarehouseName string
}

// Request is what the server recorded about one request. It has no field for the token.
type Request struct {
	Time      time.Time
	Method    string
	Path      string
	Status    int
	Subject   string // the token's sub claim when it was accepted
	Rejection string // one of the Reject* constants when it was not
}

// Server is a fake Databricks workspace over TLS. Methods are safe for concurrent use.
type Server struct {
	opts   Options
	srv    *httptest.Server
	caPEM  []byte
	closed sync.Once

	mu       sync.Mutex
	requests []Request
}

// Start serves the fake on 127.0.0.1 with a random port and a self-signed certificate (valid for
// 127.0.0.1 and ::1). Call Close when done.
func Start(opts Options) (*Server, error) {
	if opts.Validator == nil {
		return nil, errors.New("workspace: Options.Validator is required")
	}
	if opts.WarehouseID == "" {
		opts.WarehouseID = DefaultWarehouseID
	}
	if opts.WarehouseName == "" {
		opts.WarehouseName = "Starter Warehouse"
	}
	s := &Server{opts: opts}
	s.srv = httptest.NewUnstartedServer(s)
	// Clients that refuse the certificate would otherwise have their handshake errors printed
	// to stderr by net/http; the client reports them.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.Config.ReadHeaderTimeout = 10 * time.Second
	s.srv.StartTLS()
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
	return s, nil
}

// Close stops the server and waits for in-flight requests.
func (s *Server) Close() { s.closed.Do(s.srv.Close) }

// URL is the workspace URL, e.g. https://127.0.0.1:41234 (no trailing slash): a
// DatabricksCredential's spec.host.
func (s *Server) URL() string { return s.srv.URL }

// Hostname is host:port without the scheme, as dbt's profiles.yml wants it.
func (s *Server) Hostname() string { return strings.TrimPrefix(s.srv.URL, "https://") }

// WarehouseID is the ID of the workspace's SQL warehouse.
func (s *Server) WarehouseID() string { return s.opts.WarehouseID }

// HTTPPath is the warehouse's http_path for dbt and ODBC/JDBC clients.
func (s *Server) HTTPPath() string { return "/sql/1.0/warehouses/" + s.opts.WarehouseID }

// CACertPEM is the PEM of the (self-signed) serving certificate, the trust anchor for clients.
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.caPEM...) }

// CertPool holds only the serving certificate (no system roots).
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.srv.Certificate())
	return p
}

// Client returns an http.Client that trusts the server's certificate, with a 10 s timeout.
func (s *Server) Client() *http.Client {
	c := s.srv.Client()
	c.Timeout = 10 * time.Second
	return c
}

// Requests returns a copy of every request recorded so far, in the order answers completed.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// ServeHTTP authenticates, then routes; it is exported only because Server is an http.Handler.
// Authentication comes first, as on Databricks: an unauthenticated caller learns nothing about
// which paths exist.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Request{Time: time.Now(), Method: r.Method, Path: r.URL.Path}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		rec.Status = sw.status
		s.mu.Lock()
		s.requests = append(s.requests, rec)
		s.mu.Unlock()
	}()

	claims, rejection := s.authenticate(r)
	rec.Rejection = rejection
	switch rejection {
	case "":
	case RejectNoCredential:
		writeError(sw, http.StatusUnauthorized, CodeUnauthenticated, MessageUnauthenticated)
		return
	default:
		writeError(sw, http.StatusForbidden, CodePermissionDenied, MessageInvalidToken)
		return
	}
	rec.Subject = claims.Subject

	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case r.Method == http.MethodGet && path == PathMe:
		writeJSON(sw, http.StatusOK, me(claims))
	case r.Method == http.MethodGet && path == PathWarehouses:
		writeJSON(sw, http.StatusOK, map[string]any{"warehouses": []warehouse{s.warehouse()}})
	case r.Method == http.MethodGet && strings.HasPrefix(path, PathWarehouses+"/"):
		id := strings.TrimPrefix(path, PathWarehouses+"/")
		if id != s.opts.WarehouseID {
			writeError(sw, http.StatusNotFound, CodeResourceNotFound, fmt.Sprintf("Warehouse %s does not exist.", id))
			return
		}
		writeJSON(sw, http.StatusOK, s.warehouse())
	default:
		writeError(sw, http.StatusNotFound, CodeEndpointNotFound, fmt.Sprintf("No API found for '%s %s'", r.Method, r.URL.Path))
	}
}

// authenticate returns the token's claims, or why it was refused.
func (s *Server) authenticate(r *http.Request) (idp.Claims, string) {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return idp.Claims{}, RejectNoCredential
	}
	tok := strings.TrimSpace(h[len(prefix):])
	if tok == "" {
		return idp.Claims{}, RejectNoCredential
	}
	claims, err := s.opts.Validator.ValidateToken(tok)
	switch {
	case errors.Is(err, idp.ErrTokenExpired):
		return idp.Claims{}, RejectExpired
	case err != nil:
		return idp.Claims{}, RejectInvalid
	}
	if !s.audienceAllowed(claims.Audience) {
		return idp.Claims{}, RejectAudience
	}
	return claims, ""
}

func (s *Server) audienceAllowed(aud string) bool {
	if len(s.opts.Audiences) == 0 {
		return true
	}
	for _, got := range strings.Fields(aud) {
		for _, want := range s.opts.Audiences {
			if strings.EqualFold(got, want) {
				return true
			}
		}
	}
	return false
}

// scimUser is the subset of the SCIM Me answer that clients read. For a service principal,
// userName is its application (client) ID.
type scimUser struct {
	Schemas     []string `json:"schemas"`
	ID          string   `json:"id"`
	UserName    string   `json:"userName"`
	DisplayName string   `json:"displayName"`
	Active      bool     `json:"active"`
}

func me(c idp.Claims) scimUser {
	// Workspace user IDs are large decimal numbers; derive a stable one from the subject.
	sum := sha256.Sum256([]byte(c.Subject))
	id := binary.BigEndian.Uint64(sum[:8]) % 1e16
	return scimUser{
		Schemas:     []string{"urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:workspace:2.0:User"},
		ID:          strconv.FormatUint(id, 10),
		UserName:    c.Subject,
		DisplayName: c.Subject,
		Active:      true,
	}
}

type warehouse struct {
	ID            string     `json:"id"`
	Name          string     `json:"name"`
	State         string     `json:"state"`
	ClusterSize   string     `json:"cluster_size"`
	WarehouseType string     `json:"warehouse_type"`
	Serverless    bool       `json:"enable_serverless_compute"`
	ODBCParams    odbcParams `json:"odbc_params"`
}

type odbcParams struct {
	Hostname string `json:"hostname"`
	Path     string `json:"path"`
	Protocol string `json:"protocol"`
	Port     int    `json:"port"`
}

func (s *Server) warehouse() warehouse {
	host, portStr, _ := net.SplitHostPort(s.Hostname())
	port, _ := strconv.Atoi(portStr)
	return warehouse{
		ID:            s.opts.WarehouseID,
		Name:          s.opts.WarehouseName,
		State:         "RUNNING",
		ClusterSize:   "2X-Small",
		WarehouseType: "PRO",
		Serverless:    true,
		ODBCParams:    odbcParams{Hostname: host, Path: s.HTTPPath(), Protocol: "https", Port: port},
	}
}

// apiError is the error body of the Databricks REST API.
type apiError struct {
	ErrorCode string `json:"error_code"`
	Message   string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, apiError{ErrorCode: code, Message: message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
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
