package tokenserver

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Protocol constants of the SDKs' metadata-service credentials.
const (
	VersionHeader = "X-Databricks-Metadata-Version"
	HostHeader    = "X-Databricks-Host"
	Version       = "1"
)

// Paths served. The token path carries the configured secret segment; the readiness path does not
// (it tells whether a token could be served, never the token).
const (
	TokenPathPrefix = "/token/"
	ReadyPath       = "/readyz"
)

// Defaults of Options.
const (
	DefaultMinRemaining = 30 * time.Second
	DefaultMaxInFlight  = 8
)

// Error codes of the JSON error bodies ({"error": code, "error_description": text}).
const (
	CodeNotFound           = "not_found"
	CodeMethodNotAllowed   = "method_not_allowed"
	CodeMissingVersion     = "missing_metadata_version"
	CodeUnsupportedVersion = "unsupported_metadata_version"
	CodeMissingHost        = "missing_host"
	CodeInvalidHost        = "invalid_host"
	CodeHostNotServed      = "host_not_served"
	CodeMisdirected        = "misdirected_request"
	CodeBusy               = "busy"
	CodeTokenUnavailable   = "token_unavailable"
	CodeTokenInvalid       = "token_invalid"
	CodeExpiryUnknown      = "expiry_unknown"
	CodeTokenExpired       = "token_expired"
	CodeTokenExpiring      = "token_expiring"
	CodeHostUnknown        = "host_unknown"
)

// Options configure a Handler.
type Options struct {
	Volume Volume
	// PathSecret is the secret path segment: the token is served at /token/<PathSecret> only.
	// See ValidPathSecret.
	PathSecret string
	// Host is the workspace URL served. Empty: read Volume.HostKey from the Secret on every
	// request (the same version as the token).
	Host string
	// MinRemaining: a token with less life left is refused like an expired one. Default
	// DefaultMinRemaining; a negative value means zero (only expired tokens are refused).
	MinRemaining time.Duration
	// MaxInFlight bounds the requests that read the volume at once; more are answered 503 at
	// once rather than queued. Default DefaultMaxInFlight.
	MaxInFlight int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives one line per served token version and rate-limited lines per refusal,
	// never a token or the path secret. Default: discard.
	Logger *slog.Logger
}

// Handler serves the metadata-service protocol. It is safe for concurrent use.
type Handler struct {
	vol          Volume
	tokenPath    string
	host         string // normalized; "" = from the Secret
	minRemaining time.Duration
	now          func() time.Time
	log          *slog.Logger
	slots        chan struct{}

	inFlight   atomic.Int64
	peak       atomic.Int64
	lastServed atomic.Pointer[string] // version last served, to log each new one once
	refusals   refusalLog
}

// ValidPathSecret reports whether s can be the secret path segment: 16 to 128 characters that
// need no escaping in a URL path (letters, digits, '-', '.', '_', '~'), e.g. a pod UID.
func ValidPathSecret(s string) bool {
	if len(s) < 16 || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' || r == '~') {
			return false
		}
	}
	return true
}

// New checks the options and returns a Handler.
func New(o Options) (*Handler, error) {
	if o.Volume.Dir == "" {
		return nil, errors.New("the Secret volume directory is required")
	}
	if !ValidKey(o.Volume.TokenKey) {
		return nil, fmt.Errorf("the token key %q is not a Secret key name", o.Volume.TokenKey)
	}
	// The expires-at and host keys are optional ("" = not read).
	for _, k := range []struct{ what, key string }{{"expires-at key", o.Volume.ExpiresKey}, {"host key", o.Volume.HostKey}} {
		if k.key != "" && !ValidKey(k.key) {
			return nil, fmt.Errorf("the %s %q is not a Secret key name", k.what, k.key)
		}
	}
	if !ValidPathSecret(o.PathSecret) {
		return nil, errors.New("the path secret must be 16 to 128 characters of [A-Za-z0-9._~-] (a pod UID works)")
	}
	h := &Handler{
		vol:          o.Volume,
		tokenPath:    TokenPathPrefix + o.PathSecret,
		minRemaining: o.MinRemaining,
		now:          o.Now,
		log:          o.Logger,
	}
	if o.Host != "" {
		n, err := NormalizeHost(o.Host)
		if err != nil {
			return nil, fmt.Errorf("the host %q: %v", o.Host, err)
		}
		h.host = n
		// The host is fixed: a host key in the Secret is not read.
		h.vol.HostKey = ""
	} else if o.Volume.HostKey == "" {
		return nil, errors.New("either a host or a host key is required")
	}
	if o.MinRemaining == 0 {
		h.minRemaining = DefaultMinRemaining
	} else if o.MinRemaining < 0 {
		h.minRemaining = 0
	}
	n := o.MaxInFlight
	if n <= 0 {
		n = DefaultMaxInFlight
	}
	h.slots = make(chan struct{}, n)
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h, nil
}

// refusal is a 4xx/5xx answer.
type refusal struct {
	status      int
	code        string
	description string
}

func (r *refusal) Error() string { return r.code + ": " + r.description }

// tokenResponse is the 200 answer. expires_on is a JSON number: the Go SDK decodes it into a
// json.Number and calls Int64, the Python SDK passes it to datetime.fromtimestamp, which
// refuses a string.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresOn   int64  `json:"expires_on"`
}

type errorResponse struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

type readyResponse struct {
	Status       string `json:"status"`
	ExpiresOn    int64  `json:"expires_on"`
	ExpirySource string `json:"expiry_source"`
	Remaining    string `json:"remaining"`
}

// ServeHTTP answers the token path, the readiness path, and 404 for anything else.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == ReadyPath:
		h.serveReady(w, r)
	case len(r.URL.Path) == len(h.tokenPath) && subtle.ConstantTimeCompare([]byte(r.URL.Path), []byte(h.tokenPath)) == 1:
		h.serveToken(w, r)
	default:
		// The path is not logged: a near miss would put most of the secret segment in the log.
		h.refuse(w, &refusal{http.StatusNotFound, CodeNotFound, "no such path; the token is served at the path in DATABRICKS_METADATA_SERVICE_URL"})
	}
}

func (h *Handler) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		h.refuse(w, &refusal{http.StatusMethodNotAllowed, CodeMethodNotAllowed, "only GET is served"})
		return
	}
	if ref := checkLoopbackHost(r.Host); ref != nil {
		h.refuse(w, ref)
		return
	}
	switch v := r.Header.Values(VersionHeader); {
	case len(v) == 0:
		h.refuse(w, &refusal{http.StatusBadRequest, CodeMissingVersion, VersionHeader + " is required (metadata-service protocol version " + Version + ")"})
		return
	case len(v) != 1 || v[0] != Version:
		h.refuse(w, &refusal{http.StatusBadRequest, CodeUnsupportedVersion, "only " + VersionHeader + ": " + Version + " is supported"})
		return
	}
	var asked string
	switch v := r.Header.Values(HostHeader); {
	case len(v) == 0 || strings.TrimSpace(v[0]) == "":
		h.refuse(w, &refusal{http.StatusBadRequest, CodeMissingHost, HostHeader + " is required: the workspace URL the token is for"})
		return
	case len(v) != 1:
		h.refuse(w, &refusal{http.StatusBadRequest, CodeInvalidHost, "one " + HostHeader + " header is allowed"})
		return
	default:
		n, err := NormalizeHost(v[0])
		if err != nil {
			h.refuse(w, &refusal{http.StatusBadRequest, CodeInvalidHost, HostHeader + " is not a workspace URL: " + err.Error()})
			return
		}
		asked = n
	}
	// A host fixed by configuration is checked before the volume is read: a client asking for
	// another workspace costs nothing.
	if h.host != "" && asked != h.host {
		h.refuse(w, hostMismatch(asked, h.host))
		return
	}
	if !h.acquire() {
		w.Header().Set("Retry-After", "1")
		h.refuse(w, &refusal{http.StatusServiceUnavailable, CodeBusy, "too many requests at once; retry"})
		return
	}
	tok, exp, _, ref := h.current(asked)
	h.release()
	if ref != nil {
		h.refuse(w, ref)
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresOn: exp.Unix()})
}

func (h *Handler) serveReady(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.refuse(w, &refusal{http.StatusMethodNotAllowed, CodeMethodNotAllowed, "only GET and HEAD are served"})
		return
	}
	if !h.acquire() {
		w.Header().Set("Retry-After", "1")
		h.refuse(w, &refusal{http.StatusServiceUnavailable, CodeBusy, "too many requests at once; retry"})
		return
	}
	_, exp, source, ref := h.current("")
	h.release()
	if ref != nil {
		h.refuse(w, ref)
		return
	}
	left := exp.Sub(h.now()).Truncate(time.Second)
	writeJSON(w, http.StatusOK, readyResponse{Status: "ready", ExpiresOn: exp.Unix(), ExpirySource: source, Remaining: left.String()})
}

// current reads the Secret and returns its token and expiry if they may be served for the
// workspace asked ("" skips the host comparison: readiness), or the refusal.
func (h *Handler) current(asked string) (string, time.Time, string, *refusal) {
	snap, err := h.vol.Read()
	if err != nil {
		return "", time.Time{}, "", volumeRefusal(err)
	}
	served := h.host
	if served == "" {
		if snap.Host == "" {
			return "", time.Time{}, "", &refusal{http.StatusServiceUnavailable, CodeHostUnknown,
				fmt.Sprintf("the Secret has no %s key and no --host is configured: the server does not know which workspace it serves", h.vol.HostKey)}
		}
		n, err := NormalizeHost(snap.Host)
		if err != nil {
			return "", time.Time{}, "", &refusal{http.StatusServiceUnavailable, CodeHostUnknown,
				fmt.Sprintf("the Secret's %s is not a workspace URL: %v", h.vol.HostKey, err)}
		}
		served = n
	}
	if asked != "" && asked != served {
		return "", time.Time{}, "", hostMismatch(asked, served)
	}
	if snap.Token == "" {
		return "", time.Time{}, "", &refusal{http.StatusServiceUnavailable, CodeTokenInvalid, "the Secret's " + h.vol.TokenKey + " is empty"}
	}
	if !headerSafe(snap.Token) {
		return "", time.Time{}, "", &refusal{http.StatusServiceUnavailable, CodeTokenInvalid,
			"the Secret's " + h.vol.TokenKey + " holds characters that cannot be sent in an Authorization header"}
	}
	exp, source, err := snap.Expiry()
	switch {
	case errors.Is(err, ErrNoExpiry):
		return "", time.Time{}, "", &refusal{http.StatusServiceUnavailable, CodeExpiryUnknown,
			fmt.Sprintf("the token is not a JWT with an exp claim and the Secret has no %s key: its expiry is unknown, and the server does not guess one", h.expiresKeyName())}
	case err != nil:
		return "", time.Time{}, "", &refusal{http.StatusServiceUnavailable, CodeExpiryUnknown, fmt.Sprintf("the Secret's %s: %v", h.expiresKeyName(), err)}
	}
	now := h.now()
	left := exp.Sub(now)
	switch {
	case left <= 0:
		return "", time.Time{}, "", &refusal{http.StatusServiceUnavailable, CodeTokenExpired,
			fmt.Sprintf("the token in the Secret expired at %s (%s ago, per %s) and no newer one has arrived: check the DatabricksCredential's Ready condition",
				exp.UTC().Format(time.RFC3339), (-left).Truncate(time.Second), source)}
	case left < h.minRemaining:
		return "", time.Time{}, "", &refusal{http.StatusServiceUnavailable, CodeTokenExpiring,
			fmt.Sprintf("the token in the Secret expires at %s, in %s, less than the %s the server requires; no newer one has arrived: check the DatabricksCredential's Ready condition and renewBefore",
				exp.UTC().Format(time.RFC3339), left.Truncate(time.Second), h.minRemaining)}
	}
	h.noteServed(snap.Version, exp, left, source)
	return snap.Token, exp, source, nil
}

func (h *Handler) expiresKeyName() string {
	if h.vol.ExpiresKey == "" {
		return "expires-at key (none configured)"
	}
	return h.vol.ExpiresKey
}

// noteServed logs the first time a version of the Secret is served: one line per rotation, so the
// log shows every token change a client could see, with the life it had left.
func (h *Handler) noteServed(version string, exp time.Time, left time.Duration, source string) {
	if last := h.lastServed.Load(); last != nil && *last == version {
		return
	}
	v := version
	if old := h.lastServed.Swap(&v); old != nil && *old == version {
		return
	}
	h.log.Info("serving token", "secretVersion", version, "expiresAt", exp.UTC().Format(time.RFC3339),
		"remaining", left.Truncate(time.Second).String(), "expirySource", source)
}

func hostMismatch(asked, served string) *refusal {
	return &refusal{http.StatusForbidden, CodeHostNotServed,
		fmt.Sprintf("this server serves the token for %s, not for %s", served, asked)}
}

// volumeRefusal maps Read's errors; their messages name keys and paths, never contents.
func volumeRefusal(err error) *refusal {
	code := CodeTokenUnavailable
	if errors.Is(err, ErrFileTooLarge) || errors.Is(err, ErrNotRegular) {
		code = CodeTokenInvalid
	}
	return &refusal{http.StatusServiceUnavailable, code, err.Error()}
}

// checkLoopbackHost refuses a request whose Host header names anything but the loopback address
// the server listens on: a client of the metadata service dials 127.0.0.1 or localhost, and any
// other name means a request relayed from elsewhere (DNS rebinding).
func checkLoopbackHost(hostport string) *refusal {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "127.0.0.1" || strings.EqualFold(host, "localhost") {
		return nil
	}
	return &refusal{http.StatusMisdirectedRequest, CodeMisdirected, "the Host header must be 127.0.0.1 or localhost"}
}

// headerSafe: visible ASCII only, as a bearer token (RFC 6750 b64token) or any JWT is.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func (h *Handler) acquire() bool {
	select {
	case h.slots <- struct{}{}:
		n := h.inFlight.Add(1)
		for {
			p := h.peak.Load()
			if n <= p || h.peak.CompareAndSwap(p, n) {
				break
			}
		}
		return true
	default:
		return false
	}
}

func (h *Handler) release() {
	h.inFlight.Add(-1)
	<-h.slots
}

func (h *Handler) refuse(w http.ResponseWriter, r *refusal) {
	h.refusals.log(h.log, h.now(), r)
	writeJSON(w, r.status, errorResponse{Error: r.code, Description: r.description})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"internal","error_description":"encoding the answer failed"}`)
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// refusalLog writes at most one line per error code every refusalLogInterval, with the number of
// refusals it left out: a misconfigured client polling in a loop, or a storm, cannot flood the
// log or spend the server's time on it.
type refusalLog struct {
	mu    sync.Mutex
	codes map[string]*refusalCount
}

type refusalCount struct {
	last       time.Time
	suppressed int
}

const refusalLogInterval = 10 * time.Second

func (l *refusalLog) log(logger *slog.Logger, now time.Time, r *refusal) {
	l.mu.Lock()
	if l.codes == nil {
		l.codes = map[string]*refusalCount{}
	}
	c, ok := l.codes[r.code]
	if !ok {
		c = &refusalCount{}
		l.codes[r.code] = c // bounded: codes are the constants above
	}
	if !c.last.IsZero() && now.Sub(c.last) < refusalLogInterval {
		c.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := c.suppressed
	c.last, c.suppressed = now, 0
	l.mu.Unlock()
	logger.Warn("refused", "status", r.status, "error", r.code, "description", r.description, "similarRefusalsNotLogged", suppressed)
}
