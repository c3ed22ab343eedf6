package tokenserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/test/secretvolume"
)

// FuzzHandler drives the handler with arbitrary requests against arbitrary Secret contents and
// checks what must always hold: it answers (no panic, no hang) with JSON and a known status; it
// serves a token exactly when the request is the protocol's and the token is servable; and a
// refusal never carries the token. The seeds (f.Add and testdata/fuzz/FuzzHandler) run in every
// `go test`; `go test -fuzz=FuzzHandler ./internal/tokenserver/` explores further.
func FuzzHandler(f *testing.F) {
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	good := fakeJWT(now.Add(time.Hour))
	path := TokenPathPrefix + testPathSecret
	rfc := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	for _, s := range [][8]string{
		{"GET", path, "1", testHost, "127.0.0.1:8765", good, rfc(time.Hour), testHost},
		{"GET", path, "1", "adb-1234567890123456.7.azuredatabricks.net", "localhost:8765", good, "", testHost + "/"},
		{"GET", path, "1", testHost, "127.0.0.1:8765", "opaque-token-value", rfc(10 * time.Minute), testHost},
		{"GET", path, "1", testHost, "127.0.0.1:8765", "opaque-token-value", "", testHost},
		{"GET", path, "1", testHost, "127.0.0.1:8765", good, rfc(20 * time.Second), testHost},
		{"GET", path, "1", testHost, "127.0.0.1:8765", good, rfc(-time.Minute), testHost},
		{"GET", path, "2", testHost, "127.0.0.1:8765", good, rfc(time.Hour), testHost},
		{"GET", path, "", testHost, "127.0.0.1:8765", good, rfc(time.Hour), testHost},
		{"GET", path, "1", "https://evil.example", "127.0.0.1:8765", good, rfc(time.Hour), testHost},
		{"GET", path, "1", "", "127.0.0.1:8765", good, rfc(time.Hour), testHost},
		{"POST", path, "1", testHost, "127.0.0.1:8765", good, rfc(time.Hour), testHost},
		{"GET", path + "/", "1", testHost, "127.0.0.1:8765", good, rfc(time.Hour), testHost},
		{"GET", "/token/", "1", testHost, "127.0.0.1:8765", good, rfc(time.Hour), testHost},
		{"GET", ReadyPath, "", "", "127.0.0.1:8765", good, rfc(time.Hour), testHost},
		{"GET", path, "1", testHost, "rebind.example:8765", good, rfc(time.Hour), testHost},
		{"GET", path, "1", testHost, "127.0.0.1:8765", "tok\r\nX-Injected: 1", rfc(time.Hour), testHost},
		{"GET", path, "1", testHost, "127.0.0.1:8765", "", rfc(time.Hour), testHost},
		{"GET", path, "1", testHost, "127.0.0.1:8765", good, "2026-13-45T99:00:00Z", testHost},
		{"GET", path, "1", testHost, "127.0.0.1:8765", good, rfc(time.Hour), ""},
		{"GET", path, "1", "https://[::1", "127.0.0.1:8765", good, rfc(time.Hour), "https://%%"},
		{"GET", path, "1", testHost, "127.0.0.1:8765", "a.eyJleHAiOjE3OTU5NzYwMDAuNX0.b", "", testHost},
		{"GET", path, "1", testHost, "127.0.0.1:8765", "a.eyJleHAiOiItMSJ9.b", "", testHost},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
	}

	vol, err := secretvolume.New(f.TempDir(), secretData(good, now.Add(time.Hour)))
	if err != nil {
		f.Fatal(err)
	}
	h, err := New(Options{
		Volume:     Volume{Dir: vol.Path(), TokenKey: tokenKey, ExpiresKey: expiresKey, HostKey: hostKey},
		PathSecret: testPathSecret,
		Now:        func() time.Time { return now },
	})
	if err != nil {
		f.Fatal(err)
	}
	statuses := []int{200, 400, 403, 404, 405, 421, 503}

	f.Fuzz(func(t *testing.T, method, reqPath, version, xhost, httpHost, token, expires, secretHost string) {
		data := map[string][]byte{tokenKey: []byte(token)}
		if expires != "" {
			data[expiresKey] = []byte(expires)
		}
		if secretHost != "" {
			data[hostKey] = []byte(secretHost)
		}
		if err := vol.Update(data); err != nil {
			t.Fatal(err)
		}
		r := &http.Request{Method: method, URL: &url.URL{Path: reqPath}, Host: httpHost, Header: http.Header{}}
		if version != "" {
			r.Header.Set(VersionHeader, version)
		}
		if xhost != "" {
			r.Header.Set(HostHeader, xhost)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)

		if !slices.Contains(statuses, w.Code) {
			t.Fatalf("status %d", w.Code)
		}
		if w.Header().Get("Content-Type") != "application/json" || !json.Valid(w.Body.Bytes()) {
			t.Fatalf("answer is not JSON: %q", w.Body.String())
		}
		trimmed := strings.TrimSpace(token)

		// The oracle: what makes a request servable.
		wantServed := reqPath == path && method == http.MethodGet &&
			checkLoopbackHost(httpHost) == nil && version == Version
		asked, aerr := NormalizeHost(xhost)
		served, serr := NormalizeHost(secretHost)
		wantServed = wantServed && aerr == nil && serr == nil && asked == served &&
			trimmed != "" && headerSafe(trimmed) && len(token) <= MaxTokenBytes && len(expires) <= MaxExpiresBytes && len(secretHost) <= MaxHostBytes
		if wantServed {
			snap := Snapshot{Token: trimmed, Expires: strings.TrimSpace(expires), HasExpires: expires != ""}
			exp, _, err := snap.Expiry()
			wantServed = err == nil && exp.Sub(now) >= DefaultMinRemaining
		}

		if reqPath == path {
			if got := w.Code == http.StatusOK; got != wantServed {
				t.Fatalf("served=%v, the oracle says %v: %d %s", got, wantServed, w.Code, redact(w.Body.String(), trimmed))
			}
		}
		if w.Code == http.StatusOK && reqPath == path {
			var a tokenResponse
			if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || a.AccessToken != trimmed || a.TokenType != "Bearer" || a.ExpiresOn <= now.Unix() {
				t.Fatalf("bad 200 answer (%v): expires_on %d", err, a.ExpiresOn)
			}
			return
		}
		// Refusals and the readiness answer never carry the token (unless the token is so short
		// or so plain that it occurs in the request or the Secret's other values by chance).
		if len(trimmed) >= 8 && !strings.Contains(xhost+secretHost+expires+reqPath+version+method+httpHost+"expires_on expiry_source remaining status ready", trimmed) &&
			strings.Contains(w.Body.String(), trimmed) {
			t.Fatalf("a %d answer carries the token", w.Code)
		}
	})
}

func redact(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(s, token, "<token>")
}
