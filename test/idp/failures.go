package idp

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// Failure is an injected answer for token requests. It models what sits between the client and
// a healthy identity provider in real life — overloaded front doors, throttling, gateways that
// answer in HTML, endpoints that hang, proxies that mangle bodies — so that the operator's
// transient-error handling (RefreshFailing, backoff, Retry-After, timeouts) can be tested.
type Failure struct {
	// Status is the HTTP status. 0 means "no injected answer": only Delay applies, then the
	// request is answered normally (useful for slow-but-working endpoints). 200 with an empty
	// Body likewise answers normally; 200 with a Body (e.g. `{"access_token":`) tests parsing.
	Status int
	// RetryAfter is the Retry-After header value (seconds or an HTTP date) if non-empty.
	RetryAfter string
	// Body is the raw body. If empty, a default body for the status is used, shaped like what
	// the requested path would really send: 404/502/503/504 an HTML page (text/html, as from a
	// gateway); on the Entra path an Entra error (400 invalid_request AADSTS9002313, 401
	// invalid_client AADSTS7000215, 403 access_denied AADSTS53003, 429 temporarily_unavailable
	// AADSTS90055, 5xx server_error AADSTS50000); on the Databricks path an OAuth error with
	// error_id (401 invalid_client, 429 temporarily_unavailable, 5xx server_error, other 4xx
	// invalid_request) except 403, which is the workspace IP-access-list answer
	// {"error_code":"403","message":"Source IP address: … is blocked by Databricks IP ACL …"};
	// statuses below 400 have an empty body.
	Body string
	// ContentType overrides the Content-Type; default application/json for a given Body, and
	// the default body's own type otherwise.
	ContentType string
	// Delay is how long to hang (real time) before answering. The wait ends early, without an
	// answer, when the client cancels the request or the server closes, so a client that times
	// out frees the handler (the request is then recorded with Status 0).
	Delay time.Duration
}

type failureRule struct {
	f         Failure
	remaining int // < 0: until ClearFailures
}

// FailNext makes the next n token requests (to either token endpoint, whatever the tenant or
// credentials) get f instead of the normal answer; n <= 0 means every request until
// ClearFailures. Calls queue up: FailNext(1, a); FailNext(2, b) answers a, b, b, then normally.
// An unlimited rule stays at the head of the queue, so rules queued after it never apply.
func (s *Server) FailNext(n int, f Failure) {
	if n <= 0 {
		n = -1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, &failureRule{f: f, remaining: n})
}

// ClearFailures drops all queued failures.
func (s *Server) ClearFailures() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = nil
}

// takeFailure consumes one use of the head rule, at the moment the request arrives.
func (s *Server) takeFailure() (Failure, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) == 0 {
		return Failure{}, false
	}
	rule := s.failures[0]
	if rule.remaining > 0 {
		rule.remaining--
		if rule.remaining == 0 {
			s.failures = s.failures[1:]
		}
	}
	return rule.f, true
}

func (f Failure) injectsAnswer() bool {
	return f.Status != 0 && (f.Status != http.StatusOK || f.Body != "")
}

func (s *Server) writeFailure(w http.ResponseWriter, r *http.Request, endpoint string, c credentials, f Failure) {
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	if f.Body != "" {
		ct := f.ContentType
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(f.Body))
		return
	}
	if f.ContentType != "" {
		w = &contentTypeOverride{ResponseWriter: w, contentType: f.ContentType}
	}
	s.defaultFailure(w, r, endpoint, c, f.Status)
}

// defaultFailure writes the body a real deployment would most likely send with this status:
// gateways and load balancers answer 404/502/503/504 with HTML; the providers themselves answer
// other errors in their own JSON shape.
func (s *Server) defaultFailure(w http.ResponseWriter, r *http.Request, endpoint string, c credentials, status int) {
	switch {
	case status < 400:
		w.WriteHeader(status)
		return
	case status == http.StatusNotFound, status == http.StatusBadGateway,
		status == http.StatusServiceUnavailable, status == http.StatusGatewayTimeout:
		writeHTML(w, status)
		return
	}
	if endpoint == EndpointEntraToken {
		code, aadsts, msg := "invalid_request", AADSTSMalformedRequest, "Invalid request. Request is malformed or invalid."
		switch {
		case status == http.StatusUnauthorized:
			code, aadsts = "invalid_client", AADSTSInvalidSecret
			msg = fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", c.clientID)
		case status == http.StatusForbidden:
			code, aadsts, msg = "access_denied", AADSTSAccessBlocked, "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance."
		case status == http.StatusTooManyRequests:
			code, aadsts, msg = "temporarily_unavailable", AADSTSThrottled, "TenantThrottlingError - There are too many incoming requests. This exception is thrown for blocked tenants."
		case status >= 500:
			code, aadsts, msg = "server_error", AADSTSServerError, "There was an error issuing a token or an issue with our sign-in service."
		}
		s.writeEntraError(w, r, status, code, aadsts, msg)
		return
	}
	switch {
	case status == http.StatusUnauthorized:
		writeDatabricksError(w, status, "invalid_client", "Client authentication failed")
	case status == http.StatusForbidden:
		// What a workspace's IP access list answers (Databricks REST error shape, not OAuth).
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		writeJSON(w, "application/json", status, struct {
			ErrorCode string `json:"error_code"`
			Message   string `json:"message"`
		}{"403", fmt.Sprintf("Source IP address: %s is blocked by Databricks IP ACL for workspace: 1234567890123456", host)})
	case status == http.StatusTooManyRequests:
		writeDatabricksError(w, status, "temporarily_unavailable", "Too many requests. Please try again later.")
	case status >= 500:
		writeDatabricksError(w, status, "server_error", "An internal error occurred. Please try again later.")
	default:
		writeDatabricksError(w, status, "invalid_request", "The request is invalid")
	}
}

// writeHTML writes a minimal HTML error page, as a web server, gateway or load balancer in front
// of an identity provider would (clients must cope with non-JSON error bodies).
func writeHTML(w http.ResponseWriter, status int) {
	text := http.StatusText(status)
	if text == "" {
		text = "Error"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<!DOCTYPE html>\n<html>\n<head><title>%d %s</title></head>\n<body>\n<h1>%d %s</h1>\n<hr><p>test IdP</p>\n</body>\n</html>\n",
		status, text, status, text)
}

// contentTypeOverride replaces the Content-Type a default body writer sets.
type contentTypeOverride struct {
	http.ResponseWriter
	contentType string
}

func (w *contentTypeOverride) WriteHeader(code int) {
	w.Header().Set("Content-Type", w.contentType)
	w.ResponseWriter.WriteHeader(code)
}
