package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	redactpkg "github.com/dbtoken/databricks-token-operator/internal/redact"
	"github.com/dbtoken/databricks-token-operator/internal/refresh"
)

// Error is a failed exchange, classified. Its text is safe to put in status, events and logs: it
// holds the provider's error code and the first sentence of its description, never the raw body,
// a token or a client secret.
type Error struct {
	// Reason is the Ready reason for a permanent failure (InvalidClient, NotFound, Unauthorized,
	// HostNotAllowed, InvalidSpec). Transient failures carry ReasonRefreshFailing; the controller
	// turns that into TokenExpired once the token in the Secret has expired.
	Reason string
	// Transient failures (5xx, 429, timeouts, connection errors, unparseable answers) are retried
	// with backoff; permanent ones slowly, because the fix is outside the cluster.
	Transient bool
	// Code is the provider's code, e.g. "AADSTS7000215", "invalid_client" or "HTTP 503".
	Code string
	// Message is what happened, in one line.
	Message string
	// Hint is what to do about it, in one line.
	Hint string
	// StatusCode is the HTTP status of the answer, 0 when there was none.
	StatusCode int
	// RetryAfter is the provider's Retry-After, 0 when absent.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Code != "" {
		b.WriteString(e.Code)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// AsError returns err as an *Error, wrapping an unclassified error as transient.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Message: "token request failed"}
}

// entraHint is the one-line advice for the Entra ID (AADSTS) codes users hit most. Codes are hints,
// not contracts: Microsoft changes texts, so unknown codes fall back to the OAuth error.
var entraHint = map[int]struct{ reason, hint string }{
	7000215: {v1alpha1.ReasonInvalidClient, "wrong client secret: put the secret's Value in the Secret, not its Secret ID"},
	7000222: {v1alpha1.ReasonInvalidClient, "the client secret has expired: create a new one in the app registration and update the client-credentials Secret"},
	700016:  {v1alpha1.ReasonInvalidClient, "the application (client) ID is not registered in this tenant: check client-id and spec.azure.tenantID"},
	7000216: {v1alpha1.ReasonInvalidClient, "no client secret was sent: check the client-credentials Secret's keys"},
	90002:   {v1alpha1.ReasonNotFound, "the tenant does not exist: check spec.azure.tenantID and, for sovereign clouds, spec.azure.authorityHost"},
	500011:  {v1alpha1.ReasonNotFound, "the resource is not in the tenant: check spec.scopes (Azure Databricks is 2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default)"},
	1002012: {v1alpha1.ReasonUnauthorized, "client-credentials scopes must end in /.default: check spec.scopes"},
	70011:   {v1alpha1.ReasonUnauthorized, "the scope is not valid: check spec.scopes"},
	// Secretless Entra identities: federated ServiceAccount tokens and certificate assertions.
	70021:  {v1alpha1.ReasonInvalidClient, "no federated identity credential on the app matches the ServiceAccount token: add one with the cluster's service-account issuer, subject system:serviceaccount:<namespace>:<serviceAccountName> and audience api://AzureADTokenExchange"},
	700211: {v1alpha1.ReasonInvalidClient, "no federated identity credential on the app has the token's issuer: it must be the cluster's service-account issuer, exactly (kubectl get --raw /.well-known/openid-configuration)"},
	700212: {v1alpha1.ReasonInvalidClient, "no federated identity credential on the app has the token's audience: it must be api://AzureADTokenExchange"},
	700213: {v1alpha1.ReasonInvalidClient, "no federated identity credential on the app has the token's subject: it must be system:serviceaccount:<namespace>:<serviceAccountName>, case-sensitive"},
	700024: {v1alpha1.ReasonInvalidClient, "the client assertion is outside its valid time range: check the clocks of the operator and the API server"},
	700027: {v1alpha1.ReasonInvalidClient, "the client assertion's signature does not verify: for clientCertificateRef, upload tls.crt to the app registration (Certificates & secrets); for workloadIdentity, check that the issuer's published keys are the cluster's"},
	50027:  {v1alpha1.ReasonInvalidClient, "the client assertion is not a valid JWT: check spec.azure.workloadIdentity or spec.azure.clientCertificateRef"},
}

// oauthHint maps RFC 6749 error codes (and Databricks', which follow them) to a reason and hint.
var oauthHint = map[string]struct{ reason, hint string }{
	"invalid_client":         {v1alpha1.ReasonInvalidClient, "the identity provider rejected the client ID or secret: check the client-credentials Secret, and that the service principal exists where the token is requested"},
	"unauthorized_client":    {v1alpha1.ReasonUnauthorized, "the client may not use the client-credentials grant here"},
	"invalid_scope":          {v1alpha1.ReasonUnauthorized, "the requested scope is not allowed for this client: check spec.scopes"},
	"invalid_request":        {v1alpha1.ReasonUnauthorized, "the identity provider refused the request: check the identity block matches the provider"},
	"invalid_grant":          {v1alpha1.ReasonUnauthorized, "the identity provider refused the grant"},
	"unsupported_grant_type": {v1alpha1.ReasonUnauthorized, "this endpoint does not support client credentials: check the identity block matches the provider"},
	"invalid_resource":       {v1alpha1.ReasonNotFound, "the resource is not in the tenant: check spec.scopes"},
	"access_denied":          {v1alpha1.ReasonUnauthorized, "the identity provider denied access"},
}

// providerError is the union of the error bodies we understand: RFC 6749 (error,
// error_description), Entra ID (error_codes, trace IDs in the description) and Databricks (error_id).
type providerError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	ErrorCodes  []int  `json:"error_codes"`
	ErrorID     string `json:"error_id"`
}

// classifyHTTP turns a non-success answer (or a 2xx one without a usable token) into an *Error.
// body is read only for its JSON error fields; it is never copied into the result. The provider's
// fields are redacted of secret before they are shortened, so that a truncation can never leave a
// prefix of the secret behind.
func classifyHTTP(status int, header http.Header, body []byte, now time.Time, secrets ...string) *Error {
	e := &Error{StatusCode: status, RetryAfter: refresh.ParseRetryAfter(header.Get("Retry-After"), now)}
	var pe providerError
	isJSON := json.Unmarshal(body, &pe) == nil && isJSONContentType(header.Get("Content-Type"), body)
	pe.Error, pe.Description, pe.ErrorID = redact(pe.Error, secrets...), redact(pe.Description, secrets...), redact(pe.ErrorID, secrets...)

	switch {
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout, status >= 500:
		e.Reason, e.Transient = v1alpha1.ReasonRefreshFailing, true
		e.Code = "HTTP " + strconv.Itoa(status)
		e.Message = "the identity provider is unavailable or throttling"
		if e.RetryAfter > 0 {
			e.Message += fmt.Sprintf(" (Retry-After %s)", e.RetryAfter)
		}
		e.Hint = "retrying with backoff; the current token stays in the Secret until it expires"
		if isJSON && pe.Error != "" {
			e.Code += " " + sanitize(pe.Error, 64)
		}
		return e
	case isJSON && pe.Error != "":
		return classifyProviderError(e, pe)
	case status >= 300 && status < 400:
		e.Reason, e.Code = v1alpha1.ReasonInvalidSpec, "HTTP "+strconv.Itoa(status)
		e.Message = "the token endpoint answered with a redirect, which is never followed with credentials"
		e.Hint = "use the final token endpoint URL in the spec"
	case status == http.StatusNotFound:
		e.Reason, e.Code = v1alpha1.ReasonNotFound, "HTTP 404"
		e.Message = "the token endpoint does not exist"
		e.Hint = "check spec.host, spec.azure.tenantID/authorityHost or spec.oauth2.tokenURL"
	case status == http.StatusUnauthorized:
		e.Reason, e.Code = v1alpha1.ReasonInvalidClient, "HTTP 401"
		e.Message = "the identity provider rejected the client credentials"
		e.Hint = "check the client ID and secret in the client-credentials Secret"
	case status == http.StatusForbidden:
		e.Reason, e.Code = v1alpha1.ReasonUnauthorized, "HTTP 403"
		e.Message = "the identity provider refused the request"
		e.Hint = "an IP access list, firewall or proxy may block the operator's address"
	case status >= 400:
		e.Reason, e.Code = v1alpha1.ReasonUnauthorized, "HTTP "+strconv.Itoa(status)
		e.Message = "the identity provider refused the request"
		e.Hint = "check the identity block matches the provider"
	default:
		// A 2xx answer that carries no token. A web page here means something other than the token
		// endpoint answered: a proxy, firewall, captive portal or IP access list.
		e.Reason, e.Transient = v1alpha1.ReasonRefreshFailing, true
		e.Code = "HTTP " + strconv.Itoa(status)
		e.Message = "the answer is not a token response"
		e.Hint = "check that spec.host or the token URL reaches the identity provider directly"
	}
	if !isJSON && len(body) > 0 {
		e.Message += nonJSONNote(header.Get("Content-Type"))
	}
	return e
}

// nonJSONNote is the message suffix for an answer that is not JSON: its media type (bounded) and
// the usual culprit.
func nonJSONNote(contentType string) string {
	ct, _, _ := mime.ParseMediaType(contentType)
	if ct == "" {
		ct = "unknown content type"
	}
	return fmt.Sprintf(" (non-JSON answer: %s; a proxy, firewall or IP access list may be in the way)", sanitize(ct, 64))
}

// redact replaces every secret, verbatim or encoded (form, base64), with "[redacted]".
func redact(s string, secrets ...string) string {
	return redactpkg.Values(s, secrets...)
}

func classifyProviderError(e *Error, pe providerError) *Error {
	e.Code = pe.Error
	e.Message = firstSentence(pe.Description)
	if e.Message == "" {
		e.Message = "the identity provider refused the request"
	}
	if pe.ErrorID != "" {
		e.Message += " (error_id " + sanitize(pe.ErrorID, 64) + ")"
	}
	if h, ok := oauthHint[pe.Error]; ok {
		e.Reason, e.Hint = h.reason, h.hint
	} else if pe.Error == "temporarily_unavailable" || pe.Error == "server_error" {
		e.Reason, e.Transient = v1alpha1.ReasonRefreshFailing, true
		e.Hint = "retrying with backoff"
	} else {
		e.Reason, e.Hint = v1alpha1.ReasonUnauthorized, "the identity provider refused the request"
	}
	for _, c := range pe.ErrorCodes {
		if h, ok := entraHint[c]; ok {
			// The AADSTS code is the more specific verdict, and every code we know is permanent.
			e.Code = fmt.Sprintf("AADSTS%d", c)
			e.Reason, e.Hint, e.Transient = h.reason, h.hint, false
			break
		}
	}
	if len(pe.ErrorCodes) > 0 && !strings.HasPrefix(e.Code, "AADSTS") {
		e.Code = fmt.Sprintf("%s AADSTS%d", pe.Error, pe.ErrorCodes[0])
	}
	e.Code = sanitize(e.Code, 64)
	return e
}

// firstSentence keeps the provider's description short and free of per-request noise: Entra
// appends "Trace ID: … Correlation ID: … Timestamp: …", and its AADSTS prefix repeats the code.
func firstSentence(desc string) string {
	desc = strings.TrimSpace(desc)
	if i := strings.Index(desc, "Trace ID"); i >= 0 {
		desc = desc[:i]
	}
	if rest, ok := strings.CutPrefix(desc, "AADSTS"); ok {
		if i := strings.Index(rest, ": "); i >= 0 && i < 12 {
			desc = rest[i+2:]
		}
	}
	if i := strings.Index(desc, ". "); i >= 0 {
		desc = desc[:i+1]
	}
	return sanitize(strings.TrimSpace(desc), 240)
}

// sanitize bounds s to limit bytes and keeps it on one line of valid UTF-8: control characters
// (C0, DEL, C1 such as NEL) and the Unicode line and paragraph separators become spaces, invalid
// bytes become U+FFFD, and a cut never splits a character.
func sanitize(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func isJSONContentType(contentType string, body []byte) bool {
	ct, _, _ := mime.ParseMediaType(contentType)
	if ct == "application/json" || strings.HasSuffix(ct, "+json") {
		return true
	}
	// Some providers label JSON as text/plain or send no type at all.
	b := strings.TrimSpace(string(body))
	return (ct == "" || ct == "text/plain") && strings.HasPrefix(b, "{")
}
