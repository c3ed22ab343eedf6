package longruns

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGoSDKAcrossRotations: the Databricks Go SDK, configured only by the environment, calls the
// workspace for three token lifetimes and a quarter while the Secret rotates, and every call
// succeeds with a token the IdP considers valid at that moment.
func TestGoSDKAcrossRotations(t *testing.T) {
	t.Parallel()
	tm := timingFor(*tokenLifetime)
	res := runHarness(t, tm, nil, false)
	t.Logf("%s with %s tokens: %d calls (%d ok), %d rotations published, %d tokens used by the client, %d token server answers; worst life left of a token the workspace got: %s",
		res.elapsed.Truncate(time.Second), tm.lifetime, res.calls, res.okCalls, res.rotations, res.tokensUsed, res.served, res.worstLifeLeft.Truncate(time.Millisecond))
	for _, f := range res.findings {
		t.Error(f)
	}
	if res.elapsed < 3*tm.lifetime {
		t.Errorf("the run lasted %s, less than three token lifetimes", res.elapsed)
	}
	if res.rotations < 3 || res.tokensUsed < 4 {
		t.Errorf("%d rotations, %d tokens used: the client did not live through three rotations", res.rotations, res.tokensUsed)
	}
	if res.okCalls == 0 || res.okCalls != res.calls {
		t.Errorf("%d of %d calls succeeded", res.okCalls, res.calls)
	}
	if res.worstLifeLeft < tm.minRemaining/2 {
		t.Errorf("a token reached the workspace with %s left; the timing rule promises about %s", res.worstLifeLeft, tm.renewBefore-tm.propMax)
	}
}

// TestHarnessCatchesACachingServer: a server that keeps answering with its first token fails the
// harness once the Secret rotates (and its calls fail once that token expires).
func TestHarnessCatchesACachingServer(t *testing.T) {
	t.Parallel()
	tm := timingFor(*tokenLifetime)
	caching := func(next http.Handler) http.Handler {
		var mu sync.Mutex
		var first *bufferedResponse
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if first == nil {
				rec := &bufferedResponse{header: http.Header{}}
				next.ServeHTTP(rec, r)
				if rec.status == http.StatusOK {
					first = rec
				}
			}
			cached := first
			mu.Unlock()
			if cached == nil {
				next.ServeHTTP(w, r)
				return
			}
			for k, v := range cached.header {
				w.Header()[k] = v
			}
			w.WriteHeader(cached.status)
			_, _ = w.Write(cached.body.Bytes())
		})
	}
	res := runHarness(t, tm, caching, true)
	if !anyContains(res.findings, "cached past a rotation") {
		t.Fatalf("the harness did not catch a server that caches its first token; findings: %q", res.findings)
	}
	t.Logf("caught after %s: %s", res.elapsed.Truncate(time.Second), res.findings[0])
}

// TestHarnessCatchesAWrongExpiresOn: a server that reports an expiry later than the token's fails
// the harness at its first answer.
func TestHarnessCatchesAWrongExpiresOn(t *testing.T) {
	t.Parallel()
	tm := timingFor(*tokenLifetime)
	late := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &bufferedResponse{header: http.Header{}}
			next.ServeHTTP(rec, r)
			body := rec.body.String()
			if i := strings.Index(body, `"expires_on":`); i >= 0 && rec.status == http.StatusOK {
				var n int64
				rest := body[i+len(`"expires_on":`):]
				j := 0
				for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
					n = n*10 + int64(rest[j]-'0')
					j++
				}
				body = body[:i] + `"expires_on":` + itoa(n+60) + rest[j:]
			}
			for k, v := range rec.header {
				if k != "Content-Length" {
					w.Header()[k] = v
				}
			}
			w.WriteHeader(rec.status)
			_, _ = w.Write([]byte(body))
		})
	}
	res := runHarness(t, tm, late, true)
	if !anyContains(res.findings, "reported expires_on") {
		t.Fatalf("the harness did not catch a wrong expires_on; findings: %q", res.findings)
	}
	t.Logf("caught after %s: %s", res.elapsed.Truncate(time.Second), res.findings[0])
}

func anyContains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
