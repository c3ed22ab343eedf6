package token

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// fuzzMarker stands for anything a provider sends that must not reach a condition message: raw
// bodies, trace IDs, messages outside error/error_description/error_id.
const fuzzMarker = "SECRETMARKER"

// fuzzSecret turns fuzz input into a client secret from the alphabet real secrets use (Entra:
// letters, digits, ~ . _ -; others add + / =). The fixed prefix keeps it from matching the
// package's own fixed texts, and having no space, bracket or control character means that
// redaction and shortening cannot assemble it out of other text.
func fuzzSecret(tail string) string {
	var b strings.Builder
	b.WriteString("S3CR3T-")
	for _, r := range tail {
		if r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("~._-+/=", r)) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

var validReasons = map[string]bool{
	v1alpha1.ReasonInvalidClient:  true,
	v1alpha1.ReasonNotFound:       true,
	v1alpha1.ReasonUnauthorized:   true,
	v1alpha1.ReasonInvalidSpec:    true,
	v1alpha1.ReasonRefreshFailing: true,
}

// checkClassified asserts the invariants of classifyHTTP for one answer.
func checkClassified(t *testing.T, status int, header http.Header, body []byte, secret string) {
	t.Helper()
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	e := classifyHTTP(status, header, body, now, secret)
	if e == nil {
		t.Fatal("classifyHTTP returned nil")
	}
	if !validReasons[e.Reason] {
		t.Fatalf("Reason %q is not a failure reason", e.Reason)
	}
	if e.Transient != (e.Reason == v1alpha1.ReasonRefreshFailing) {
		t.Fatalf("Transient %v with Reason %q", e.Transient, e.Reason)
	}
	if e.Code == "" || e.Message == "" || e.Hint == "" {
		t.Fatalf("incomplete error: %+v", *e)
	}
	if e.StatusCode != status {
		t.Fatalf("StatusCode %d, want %d", e.StatusCode, status)
	}
	if e.RetryAfter < 0 {
		t.Fatalf("RetryAfter %s < 0", e.RetryAfter)
	}
	msg := e.Error()
	if strings.ContainsAny(msg, "\r\n\u0085\u2028\u2029") || !utf8.ValidString(msg) {
		t.Fatalf("Error() is not one line of UTF-8: %q", msg)
	}
	if len(msg) > 1024 {
		t.Fatalf("Error() is %d bytes, want it bounded", len(msg))
	}
	if strings.Contains(msg, secret) {
		t.Fatalf("Error() contains the client secret %q: %q", secret, msg)
	}
	// The marker may come through only in the fields that are quoted on purpose.
	var pe providerError
	_ = json.Unmarshal(body, &pe)
	quoted := pe.Error + "\x00" + pe.Description + "\x00" + pe.ErrorID
	if strings.Contains(msg, fuzzMarker) && !strings.Contains(quoted, fuzzMarker) {
		t.Fatalf("Error() echoes body content outside error/error_description/error_id: %q\nbody: %q", msg, body)
	}
}

func FuzzClassifyHTTP(f *testing.F) {
	f.Add(401, "application/json; charset=utf-8", "", []byte(entraInvalidSecretBody), "invalid_client", "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x", "", 7000215, "abc")
	f.Add(503, "text/html", "7", []byte(htmlPage), "", "", "", 0, "")
	f.Fuzz(func(t *testing.T, status int, contentType, retryAfter string, body []byte, errCode, errDesc, errID string, aadsts int, secretTail string) {
		secret := fuzzSecret(secretTail)
		header := http.Header{"Content-Type": {contentType}, "Retry-After": {retryAfter}}

		// The answer as the fuzzer wrote it.
		checkClassified(t, status, header, body, secret)

		// A provider error with the fuzzed fields, the marker in fields that are never quoted,
		// and the secret echoed in every field: it must come out redacted.
		for _, echo := range []string{"", secret} {
			doc := map[string]any{
				"error":             errCode + echo,
				"error_description": errDesc + echo,
				"error_id":          errID + echo,
				"error_codes":       []int{aadsts},
				"trace_id":          fuzzMarker,
				"correlation_id":    fuzzMarker + string(body),
				"message":           fuzzMarker + " " + echo,
				"error_uri":         "https://login.microsoftonline.com/error?code=" + fuzzMarker,
			}
			js, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			checkClassified(t, status, http.Header{"Content-Type": {"application/json"}, "Retry-After": {retryAfter}}, js, secret)
		}

		// A web page carrying the marker and the secret, under the fuzzed content type.
		page := []byte("<html><body><h1>" + fuzzMarker + "</h1>" + secret + string(body) + "</body></html>")
		checkClassified(t, status, header, page, secret)
	})
}

func FuzzJWTExpiry(f *testing.F) {
	enc := base64.RawURLEncoding.EncodeToString
	f.Add(`{"exp":1795888800}`)
	f.Add(`{"exp":1.5e9}`)
	f.Add(`{"exp":"1795888800"}`)
	f.Add(`{"exp":1e300}`)
	f.Add(`{"exp":-1}`)
	f.Add(`{"exp":null}`)
	f.Add(`{"exp":[1]}`)
	f.Add(`not json`)
	f.Add(enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(`{"exp":1795888800}`)) + ".")
	f.Fuzz(func(t *testing.T, s string) {
		issuedAt := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
		// s as a whole token, and s as the claims of a token.
		for _, raw := range []string{s, enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(s)) + ".sig"} {
			exp, ok := jwtExpiry(raw)
			if ok && (exp.Unix() <= 0 || exp.Unix() > maxJWTExp) {
				t.Fatalf("jwtExpiry(%q) = %s, ok: want a time between 1970 and 9999", raw, exp)
			}
			got, err := expiry((&oauth2.Token{AccessToken: raw}).WithExtra(map[string]any{}), issuedAt)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || !e.Transient {
					t.Fatalf("expiry error %v is not a transient *Error", err)
				}
				if len(raw) >= 20 && !strings.Contains(raw, " ") && strings.Contains(e.Error(), raw) {
					t.Fatalf("expiry error quotes the token: %q", e)
				}
				continue
			}
			if !ok || !got.Equal(exp.Truncate(time.Second)) || !got.After(issuedAt) {
				t.Fatalf("expiry(%q) = %s, want the JWT's exp %s (ok %v) after %s", raw, got, exp, ok, issuedAt)
			}
		}
	})
}
