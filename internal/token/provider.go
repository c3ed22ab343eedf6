package token

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"k8s.io/utils/clock"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// DefaultTimeout bounds one exchange, connection set-up included (--token-timeout).
const DefaultTimeout = 30 * time.Second

// Token is an access token and its validity. String and GoString hide the token so that a
// stray %v in a log line cannot leak it.
type Token struct {
	AccessToken string
	// IssuedAt is our clock's reading just before the request was sent, so ExpiresAt is never
	// later than the provider's own idea of the expiry.
	IssuedAt time.Time
	// ExpiresAt is IssuedAt + expires_in, or the JWT's exp claim when expires_in is absent.
	// Truncated to whole seconds.
	ExpiresAt time.Time
}

func (t Token) String() string {
	return fmt.Sprintf("token(issued %s, expires %s)", t.IssuedAt.UTC().Format(time.RFC3339), t.ExpiresAt.UTC().Format(time.RFC3339))
}

// GoString keeps %#v from printing the access token.
func (t Token) GoString() string { return t.String() }

// LogValue keeps slog (whose JSON handler would otherwise marshal every field) from logging the
// access token.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.String()) }

// Lifetime is how long the token was valid for when it was issued.
func (t Token) Lifetime() time.Duration { return t.ExpiresAt.Sub(t.IssuedAt) }

// Provider performs one token exchange per call. It does not cache: the token lives in the
// target Secret, and the controller decides when a new one is needed.
type Provider interface {
	Token(ctx context.Context, req Request) (Token, error)
}

// Options configure a ClientCredentials provider.
type Options struct {
	// Clock stamps IssuedAt and computes ExpiresAt; x/oauth2 uses the wall clock, which tests
	// cannot drive, so its Expiry is ignored.
	Clock clock.PassiveClock
	// Timeout bounds each exchange. Default DefaultTimeout.
	Timeout time.Duration
	// AllowedHosts lists where client credentials may be sent. Required.
	AllowedHosts HostPolicy
	// RootCAs replaces the system roots (tests and the demo pass their own CA). nil = system roots.
	RootCAs *x509.CertPool
	// Observer receives each request's duration and outcome (the manager's metrics). nil = none.
	Observer Observer
}

// ClientCredentials is the Provider for every identity block: the OAuth 2.0 client-credentials
// grant through golang.org/x/oauth2/clientcredentials, with the block's endpoint, auth style and
// scopes taken from the Request.
type ClientCredentials struct {
	opts Options

	mu         sync.Mutex
	transports map[[32]byte]*pooledTransport // keyed by CA bundle hash: one connection pool per trust set
	uses       uint64                        // a counter that orders the transports by last use
}

// maxTransports bounds the connection pools kept, one per distinct CA bundle: anyone who may edit
// a CA ConfigMap can make new bundles, and each pool holds its parsed roots and connections. The
// least recently used pool beyond it is closed and dropped; a credential that needs it again gets
// a new one.
const maxTransports = 32

type pooledTransport struct {
	*http.Transport
	lastUse uint64
}

var _ Provider = (*ClientCredentials)(nil)

// NewClientCredentials returns a provider; see Options for the defaults.
func NewClientCredentials(opts Options) *ClientCredentials {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Observer == nil {
		opts.Observer = noObserver{}
	}
	return &ClientCredentials{opts: opts, transports: map[[32]byte]*pooledTransport{}}
}

// Token performs one exchange: client credentials through x/oauth2, or, for identities without a
// client secret, the assertion exchanges of exchange.go. Every failure is an *Error.
func (p *ClientCredentials) Token(ctx context.Context, req Request) (Token, error) {
	tokenURL, ok := p.opts.AllowedHosts.Check(req.TokenURL)
	if !ok {
		return Token{}, hostNotAllowed(req.TokenURL)
	}
	// From here on the URL names its host exactly as it is dialled (see HostPolicy.Check).
	req.TokenURL = tokenURL
	transport, err := p.transport(req.CABundle)
	if err != nil {
		return Token{}, err
	}
	rec := &responseRecorder{next: hostGuard{next: transport, policy: p.opts.AllowedHosts}, kind: req.Kind, observer: p.opts.Observer}
	client := &http.Client{
		Transport: rec,
		// Never follow a redirect: a 307/308 would re-send the client secret to a host that was
		// never checked against the allow-list.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	authStyle := oauth2.AuthStyleInParams
	if req.SendInHeader {
		authStyle = oauth2.AuthStyleInHeader
	}
	cfg := clientcredentials.Config{
		ClientID:     req.ClientID,
		ClientSecret: req.ClientSecret,
		TokenURL:     req.TokenURL,
		Scopes:       req.Scopes,
		AuthStyle:    authStyle,
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	issuedAt := p.opts.Clock.Now().Truncate(time.Second)
	if req.usesAssertion() {
		return p.assertionExchange(ctx, client, rec, req, issuedAt)
	}
	tok, err := cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, client))
	if err != nil {
		return Token{}, p.classify(ctx, err, rec, req)
	}
	expiresAt, err := expiry(tok, issuedAt)
	if err != nil {
		return Token{}, err
	}
	return Token{AccessToken: tok.AccessToken, IssuedAt: issuedAt, ExpiresAt: expiresAt}, nil
}

// hostNotAllowed is the HostNotAllowed error for a token URL; where the name that would be
// dialled differs from the text (an internationalized or percent-encoded host), it says both.
func hostNotAllowed(rawURL string) *Error {
	host := hostOf(rawURL)
	msg := fmt.Sprintf("token endpoint host %q is not allowed", sanitize(host, 256))
	if u, err := url.Parse(rawURL); err == nil {
		if dial, ok := DialHost(u.Hostname()); ok && dial != u.Hostname() {
			msg += fmt.Sprintf(" (it would connect to %q)", dial)
		} else if !ok && u.Hostname() != "" {
			msg += " (it is not a valid host name)"
		}
	}
	return &Error{Reason: v1alpha1.ReasonHostNotAllowed, Message: msg,
		Hint: "add it to the manager's --allowed-token-hosts if it is a genuine identity provider; host names must be plain ASCII (internationalized names in their xn-- form)"}
}

// hostGuard is the allow-list's last check, on the request about to be dialled: whatever path
// built the request, nothing leaves for a host the policy does not allow, and the host is
// already ASCII, so net/http maps nothing (HostPolicy.Check).
type hostGuard struct {
	next   http.RoundTripper
	policy HostPolicy
}

func (g hostGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Hostname()
	if dial, ok := DialHost(host); !ok || !isASCII(host) || !g.policy.allowsHost(dial) {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, hostNotAllowed(req.URL.String())
	}
	return g.next.RoundTrip(req)
}

// expiry computes when tok expires from our clock: expires_in if the provider sent it, else the
// exp claim of a JWT access token. A token with neither is refused; a lifetime is never assumed.
func expiry(tok *oauth2.Token, issuedAt time.Time) (time.Time, error) {
	if secs := expiresIn(tok); secs > 0 {
		return issuedAt.Add(time.Duration(secs) * time.Second), nil
	}
	if exp, ok := jwtExpiry(tok.AccessToken); ok {
		if !exp.After(issuedAt) {
			return time.Time{}, &Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true,
				Message: "the issued token is already expired (JWT exp in the past)",
				Hint:    "check the clocks of the identity provider and the operator"}
		}
		return exp.Truncate(time.Second), nil
	}
	return time.Time{}, &Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true,
		Message: "the token response has no expires_in and the token is not a JWT with an exp claim",
		Hint:    "the provider must say how long the token lives; the operator never assumes a lifetime"}
}

// maxExpiresIn bounds expires_in (about 68 years, x/oauth2's own cap) so that the lifetime
// cannot overflow a time.Duration.
const maxExpiresIn = math.MaxInt32

// expiresIn is the answer's expires_in in whole seconds, 0 when absent or unusable.
// clientcredentials does not copy oauth2.Token.ExpiresIn into the token it returns, so the value
// comes from the raw answer: a float64 from JSON (a string if the provider quoted it), an int64,
// float64 or string from a form-encoded answer.
func expiresIn(tok *oauth2.Token) int64 {
	var f float64
	switch v := tok.Extra("expires_in").(type) {
	case float64:
		f = v
	case int64:
		f = float64(v)
	case json.Number:
		f, _ = v.Float64()
	case string:
		f, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
	default:
		f = float64(tok.ExpiresIn)
	}
	if math.IsNaN(f) || f < 1 || f > maxExpiresIn {
		return 0
	}
	return int64(f)
}

// maxJWTExp is 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
const maxJWTExp = 253402300799

// jwtExpiry reads the exp claim of a JWT without verifying it: we are the token's client, not its
// audience, and only need to know when to refresh.
func jwtExpiry(raw string) (time.Time, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == "" {
		return time.Time{}, false
	}
	f, err := claims.Exp.Float64()
	// Beyond maxJWTExp the conversion to int64 seconds would be meaningless (or overflow into the
	// past); such a claim says nothing usable about when the token expires.
	if err != nil || math.IsNaN(f) || f <= 0 || f > maxJWTExp {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// classify turns whatever x/oauth2 or net/http returned into an *Error without copying any
// response body or request content into it. ctx is the exchange's own context: x/oauth2 reports
// a body read that ran into the deadline with %v, losing the cause, so ctx tells a hang after the
// headers from a malformed answer.
func (p *ClientCredentials) classify(ctx context.Context, err error, rec *responseRecorder, req Request) *Error {
	now := p.opts.Clock.Now()
	var refused *Error // hostGuard's verdict
	if errors.As(err, &refused) {
		return scrub(refused, req)
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return scrub(classifyHTTP(re.Response.StatusCode, re.Response.Header, re.Body, now, req.secrets()...), req)
	}
	status, header := rec.last()
	if status != 0 && ctx.Err() == nil {
		// x/oauth2 got an answer but could not read a token from it (malformed JSON, no
		// access_token). The body is gone; what we know is the status and content type.
		e := classifyHTTP(status, header, nil, now, req.secrets()...)
		if status >= 200 && status < 300 {
			e.Message = "the token response could not be read (malformed, or no access_token)"
			if ct := header.Get("Content-Type"); ct != "" && !isJSONContentType(ct, nil) {
				e.Message += nonJSONNote(ct)
			}
		}
		return scrub(e, req)
	}
	e := &Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "connection"}
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		(errors.As(err, &netErr) && netErr.Timeout()):
		e.Code = "timeout"
		e.Message = fmt.Sprintf("no answer from %s within %s", hostOf(req.TokenURL), p.opts.Timeout)
		e.Hint = "the token endpoint is slow or unreachable; check network policies and proxies"
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		e.Message = "the token request was cancelled"
	case errors.As(err, &unknownCA) || errors.As(err, &certErr):
		e.Code = "tls"
		e.Message = fmt.Sprintf("the certificate of %s is not trusted: %s", hostOf(req.TokenURL), innermost(err))
		e.Hint = "if a TLS-inspecting proxy is in the way, put its CA in a ConfigMap and set spec.caBundleRef"
	default:
		e.Message = fmt.Sprintf("cannot reach %s: %s", hostOf(req.TokenURL), innermost(err))
		e.Hint = "check DNS, network policies and egress proxies"
	}
	return scrub(e, req)
}

// scrub is the last line of defence: no text we return may contain the client secret (or the
// ServiceAccount token or client assertion), whatever a provider chose to echo back.
func scrub(e *Error, req Request) *Error {
	secrets := req.secrets()
	for _, s := range []*string{&e.Code, &e.Message, &e.Hint} {
		*s = redact(*s, secrets...)
	}
	return e
}

// innermost returns the deepest wrapped error's text, which for net/http errors drops the
// "Post \"https://…\":" prefix and keeps the cause (e.g. "connection refused").
func innermost(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return sanitize(err.Error(), 200)
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the token endpoint"
	}
	return u.Host
}

// transport returns the shared transport for a trust set: the configured roots plus bundle.
func (p *ClientCredentials) transport(bundle []byte) (*http.Transport, error) {
	key := sha256.Sum256(bundle)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.uses++
	if t, ok := p.transports[key]; ok {
		t.lastUse = p.uses
		return t.Transport, nil
	}
	var pool *x509.CertPool
	if p.opts.RootCAs != nil {
		pool = p.opts.RootCAs.Clone()
	} else if sys, err := x509.SystemCertPool(); err == nil {
		pool = sys
	} else {
		pool = x509.NewCertPool()
	}
	if len(bundle) > 0 && !pool.AppendCertsFromPEM(bundle) {
		return nil, &Error{Reason: v1alpha1.ReasonInvalidSpec, Message: "the CA bundle holds no PEM certificate",
			Hint: "spec.caBundleRef must point at PEM-encoded CA certificates"}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = p.opts.Timeout
	if len(p.transports) >= maxTransports {
		p.evictLocked()
	}
	p.transports[key] = &pooledTransport{Transport: t, lastUse: p.uses}
	return t, nil
}

// evictLocked closes and drops the least recently used transport. An exchange still running on
// it finishes: only idle connections are closed.
func (p *ClientCredentials) evictLocked() {
	var oldest [32]byte
	first := true
	for k, t := range p.transports {
		if first || t.lastUse < p.transports[oldest].lastUse {
			oldest, first = k, false
		}
	}
	p.transports[oldest].CloseIdleConnections()
	delete(p.transports, oldest)
}

// responseRecorder remembers the status and headers of the last answer, so a failure that
// x/oauth2 reports without them (malformed JSON, missing access_token) can still be classified.
type responseRecorder struct {
	next     http.RoundTripper
	kind     Kind // for the request-duration metric
	observer Observer

	mu     sync.Mutex
	status int
	header http.Header
}

func (r *responseRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := r.next.RoundTrip(req)
	r.observer.ObserveRequest(r.kind, resp, err, time.Since(start))
	if resp != nil {
		r.mu.Lock()
		r.status, r.header = resp.StatusCode, resp.Header.Clone()
		r.mu.Unlock()
	}
	return resp, err
}

func (r *responseRecorder) last() (int, http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.header == nil {
		return r.status, http.Header{}
	}
	return r.status, r.header
}
