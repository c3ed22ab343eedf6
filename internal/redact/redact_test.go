package redact

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

func TestValuesRemovesEveryEncoding(t *testing.T) {
	const secret = "s3cr3t~value/with+odd=chars&more-0123456789"
	const id = "6f3a1c2e-client"
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
	asJSON, _ := json.Marshal(map[string]any{"data": map[string][]byte{"DATABRICKS_TOKEN": []byte(secret)}})
	tests := map[string]string{
		"verbatim":                  "invalid client secret " + secret + " provided",
		"query-encoded":             "client_secret=" + url.QueryEscape(secret) + "&grant_type=client_credentials",
		"base64":                    "echo " + base64.StdEncoding.EncodeToString([]byte(secret)),
		"base64url, unpadded":       "echo " + base64.RawURLEncoding.EncodeToString([]byte(secret)),
		"HTTP Basic of id:secret":   "the header was Authorization: Basic " + basic,
		"Secret data as JSON":       "admission webhook denied: " + string(asJSON),
		"base64 inside longer data": base64.StdEncoding.EncodeToString([]byte("prefix:" + secret + ":suffix")),
		"base64 at offset 1":        base64.StdEncoding.EncodeToString([]byte("x" + secret)),
		"base64 at offset 2":        base64.URLEncoding.EncodeToString([]byte("xy" + secret + "z")),
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			got := Values(text, append([]string{secret}, BasicCredentials(id, secret)...)...)
			if !strings.Contains(got, Marker) {
				t.Fatalf("nothing redacted in %q", got)
			}
			for _, leak := range leaks(secret) {
				if strings.Contains(got, leak) {
					t.Fatalf("an encoding of the secret survives: %q", got)
				}
			}
			if b64 := strings.Fields(strings.NewReplacer(Marker, " ", ":", " ", "\"", " ").Replace(got)); len(b64) > 0 {
				for _, f := range b64 {
					for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
						if dec, err := enc.DecodeString(f); err == nil && strings.Contains(string(dec), secret[5:20]) {
							t.Fatalf("a base64 run still decodes to part of the secret: %q", f)
						}
					}
				}
			}
		})
	}
}

// leaks are strings whose presence would give the secret away.
func leaks(secret string) []string {
	return []string{secret, url.QueryEscape(secret), base64.RawStdEncoding.EncodeToString([]byte(secret)),
		base64.RawURLEncoding.EncodeToString([]byte(secret))}
}

func TestValuesLeavesOtherTextAlone(t *testing.T) {
	text := "AADSTS7000215: Invalid client secret provided. Trace ID: 1234"
	if got := Values(text, "", "s3cr3t-value-that-is-not-here"); got != text {
		t.Fatalf("got %q", got)
	}
}
