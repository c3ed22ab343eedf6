package tokenserver

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/test/secretvolume"
)

const (
	testHost       = "https://adb-1234567890123456.7.azuredatabricks.net"
	testPathSecret = "3f6c1e2a-8d4b-4c7e-9a51-0b2d7e6f4c93" // shaped like a pod UID
	tokenKey       = "DATABRICKS_TOKEN"
	expiresKey     = "DATABRICKS_TOKEN_EXPIRES_AT"
	hostKey        = "DATABRICKS_HOST"
)

// fakeJWT is a JWS-shaped token with the given exp and a random jti, so every token differs. The
// signature is not one: the server does not verify tokens (the workspace does).
func fakeJWT(exp time.Time) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"kid":"k1","typ":"at+jwt","alg":"RS256"}`))
	jti := make([]byte, 12)
	_, _ = rand.Read(jti)
	body, _ := json.Marshal(map[string]any{"sub": "sp", "exp": exp.Unix(), "jti": enc.EncodeToString(jti)})
	return head + "." + enc.EncodeToString(body) + "." + enc.EncodeToString([]byte("not-a-signature"))
}

// opaqueToken looks like a Databricks PAT-style opaque token: no dots, no claims.
func opaqueToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("dose%x", b)
}

// secretData is the target Secret's default keys plus the expiry key the operator writes.
func secretData(token string, exp time.Time) map[string][]byte {
	return secretvolume.Strings(map[string]string{
		hostKey:    testHost,
		tokenKey:   token,
		expiresKey: exp.UTC().Format(time.RFC3339),
	})
}

// logBuffer collects the handler's log lines; tests assert no token or path secret is in them.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// fixture is a handler over a kubelet-style volume with a controllable clock.
type fixture struct {
	t      *testing.T
	vol    *secretvolume.Dir
	h      *Handler
	logs   *logBuffer
	mu     sync.Mutex
	now    time.Time
	tokens []string // every token written, to check none leaks
}

func newFixture(t *testing.T, data map[string][]byte, mutate func(*Options)) *fixture {
	t.Helper()
	f := &fixture{t: t, logs: &logBuffer{}, now: time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)}
	vol, err := secretvolume.New(t.TempDir(), data)
	if err != nil {
		t.Fatal(err)
	}
	f.vol = vol
	f.noteTokens(data)
	o := Options{
		Volume:     Volume{Dir: vol.Path(), TokenKey: tokenKey, ExpiresKey: expiresKey, HostKey: hostKey},
		PathSecret: testPathSecret,
		Now:        f.clock,
		Logger:     slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mutate != nil {
		mutate(&o)
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	t.Cleanup(f.checkLogs)
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func (f *fixture) noteTokens(data map[string][]byte) {
	if tok := strings.TrimSpace(string(data[tokenKey])); len(tok) >= 8 {
		f.mu.Lock()
		f.tokens = append(f.tokens, tok)
		f.mu.Unlock()
	}
}

func (f *fixture) update(data map[string][]byte) {
	f.t.Helper()
	f.noteTokens(data)
	if err := f.vol.Update(data); err != nil {
		f.t.Fatal(err)
	}
}

// checkLogs: no token that was ever in the Secret, and not the path secret, is in the log.
func (f *fixture) checkLogs() {
	logs := f.logs.String()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tok := range f.tokens {
		if strings.Contains(logs, tok) {
			f.t.Errorf("a token appears in the log:\n%s", logs)
		}
	}
	if strings.Contains(logs, testPathSecret) {
		f.t.Errorf("the path secret appears in the log:\n%s", logs)
	}
}

// tokenRequest is what the Go SDK sends.
func tokenRequest(host string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8765"+TokenPathPrefix+testPathSecret, nil)
	r.Header.Set(VersionHeader, Version)
	r.Header.Set(HostHeader, host)
	return r
}

type answer struct {
	status int
	header http.Header
	raw    string
	ok     tokenResponse
	err    errorResponse
}

func (f *fixture) do(r *http.Request) answer {
	f.t.Helper()
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	a := answer{status: w.Code, header: w.Header(), raw: w.Body.String()}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("Content-Type %q, want application/json (status %d)", ct, w.Code)
	}
	dec := json.NewDecoder(strings.NewReader(a.raw))
	dec.DisallowUnknownFields()
	if w.Code == http.StatusOK && r.URL.Path != ReadyPath {
		if err := dec.Decode(&a.ok); err != nil {
			f.t.Fatalf("200 answer is not the metadata-service JSON: %v", err)
		}
	} else if w.Code != http.StatusOK {
		if err := dec.Decode(&a.err); err != nil {
			f.t.Fatalf("%d answer is not a JSON error: %v", w.Code, err)
		}
		if a.err.Error == "" || a.err.Description == "" {
			f.t.Errorf("%d answer lacks error or error_description: %s", w.Code, a.raw)
		}
		f.mu.Lock()
		for _, tok := range f.tokens {
			if strings.Contains(a.raw, tok) {
				f.t.Errorf("a refusal carries a token: %s", a.raw)
			}
		}
		f.mu.Unlock()
	}
	return a
}
