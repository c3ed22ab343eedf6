package secret

import (
	"errors"
	"strings"
	"testing"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// FuzzRender renders arbitrary templates with arbitrary hosts and tokens. Invariants: Render never
// panics or hangs; an error is a *TemplateError (or the plain empty-token error) whose message and
// wrapped error never contain the token; whether it fails, and with which message, does not depend
// on the token's characters (the template oracle: a token of the same length with other characters
// renders alike); a refusal by the token rule is also ValidateTemplates'; a success holds exactly
// the one templated key, no more than MaxDataBytes, and a data hash the controller can recompute.
// Seeds are checked in under testdata/fuzz/FuzzRender.
func FuzzRender(f *testing.F) {
	f.Add(azureHost, testToken, "token: {{ .Token }}\nhost: {{ .Hostname }}\n")
	f.Add(azureHost, testToken, `{{ if eq (slice .Token 0 1) "e" }}{{ index .Token 99 }}{{ end }}`)
	f.Add(azureHost, testToken, `{{ with .Host }}{{ . }}{{ if lt $.Token "f" }}{{ $.Missing }}{{ end }}{{ end }}`)
	f.Fuzz(func(t *testing.T, host, token, tmpl string) {
		in := Input{
			Host:           host,
			Token:          token,
			IssuedAt:       issuedAt,
			ExpiresAt:      expiresAt,
			CredentialName: "c",
			Target:         v1alpha1.TargetSecret{Data: map[string]string{"k": tmpl}},
		}
		got, err := Render(in)
		if token == "" {
			if err == nil || err.Error() != errEmptyToken {
				t.Fatalf("Render() with an empty token = %v, want %q", err, errEmptyToken)
			}
			return
		}
		other := in
		other.Token = sameLengthOther(token)
		_, otherErr := Render(other)
		switch {
		case (err == nil) != (otherErr == nil):
			// The messages are token-free (checked below for err); the tokens are not printed.
			t.Fatalf("Render() fails with one token and not with another of the same length: %v / %v", err, otherErr)
		case err != nil && !redacted(err.Error()) && !redacted(otherErr.Error()) && err.Error() != otherErr.Error():
			t.Fatalf("Render() fails differently with another token of the same length: %q / %q", err, otherErr)
		}
		if err != nil {
			var te *TemplateError
			if !errors.As(err, &te) || te.Key != "k" {
				t.Fatalf("Render() error = %v (%T), want *TemplateError for key k", err, err)
			}
			// The one token the redaction cannot keep out is a substring of the fallback text.
			if !strings.Contains(withheldMessage, token) &&
				(strings.Contains(err.Error(), token) || strings.Contains(te.Err.Error(), token)) {
				t.Fatalf("TemplateError contains the token %q: %q / %q", token, err, te.Err)
			}
			// The token rule is decided on the template text, so validation refuses it too.
			for _, rule := range []error{errTokenUse, errDataUse} {
				if errors.Is(err, rule) && !errors.Is(ValidateTemplates(in.Target, host), rule) {
					t.Fatalf("Render() = %q, but ValidateTemplates() does not refuse it alike", err)
				}
			}
			return
		}
		if len(got.Data) != 1 {
			t.Fatalf("Render() data keys = %v, want exactly [k]", got.Data)
		}
		if _, ok := got.Data["k"]; !ok {
			t.Fatalf("Render() data = %v, want key k", got.Data)
		}
		if len(got.Data["k"]) > MaxDataBytes {
			t.Fatalf("Render() rendered %d bytes, above MaxDataBytes", len(got.Data["k"]))
		}
		if DataHash(host, in.Target, got.Data) != got.Annotations[v1alpha1.AnnotationDataHash] {
			t.Fatalf("data hash annotation does not match a recomputation")
		}
		// ValidateTemplates may disagree with Render (a template can depend on the expiry, which it
		// fixes, or on the token's length through MaxDataBytes), but it must not panic and must
		// report a *TemplateError.
		if err := ValidateTemplates(in.Target, host); err != nil {
			var te *TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("ValidateTemplates() = %v (%T), want nil or *TemplateError", err, err)
			}
		}
	})
}

// sameLengthOther returns a string as long as token that differs from it in every byte.
func sameLengthOther(token string) string {
	b := []byte(token)
	for i := range b {
		b[i] ^= 1
	}
	return string(b)
}

// redacted reports whether a token was taken out of msg, which makes messages for different
// tokens differ legitimately (a template that quotes one of them literally).
func redacted(msg string) bool {
	return strings.Contains(msg, redactedMarker) || strings.Contains(msg, withheldMessage)
}
