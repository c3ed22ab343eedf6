// Package redact removes secret values from text that is about to reach a status, an Event or a
// log line: an identity provider's error description, an API error from an admission webhook.
// Echoes do not always quote a value verbatim: a provider may quote the Authorization header
// (HTTP Basic, base64 of "id:secret"), a webhook may quote the Secret as JSON (its data in
// base64), a form echo is query-encoded. Values covers those forms.
package redact

import (
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
)

// Marker replaces every redacted value.
const Marker = "[redacted]"

// minEncodedCore is the shortest run of base64 characters redacted when a value is encoded
// inside longer content: shorter runs would redact harmless text and reveal little.
const minEncodedCore = 8

// Values returns text with every value replaced by Marker, verbatim and in the encodings an echo
// could carry: query (form) encoding, and base64 in the standard and URL alphabets, padded or not,
// whether the value was encoded alone or inside longer content at any byte offset. Empty values
// are ignored.
func Values(text string, values ...string) string {
	var forms []string
	for _, v := range values {
		if v == "" {
			continue
		}
		forms = append(forms, v)
		if q := url.QueryEscape(v); q != v {
			forms = append(forms, q)
		}
		forms = append(forms, base64Forms(v)...)
	}
	// Longest first, so that no shorter form cuts a longer one in two before it is seen.
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	for _, f := range forms {
		text = strings.ReplaceAll(text, f, Marker)
	}
	return text
}

// BasicCredentials is the user:password pair an HTTP Basic header carries for an OAuth client:
// both parts query-escaped first (RFC 6749 §2.3.1, as golang.org/x/oauth2 sends them), and the
// unescaped pair that some clients send.
func BasicCredentials(clientID, secret string) []string {
	if secret == "" {
		return nil
	}
	return []string{url.QueryEscape(clientID) + ":" + url.QueryEscape(secret), clientID + ":" + secret}
}

// base64Forms are the base64 runs that v becomes: alone (whole, padded or not), and inside longer
// content, where only the characters that encode v's bytes alone are fixed — for each of the three
// offsets at which v can start within a 3-byte group, the encoding without its first and last
// 4-character groups, which mix in the neighbouring bytes.
func base64Forms(v string) []string {
	out := []string{base64.StdEncoding.EncodeToString([]byte(v)), base64.URLEncoding.EncodeToString([]byte(v))}
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		out = append(out, enc.EncodeToString([]byte(v)))
		for shift := range 3 {
			padded := make([]byte, shift, shift+len(v))
			encoded := enc.EncodeToString(append(padded, v...))
			start, end := 0, len(encoded)-4
			if shift > 0 {
				start = 4
			}
			if end-start >= minEncodedCore {
				out = append(out, encoded[start:end])
			}
		}
	}
	return out
}
