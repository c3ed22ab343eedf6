package tokenserver

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/test/secretvolume"
)

// TestServesTokenInMetadataServiceShape: 200 with access_token, token_type Bearer and expires_on
// as a JSON number (the Python SDK passes it to datetime.fromtimestamp, which refuses a string).
func TestServesTokenInMetadataServiceShape(t *testing.T) {
	exp := time.Date(2026, 11, 28, 19, 0, 0, 0, time.UTC)
	tok := fakeJWT(exp)
	f := newFixture(t, secretData(tok, exp), nil)
	a := f.do(tokenRequest(testHost))
	if a.status != http.StatusOK {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
	if a.ok.AccessToken != tok || a.ok.TokenType != "Bearer" || a.ok.ExpiresOn != exp.Unix() {
		t.Errorf("got token_type %q expires_on %d (token matches: %v), want Bearer %d", a.ok.TokenType, a.ok.ExpiresOn, a.ok.AccessToken == tok, exp.Unix())
	}
	if !regexp.MustCompile(`"expires_on":\d+[,}]`).MatchString(a.raw) {
		t.Errorf("expires_on is not a JSON number in %s", strings.ReplaceAll(a.raw, tok, "<token>"))
	}
	if a.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", a.header.Get("Cache-Control"))
	}
}

// TestExpirySources: the expires-at key is used when present, the JWT exp otherwise, the earlier
// of both when they differ, and an opaque token is served only with the key.
func TestExpirySources(t *testing.T) {
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	jwtExp := now.Add(time.Hour)
	for _, tt := range []struct {
		name     string
		token    string
		expires  string // "" = key absent
		want     time.Time
		wantCode string
	}{
		{"key only, opaque token", "", now.Add(50 * time.Minute).Format(time.RFC3339), now.Add(50 * time.Minute), ""},
		{"JWT only", fakeJWT(jwtExp), "", jwtExp, ""},
		{"key earlier than JWT", fakeJWT(jwtExp), now.Add(40 * time.Minute).Format(time.RFC3339), now.Add(40 * time.Minute), ""},
		{"JWT earlier than key", fakeJWT(jwtExp), now.Add(2 * time.Hour).Format(time.RFC3339), jwtExp, ""},
		{"key with offset", fakeJWT(jwtExp), now.Add(30 * time.Minute).In(time.FixedZone("CET", 3600)).Format(time.RFC3339), now.Add(30 * time.Minute), ""},
		{"opaque, no key", "", "", time.Time{}, CodeExpiryUnknown},
		{"JWT without exp, no key", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln", "", time.Time{}, CodeExpiryUnknown},
		{"key not RFC 3339", fakeJWT(jwtExp), "1795975200", time.Time{}, CodeExpiryUnknown},
		{"key garbage", "", "tomorrow", time.Time{}, CodeExpiryUnknown},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token
			if tok == "" {
				tok = opaqueToken()
			}
			data := secretvolume.Strings(map[string]string{hostKey: testHost, tokenKey: tok})
			if tt.expires != "" {
				data[expiresKey] = []byte(tt.expires)
			}
			f := newFixture(t, data, nil)
			a := f.do(tokenRequest(testHost))
			if tt.wantCode != "" {
				if a.status != http.StatusServiceUnavailable || a.err.Error != tt.wantCode {
					t.Fatalf("got %d %s, want 503 %s", a.status, a.err.Error, tt.wantCode)
				}
				return
			}
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.raw)
			}
			if a.ok.ExpiresOn != tt.want.Unix() {
				t.Errorf("expires_on %s, want %s", time.Unix(a.ok.ExpiresOn, 0).UTC(), tt.want)
			}
		})
	}
}

// TestEveryRequestReadsTheVolume: a rotation is served by the very next request, and a token
// that expires is never handed out, nor one closer to expiry than MinRemaining.
func TestEveryRequestReadsTheVolume(t *testing.T) {
	start := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	first := fakeJWT(start.Add(time.Hour))
	f := newFixture(t, secretData(first, start.Add(time.Hour)), nil)
	if a := f.do(tokenRequest(testHost)); a.ok.AccessToken != first {
		t.Fatalf("first token not served: %d %s", a.status, a.err.Description)
	}
	second := fakeJWT(start.Add(90 * time.Minute))
	f.update(secretData(second, start.Add(90*time.Minute)))
	a := f.do(tokenRequest(testHost))
	if a.ok.AccessToken != second || a.ok.ExpiresOn != start.Add(90*time.Minute).Unix() {
		t.Fatalf("after the rotation the server did not serve the new token and its expiry (status %d)", a.status)
	}

	// The operator stops refreshing: the token is served until 30 s before it expires.
	f.advance(90*time.Minute - 31*time.Second)
	if a := f.do(tokenRequest(testHost)); a.status != http.StatusOK {
		t.Fatalf("31 s before expiry: %d %s", a.status, a.err.Description)
	}
	f.advance(2 * time.Second)
	a = f.do(tokenRequest(testHost))
	if a.status != http.StatusServiceUnavailable || a.err.Error != CodeTokenExpiring {
		t.Fatalf("29 s before expiry: got %d %s, want 503 %s", a.status, a.err.Error, CodeTokenExpiring)
	}
	f.advance(time.Minute)
	a = f.do(tokenRequest(testHost))
	if a.status != http.StatusServiceUnavailable || a.err.Error != CodeTokenExpired {
		t.Fatalf("after expiry: got %d %s, want 503 %s", a.status, a.err.Error, CodeTokenExpired)
	}
	if !strings.Contains(a.err.Description, "Ready condition") {
		t.Errorf("the expiry refusal should say where to look: %q", a.err.Description)
	}
	// A new token arrives: served again at once.
	third := fakeJWT(f.clock().Add(time.Hour))
	f.update(secretData(third, f.clock().Add(time.Hour)))
	if a := f.do(tokenRequest(testHost)); a.ok.AccessToken != third {
		t.Fatalf("the token written after an expiry is not served: %d %s", a.status, a.err.Description)
	}
	if !strings.Contains(f.logs.String(), `"msg":"serving token"`) {
		t.Errorf("no log line for a newly served token version:\n%s", f.logs.String())
	}
}

// TestMinRemainingZeroServesUntilExpiry: with the margin switched off, only an expired token is
// refused.
func TestMinRemainingZeroServesUntilExpiry(t *testing.T) {
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	tok := fakeJWT(now.Add(5 * time.Second))
	f := newFixture(t, secretData(tok, now.Add(5*time.Second)), func(o *Options) { o.MinRemaining = -1 })
	if a := f.do(tokenRequest(testHost)); a.status != http.StatusOK {
		t.Fatalf("5 s left, no margin: %d %s", a.status, a.err.Description)
	}
	f.advance(5 * time.Second)
	if a := f.do(tokenRequest(testHost)); a.err.Error != CodeTokenExpired {
		t.Fatalf("at expiry: got %d %s, want %s", a.status, a.err.Error, CodeTokenExpired)
	}
}

// TestRefusesBadRequests: every request that is not the protocol's GET for the served host gets a
// 4xx with a clear JSON error, and the handler keeps serving good requests afterwards.
func TestRefusesBadRequests(t *testing.T) {
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	tok := fakeJWT(now.Add(time.Hour))
	f := newFixture(t, secretData(tok, now.Add(time.Hour)), nil)
	good := func() *http.Request { return tokenRequest(testHost) }
	for _, tt := range []struct {
		name   string
		req    func() *http.Request
		status int
		code   string
	}{
		{"no version header", func() *http.Request { r := good(); r.Header.Del(VersionHeader); return r }, 400, CodeMissingVersion},
		{"version 2", func() *http.Request { r := good(); r.Header.Set(VersionHeader, "2"); return r }, 400, CodeUnsupportedVersion},
		{"version empty", func() *http.Request { r := good(); r.Header.Set(VersionHeader, ""); return r }, 400, CodeUnsupportedVersion},
		{"two versions", func() *http.Request { r := good(); r.Header.Add(VersionHeader, "1"); return r }, 400, CodeUnsupportedVersion},
		{"no host header", func() *http.Request { r := good(); r.Header.Del(HostHeader); return r }, 400, CodeMissingHost},
		{"another workspace", func() *http.Request { return tokenRequest("https://adb-999.9.azuredatabricks.net") }, 403, CodeHostNotServed},
		{"same name, other port", func() *http.Request { return tokenRequest(testHost + ":8443") }, 403, CodeHostNotServed},
		{"same name, http", func() *http.Request { return tokenRequest(strings.Replace(testHost, "https", "http", 1)) }, 403, CodeHostNotServed},
		{"host with a path", func() *http.Request { return tokenRequest(testHost + "/api/2.0") }, 400, CodeInvalidHost},
		{"host not a URL", func() *http.Request { return tokenRequest("https://%zz") }, 400, CodeInvalidHost},
		{"two host headers", func() *http.Request { r := good(); r.Header.Add(HostHeader, testHost); return r }, 400, CodeInvalidHost},
		{"POST", func() *http.Request { r := good(); r.Method = http.MethodPost; return r }, 405, CodeMethodNotAllowed},
		{"PUT", func() *http.Request { r := good(); r.Method = http.MethodPut; return r }, 405, CodeMethodNotAllowed},
		{"HEAD", func() *http.Request { r := good(); r.Method = http.MethodHead; return r }, 405, CodeMethodNotAllowed},
		{"DELETE", func() *http.Request { r := good(); r.Method = http.MethodDelete; return r }, 405, CodeMethodNotAllowed},
		{"root path", func() *http.Request { r := good(); r.URL.Path = "/"; return r }, 404, CodeNotFound},
		{"prefix without secret", func() *http.Request { r := good(); r.URL.Path = TokenPathPrefix; return r }, 404, CodeNotFound},
		{"wrong secret", func() *http.Request {
			r := good()
			r.URL.Path = TokenPathPrefix + strings.ToUpper(testPathSecret)
			return r
		}, 404, CodeNotFound},
		{"secret with trailing slash", func() *http.Request { r := good(); r.URL.Path += "/"; return r }, 404, CodeNotFound},
		{"secret prefix only", func() *http.Request { r := good(); r.URL.Path = r.URL.Path[:len(r.URL.Path)-1]; return r }, 404, CodeNotFound},
		{"POST to a wrong path", func() *http.Request { r := good(); r.Method = http.MethodPost; r.URL.Path = "/x"; return r }, 404, CodeNotFound},
		{"Host header of another name", func() *http.Request { r := good(); r.Host = "attacker.example:8765"; return r }, 421, CodeMisdirected},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := f.do(tt.req())
			if a.status != tt.status || a.err.Error != tt.code {
				t.Fatalf("got %d %s (%s), want %d %s", a.status, a.err.Error, a.err.Description, tt.status, tt.code)
			}
			if tt.status == 405 && a.header.Get("Allow") != http.MethodGet {
				t.Errorf("405 without Allow: GET")
			}
			if a := f.do(good()); a.status != http.StatusOK {
				t.Fatalf("a good request after the refusal: %d %s", a.status, a.err.Description)
			}
		})
	}
	// The path secret never appears in an answer.
	a := f.do(func() *http.Request { r := good(); r.URL.Path = "/token/guess"; return r }())
	if strings.Contains(a.raw, testPathSecret) {
		t.Errorf("a 404 reveals the path secret: %s", a.raw)
	}
}

// TestHostMatching: hosts equal after normalization are served, as the SDKs send them.
func TestHostMatching(t *testing.T) {
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	for _, secretHost := range []string{testHost, testHost + "/", "ADB-1234567890123456.7.azuredatabricks.net", testHost + ":443"} {
		data := secretData(fakeJWT(now.Add(time.Hour)), now.Add(time.Hour))
		data[hostKey] = []byte(secretHost)
		f := newFixture(t, data, nil)
		// What the Go SDK sends (scheme://host after its clean-up) and what the Python SDK sends
		// for a profile host without scheme (it adds https://).
		for _, asked := range []string{testHost, "https://adb-1234567890123456.7.azuredatabricks.net/", "adb-1234567890123456.7.azuredatabricks.net", testHost + ":443"} {
			if a := f.do(tokenRequest(asked)); a.status != http.StatusOK {
				t.Errorf("Secret host %q, asked %q: %d %s", secretHost, asked, a.status, a.err.Description)
			}
		}
	}
	// A configured host overrides the Secret's (a target.data template may not write one).
	data := secretvolume.Strings(map[string]string{tokenKey: fakeJWT(now.Add(time.Hour))})
	f := newFixture(t, data, func(o *Options) { o.Host = "https://127.0.0.1:44321" })
	if a := f.do(tokenRequest("https://127.0.0.1:44321")); a.status != http.StatusOK {
		t.Errorf("configured host: %d %s", a.status, a.err.Description)
	}
	if a := f.do(tokenRequest(testHost)); a.status != http.StatusForbidden {
		t.Errorf("configured host, another asked: %d, want 403", a.status)
	}
}

// TestRefusesBrokenSecrets: every way the mounted Secret can be wrong gets a 503 that names the
// problem (never the token), and the handler serves again once the Secret is right.
func TestRefusesBrokenSecrets(t *testing.T) {
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	exp := now.Add(time.Hour)
	tok := fakeJWT(exp)
	for _, tt := range []struct {
		name     string
		breakIt  func(t *testing.T, f *fixture)
		code     string
		mentions string
	}{
		{"token key missing", func(t *testing.T, f *fixture) {
			f.update(secretvolume.Strings(map[string]string{hostKey: testHost, expiresKey: exp.Format(time.RFC3339)}))
		}, CodeTokenUnavailable, tokenKey},
		{"token empty", func(t *testing.T, f *fixture) {
			f.update(secretvolume.Strings(map[string]string{hostKey: testHost, tokenKey: "  \n"}))
		}, CodeTokenInvalid, "empty"},
		{"token with a line break inside", func(t *testing.T, f *fixture) {
			f.update(secretvolume.Strings(map[string]string{hostKey: testHost, tokenKey: "abc\ndef-ghijkl", expiresKey: exp.Format(time.RFC3339)}))
		}, CodeTokenInvalid, "Authorization header"},
		{"token file too large", func(t *testing.T, f *fixture) {
			f.update(secretvolume.Strings(map[string]string{hostKey: testHost, tokenKey: strings.Repeat("a", MaxTokenBytes+1)}))
		}, CodeTokenInvalid, "bytes"},
		{"expiry file too large", func(t *testing.T, f *fixture) {
			f.update(secretvolume.Strings(map[string]string{hostKey: testHost, tokenKey: tok, expiresKey: strings.Repeat("9", MaxExpiresBytes+1)}))
		}, CodeTokenInvalid, expiresKey},
		{"host key missing and no --host", func(t *testing.T, f *fixture) {
			f.update(secretvolume.Strings(map[string]string{tokenKey: tok}))
		}, CodeHostUnknown, hostKey},
		{"Secret host not a URL", func(t *testing.T, f *fixture) {
			f.update(secretvolume.Strings(map[string]string{tokenKey: tok, hostKey: "https://x/y?z"}))
		}, CodeHostUnknown, hostKey},
		{"token is a FIFO", func(t *testing.T, f *fixture) {
			// A reader that blocks on a FIFO would hang every request; O_NONBLOCK and the
			// regular-file check refuse it at once.
			path := filepath.Join(f.vol.Path(), f.vol.Version(), tokenKey)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}, CodeTokenInvalid, "regular"},
		{"token is a symlink inside the version", func(t *testing.T, f *fixture) {
			path := filepath.Join(f.vol.Path(), f.vol.Version(), tokenKey)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/etc/hostname", path); err != nil {
				t.Fatal(err)
			}
		}, CodeTokenInvalid, "symlink"},
		{"token is a directory", func(t *testing.T, f *fixture) {
			path := filepath.Join(f.vol.Path(), f.vol.Version(), tokenKey)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}, CodeTokenInvalid, "regular"},
		{"..data dangling", func(t *testing.T, f *fixture) {
			if err := os.RemoveAll(filepath.Join(f.vol.Path(), f.vol.Version())); err != nil {
				t.Fatal(err)
			}
		}, CodeTokenUnavailable, tokenKey},
		{"..data points outside", func(t *testing.T, f *fixture) {
			link := filepath.Join(f.vol.Path(), DataLink)
			_ = os.Remove(link)
			if err := os.Symlink("/etc", link); err != nil {
				t.Fatal(err)
			}
		}, CodeTokenUnavailable, "outside"},
		{"no ..data (a subPath-style copy)", func(t *testing.T, f *fixture) {
			if err := os.Remove(filepath.Join(f.vol.Path(), DataLink)); err != nil {
				t.Fatal(err)
			}
		}, CodeTokenUnavailable, "subPath"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, secretData(tok, exp), nil)
			tt.breakIt(t, f)
			done := make(chan answer, 1)
			go func() { done <- f.do(tokenRequest(testHost)) }()
			var a answer
			select {
			case a = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the request hangs on the broken Secret")
			}
			if a.status != http.StatusServiceUnavailable || a.err.Error != tt.code {
				t.Fatalf("got %d %s (%s), want 503 %s", a.status, a.err.Error, a.err.Description, tt.code)
			}
			if !strings.Contains(a.err.Description, tt.mentions) {
				t.Errorf("the description should mention %q: %q", tt.mentions, a.err.Description)
			}
			if r := f.do(httptest.NewRequest(http.MethodGet, ReadyPath, nil)); r.status != http.StatusServiceUnavailable {
				t.Errorf("readiness with a broken Secret: %d, want 503", r.status)
			}
			// Repaired: served again.
			good := fakeJWT(exp)
			if tt.name == "..data points outside" || tt.name == "no ..data (a subPath-style copy)" {
				return // not a kubelet volume any more; nothing to repair in place
			}
			f.update(secretData(good, exp))
			if a := f.do(tokenRequest(testHost)); a.ok.AccessToken != good {
				t.Fatalf("after repairing the Secret: %d %s", a.status, a.err.Description)
			}
		})
	}
}

// TestUnreadableVolume: a mount the server may not read is a 503 that says so (as root, which
// ignores file modes, this runs in cmd/token-server's test as an unprivileged process instead).
func TestUnreadableVolume(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file; TestUnreadableMountAsNonRoot in cmd/token-server covers this")
	}
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	f := newFixture(t, secretData(fakeJWT(now.Add(time.Hour)), now.Add(time.Hour)), nil)
	if err := os.Chmod(f.vol.Path(), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(f.vol.Path(), 0o755) })
	a := f.do(tokenRequest(testHost))
	if a.status != http.StatusServiceUnavailable || a.err.Error != CodeTokenUnavailable || !strings.Contains(a.err.Description, "cannot be read") {
		t.Fatalf("got %d %s (%s)", a.status, a.err.Error, a.err.Description)
	}
}

// TestReadiness: 200 with the expiry while a token can be served, 503 with the reason otherwise;
// never the token.
func TestReadiness(t *testing.T) {
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	tok := fakeJWT(now.Add(time.Hour))
	f := newFixture(t, secretData(tok, now.Add(time.Hour)), nil)
	r := httptest.NewRequest(http.MethodGet, ReadyPath, nil)
	a := f.do(r)
	if a.status != http.StatusOK || strings.Contains(a.raw, tok) || !strings.Contains(a.raw, `"status":"ready"`) {
		t.Fatalf("ready: %d %s", a.status, strings.ReplaceAll(a.raw, tok, "<token>"))
	}
	f.advance(time.Hour)
	if a := f.do(httptest.NewRequest(http.MethodGet, ReadyPath, nil)); a.status != http.StatusServiceUnavailable || a.err.Error != CodeTokenExpired {
		t.Fatalf("expired: %d %s", a.status, a.err.Error)
	}
	if a := f.do(httptest.NewRequest(http.MethodPost, ReadyPath, nil)); a.status != http.StatusMethodNotAllowed {
		t.Fatalf("POST /readyz: %d", a.status)
	}
}

// TestNewRefusesBadOptions: configuration mistakes stop the server at start.
func TestNewRefusesBadOptions(t *testing.T) {
	base := Options{Volume: Volume{Dir: "/x", TokenKey: tokenKey, HostKey: hostKey}, PathSecret: testPathSecret}
	for name, mutate := range map[string]func(*Options){
		"short path secret":    func(o *Options) { o.PathSecret = "abc" },
		"path secret with '/'": func(o *Options) { o.PathSecret = "0123456789/abcdef" },
		"path secret with '%'": func(o *Options) { o.PathSecret = "0123456789%abcdef" },
		"no dir":               func(o *Options) { o.Volume.Dir = "" },
		"token key with /":     func(o *Options) { o.Volume.TokenKey = "a/b" },
		"token key ..data":     func(o *Options) { o.Volume.TokenKey = DataLink },
		"no host, no host key": func(o *Options) { o.Volume.HostKey = "" },
		"host with a path":     func(o *Options) { o.Host = "https://x.example/p" },
	} {
		o := base
		mutate(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := New(base); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
}

// TestNormalizeHost pins the normalization used to compare X-Databricks-Host.
func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"https://adb-1.2.azuredatabricks.net":      "https://adb-1.2.azuredatabricks.net:443",
		"https://ADB-1.2.azuredatabricks.net/":     "https://adb-1.2.azuredatabricks.net:443",
		"adb-1.2.azuredatabricks.net":              "https://adb-1.2.azuredatabricks.net:443",
		"https://dbc-1.cloud.databricks.com:443":   "https://dbc-1.cloud.databricks.com:443",
		"https://127.0.0.1:41234":                  "https://127.0.0.1:41234",
		"http://127.0.0.1":                         "http://127.0.0.1:80",
		" https://x.gcp.databricks.com \n":         "https://x.gcp.databricks.com:443",
		"https://[::1]:8443":                       "https://[::1]:8443",
		"https://adb-1.2.azuredatabricks.net//":    "https://adb-1.2.azuredatabricks.net:443",
		"https://user@adb-1.2.azuredatabricks.net": "",
		"https://adb-1.2.azuredatabricks.net/?o=1": "",
		"ftp://adb-1.2.azuredatabricks.net":        "",
		"https://":                                 "",
		"":                                         "",
	} {
		got, err := NormalizeHost(in)
		if want == "" {
			if err == nil {
				t.Errorf("NormalizeHost(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
