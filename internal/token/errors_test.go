package token

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// requireError asserts that err is an *Error whose text is safe for a condition message: one
// line each for Code, Message and Hint, valid UTF-8, no secret, no Entra trace noise and no
// raw JSON. It returns the *Error.
func requireError(t *testing.T, err error, secrets ...string) *Error {
	t.Helper()
	if err == nil {
		t.Fatal("got no error, want one")
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %q is not a *token.Error", err, err)
	}
	if e.Reason == "" {
		t.Errorf("error %q has no Reason", err)
	}
	if e.Message == "" {
		t.Errorf("error %q has no Message", err)
	}
	for field, s := range map[string]string{"Code": e.Code, "Message": e.Message, "Hint": e.Hint, "Error()": err.Error()} {
		if strings.ContainsAny(s, "\r\n\u0085\u2028\u2029") {
			t.Errorf("%s is not one line: %q", field, s)
		}
		if !utf8.ValidString(s) {
			t.Errorf("%s is not valid UTF-8: %q", field, s)
		}
	}
	msg := err.Error()
	for _, secret := range secrets {
		if secret != "" && strings.Contains(msg, secret) {
			t.Errorf("Error() contains a secret: %q", msg)
		}
	}
	for _, noise := range []string{"Trace ID", "Correlation ID", "Timestamp:", "{", "}", `":"`} {
		if strings.Contains(msg, noise) {
			t.Errorf("Error() contains %q: %q", noise, msg)
		}
	}
	if want := e.Reason == v1alpha1.ReasonRefreshFailing; e.Transient != want {
		t.Errorf("Transient = %v with Reason %q, want %v", e.Transient, e.Reason, want)
	}
	return e
}

// Bodies as the real providers send them (Entra's description ends in CRLF-separated trace noise).
const (
	entraInvalidSecretBody  = `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '5f1c0f6e-8a3b-4c1d-9e2f-0a1b2c3d4e5f'.\r\nTrace ID: 0b7c5d2e-1f3a-4b6c-8d9e-0f1a2b3c4d00\r\nCorrelation ID: 7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d\r\nTimestamp: 2026-11-28 18:00:00Z","error_codes":[7000215],"timestamp":"2026-11-28 18:00:00Z","trace_id":"0b7c5d2e-1f3a-4b6c-8d9e-0f1a2b3c4d00","correlation_id":"7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d","error_uri":"https://login.microsoftonline.com/error?code=7000215"}`
	entraTenantNotFoundBody = `{"error":"invalid_request","error_description":"AADSTS90002: Tenant 'nope' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2026-11-28 18:00:00Z","error_codes":[90002]}`
	entraServerErrorBody    = `{"error":"server_error","error_description":"AADSTS50000: There was an error issuing a token or an issue with our sign-in service.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2026-11-28 18:00:00Z","error_codes":[50000]}`
	databricksInvalidClient = `{"error":"invalid_client","error_description":"Client authentication failed","error_id":"3f2b9c4e-5d6a-4b7c-8d9e-0f1a2b3c4d5e"}`
	databricksIPACL         = `{"error_code":"403","message":"Source IP address: 203.0.113.7 is blocked by Databricks IP ACL for workspace: 1234567890123456"}`
	htmlPage                = "<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head><body><h1>503</h1></body></html>\n"
)

func TestClassifyHTTP(t *testing.T) {
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	jsonCT := "application/json; charset=utf-8"
	tests := map[string]struct {
		status      int
		contentType string
		retryAfter  string
		body        string

		wantReason     string
		wantCode       string
		wantRetryAfter time.Duration
		wantIn         []string // substrings of Error()
		wantNotIn      []string
	}{
		"entra wrong secret": {
			status: 401, contentType: jsonCT, body: entraInvalidSecretBody,
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "AADSTS7000215",
			wantIn:    []string{"Invalid client secret provided.", "Value"},
			wantNotIn: []string{"Ensure the secret", "0b7c5d2e", "error_uri"},
		},
		"entra tenant not found answers 400": {
			status: 400, contentType: jsonCT, body: entraTenantNotFoundBody,
			wantReason: v1alpha1.ReasonNotFound, wantCode: "AADSTS90002",
			wantIn: []string{"Tenant 'nope' not found.", "tenantID"},
		},
		"entra unknown AADSTS code keeps the OAuth error": {
			status: 400, contentType: jsonCT,
			body:       `{"error":"invalid_request","error_description":"AADSTS9002313: Invalid request. Request is malformed or invalid.\r\nTrace ID: 1","error_codes":[9002313]}`,
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "invalid_request AADSTS9002313",
			wantIn: []string{"Invalid request."},
		},
		"entra known code wins over a transient OAuth error": {
			status: 400, contentType: jsonCT,
			body:       `{"error":"temporarily_unavailable","error_description":"AADSTS7000222: expired.","error_codes":[7000222]}`,
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "AADSTS7000222",
		},
		"entra server error is transient": {
			status: 500, contentType: jsonCT, body: entraServerErrorBody,
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 500 server_error",
		},
		"databricks invalid_client quotes error_id": {
			status: 401, contentType: "application/json", body: databricksInvalidClient,
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "invalid_client",
			wantIn: []string{"Client authentication failed (error_id 3f2b9c4e-5d6a-4b7c-8d9e-0f1a2b3c4d5e)"},
		},
		"databricks IP access list": {
			status: 403, contentType: "application/json", body: databricksIPACL,
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "HTTP 403",
			wantIn: []string{"IP access list"}, wantNotIn: []string{"203.0.113.7", "Source IP"},
		},
		"oauth unauthorized_client": {
			status: 400, contentType: jsonCT, body: `{"error":"unauthorized_client"}`,
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "unauthorized_client",
			wantIn: []string{"the identity provider refused the request"},
		},
		"oauth invalid_scope": {
			status: 400, contentType: jsonCT, body: `{"error":"invalid_scope","error_description":"Bad scope. More text."}`,
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "invalid_scope",
			wantIn: []string{"Bad scope."}, wantNotIn: []string{"More text"},
		},
		"oauth invalid_resource": {
			status: 400, contentType: jsonCT, body: `{"error":"invalid_resource"}`,
			wantReason: v1alpha1.ReasonNotFound, wantCode: "invalid_resource",
		},
		"oauth temporarily_unavailable on 400 is transient": {
			status: 400, contentType: jsonCT, body: `{"error":"temporarily_unavailable"}`,
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "temporarily_unavailable",
		},
		"unknown oauth error is permanent": {
			status: 400, contentType: jsonCT, body: `{"error":"consent_required"}`,
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "consent_required",
		},
		"error in a 200 answer": {
			status: 200, contentType: jsonCT, body: `{"error":"invalid_client","error_description":"Nope."}`,
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "invalid_client",
		},
		"JSON labelled text/plain": {
			status: 401, contentType: "text/plain", body: ` {"error":"invalid_client"}`,
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "invalid_client",
		},
		"JSON without content type": {
			status: 401, body: `{"error":"invalid_client"}`,
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "invalid_client",
		},
		"problem+json": {
			status: 400, contentType: "application/problem+json", body: `{"error":"invalid_scope"}`,
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "invalid_scope",
		},
		"JSON error labelled text/html is not trusted": {
			status: 400, contentType: "text/html", body: `{"error":"invalid_client"}`,
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "HTTP 400",
			wantIn: []string{"non-JSON answer: text/html"},
		},
		"429 with Retry-After seconds": {
			status: 429, contentType: jsonCT, retryAfter: "7", body: `{"error":"temporarily_unavailable"}`,
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 429 temporarily_unavailable", wantRetryAfter: 7 * time.Second,
			wantIn: []string{"Retry-After 7s"},
		},
		"503 with Retry-After HTTP date": {
			status: 503, contentType: "text/html", retryAfter: "Sat, 28 Nov 2026 18:01:30 GMT", body: htmlPage,
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 503", wantRetryAfter: 90 * time.Second,
			wantNotIn: []string{"Service Unavailable", "html"},
		},
		"408 is transient": {
			status: 408, wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 408",
		},
		"5xx with a multi-line, long error code": {
			status: 502, contentType: jsonCT, body: `{"error":"bad\r\ngateway` + strings.Repeat("x", 500) + `"}`,
			wantReason: v1alpha1.ReasonRefreshFailing,
		},
		"404 HTML": {
			status: 404, contentType: "text/html; charset=utf-8", body: htmlPage,
			wantReason: v1alpha1.ReasonNotFound, wantCode: "HTTP 404",
			wantIn: []string{"non-JSON answer: text/html"},
		},
		"404 empty": {
			status: 404, wantReason: v1alpha1.ReasonNotFound, wantCode: "HTTP 404",
			wantNotIn: []string{"non-JSON"},
		},
		"401 HTML": {
			status: 401, contentType: "text/html", body: "<html>login</html>",
			wantReason: v1alpha1.ReasonInvalidClient, wantCode: "HTTP 401",
		},
		"403 HTML": {
			status: 403, contentType: "text/html", body: "<html>Forbidden</html>",
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "HTTP 403",
			wantIn: []string{"non-JSON answer: text/html", "IP access list"},
		},
		"other 4xx": {
			status: 405, contentType: jsonCT, body: `{}`,
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "HTTP 405",
		},
		"redirect": {
			status: 307, wantReason: v1alpha1.ReasonInvalidSpec, wantCode: "HTTP 307",
			wantIn: []string{"redirect"},
		},
		"200 HTML": {
			status: 200, contentType: "text/html", body: "<html>captive portal</html>",
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 200",
			wantIn: []string{"non-JSON answer: text/html"}, wantNotIn: []string{"captive"},
		},
		"200 truncated JSON": {
			status: 200, contentType: "application/json", body: `{"access_token":`,
			wantReason: v1alpha1.ReasonRefreshFailing, wantCode: "HTTP 200",
		},
		"non-JSON with a huge content type": {
			status: 400, contentType: "text/" + strings.Repeat("x", 5000), body: "oops",
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "HTTP 400",
		},
		"non-JSON without content type": {
			status: 400, body: "oops",
			wantReason: v1alpha1.ReasonUnauthorized, wantCode: "HTTP 400",
			wantIn: []string{"non-JSON answer: unknown content type"},
		},
		"description with C1 and Unicode line breaks": {
			status: 400, contentType: jsonCT, body: `{"error":"invalid_client","error_description":"a\u0085b\u2028c\u2029d\u001be"}`,
			wantReason: v1alpha1.ReasonInvalidClient, wantIn: []string{"a b c d e"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			header := http.Header{}
			if tc.contentType != "" {
				header.Set("Content-Type", tc.contentType)
			}
			if tc.retryAfter != "" {
				header.Set("Retry-After", tc.retryAfter)
			}
			e := classifyHTTP(tc.status, header, []byte(tc.body), now, "")
			requireError(t, e)
			if e.Reason != tc.wantReason {
				t.Errorf("Reason = %q, want %q (%s)", e.Reason, tc.wantReason, e)
			}
			if tc.wantCode != "" && e.Code != tc.wantCode {
				t.Errorf("Code = %q, want %q", e.Code, tc.wantCode)
			}
			if e.StatusCode != tc.status {
				t.Errorf("StatusCode = %d, want %d", e.StatusCode, tc.status)
			}
			if e.RetryAfter != tc.wantRetryAfter {
				t.Errorf("RetryAfter = %s, want %s", e.RetryAfter, tc.wantRetryAfter)
			}
			if len(e.Error()) > 600 {
				t.Errorf("Error() is %d bytes long, want it bounded: %q", len(e.Error()), e)
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
		})
	}
}

func TestClassifyHTTPRedactsBeforeShortening(t *testing.T) {
	const secret = "Zq8~Kv.pW3-EchoedSecretValue"
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	json := http.Header{"Content-Type": {"application/json"}}
	tests := map[string]struct {
		status int
		body   string
	}{
		"in the description":                   {400, `{"error":"invalid_client","error_description":"bad secret ` + secret + `"}`},
		"at the description's length limit":    {400, `{"error":"invalid_client","error_description":"` + strings.Repeat("x", 235) + secret + `"}`},
		"JSON-escaped in the description":      {400, `{"error":"invalid_client","error_description":"bad \u005a` + secret[1:] + `"}`},
		"in the error code":                    {400, `{"error":"` + secret + `"}`},
		"at the error code's length limit":     {400, `{"error":"` + strings.Repeat("e", 60) + secret + `"}`},
		"in a 5xx error code":                  {503, `{"error":"server_error ` + secret + `"}`},
		"in the error_id":                      {401, `{"error":"invalid_client","error_id":"` + secret + `"}`},
		"at the error_id's length limit":       {401, `{"error":"invalid_client","error_id":"` + strings.Repeat("i", 60) + secret + `"}`},
		"before an Entra trace in description": {400, `{"error":"invalid_client","error_description":"AADSTS7000215: ` + secret + `\r\nTrace ID: 1","error_codes":[7000215]}`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := classifyHTTP(tc.status, json, []byte(tc.body), now, secret)
			requireError(t, e, secret, secret[:6])
		})
	}
}

func TestSanitize(t *testing.T) {
	tests := map[string]struct {
		in    string
		limit int
		want  string
	}{
		"plain":                        {"hello", 10, "hello"},
		"CRLF":                         {"a\r\nb", 10, "a  b"},
		"tab and DEL":                  {"a\tb\x7fc", 10, "a b c"},
		"C1 NEL":                       {"a\u0085b", 10, "a b"},
		"line and paragraph separator": {"a\u2028b\u2029c", 20, "a b c"},
		"invalid UTF-8":                {"a\xffb", 10, "a\ufffdb"},
		"cut at limit":                 {"abcdef", 3, "abc…"},
		"exactly at limit":             {"abc", 3, "abc"},
		"cut never splits a rune":      {"ab€cd", 3, "ab…"},
		"cut after a whole rune":       {"ab€cd", 5, "ab€…"},
		"empty":                        {"", 3, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := sanitize(tc.in, tc.limit)
			if got != tc.want {
				t.Errorf("sanitize(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("sanitize(%q, %d) = %q is not valid UTF-8", tc.in, tc.limit, got)
			}
		})
	}
}

func TestFirstSentence(t *testing.T) {
	tests := map[string]struct{ in, want string }{
		"entra":                   {"AADSTS7000215: Invalid client secret provided. Ensure the secret.\r\nTrace ID: x\r\nCorrelation ID: y", "Invalid client secret provided."},
		"entra, one sentence":     {"AADSTS90002: Tenant 'x' not found.\r\nTrace ID: 1", "Tenant 'x' not found."},
		"no period":               {"Client authentication failed", "Client authentication failed"},
		"period without space":    {"v1.2 is bad", "v1.2 is bad"},
		"surrounding whitespace":  {"  Bad scope. Rest  ", "Bad scope."},
		"AADSTS not a prefix":     {"See AADSTS7000215: x. y", "See AADSTS7000215: x."},
		"long AADSTS-like prefix": {"AADSTSxxxxxxxxxxxxxxxx: rest", "AADSTSxxxxxxxxxxxxxxxx: rest"},
		"empty":                   {"", ""},
		"only trace":              {"Trace ID: 1", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := firstSentence(tc.in); got != tc.want {
				t.Errorf("firstSentence(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestAsError(t *testing.T) {
	classified := &Error{Reason: v1alpha1.ReasonInvalidClient, Code: "invalid_client", Message: "m"}
	tests := map[string]struct {
		err  error
		want *Error
	}{
		"an *Error is returned as is":   {classified, classified},
		"a wrapped *Error is unwrapped": {fmt.Errorf("exchange: %w", classified), classified},
		"anything else is transient": {errors.New("dial tcp: secret-in-text"),
			&Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Message: "token request failed"}},
		"context errors are transient": {context.DeadlineExceeded,
			&Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Message: "token request failed"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := AsError(tc.err)
			if *got != *tc.want {
				t.Errorf("AsError(%v) = %+v, want %+v", tc.err, *got, *tc.want)
			}
			if strings.Contains(got.Error(), "secret-in-text") {
				t.Errorf("AsError copied the unclassified error's text: %q", got)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	tests := map[string]struct {
		err  Error
		want string
	}{
		"code, message and hint": {Error{Code: "AADSTS7000215", Message: "Invalid client secret provided.", Hint: "use the Value"},
			"AADSTS7000215: Invalid client secret provided. (hint: use the Value)"},
		"message only":     {Error{Message: "no identity block is set"}, "no identity block is set"},
		"message and hint": {Error{Message: "m", Hint: "h"}, "m (hint: h)"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}
