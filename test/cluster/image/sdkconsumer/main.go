// Command sdkconsumer is the long-running pod of the cluster test (docs/long-runs.md): a client of
// the Databricks Go SDK that calls the workspace (CurrentUser.Me, what `databricks current-user
// me` does) in a loop, as a long dbt or Databricks CLI run does, while its token-server sidecar
// hands it each token the kubelet delivers into the Secret volume.
//
// Its authentication is configured by the environment only, as in the samples:
// DATABRICKS_HOST, DATABRICKS_AUTH_TYPE=metadata-service and DATABRICKS_METADATA_SERVICE_URL;
// SSL_CERT_FILE makes it trust the test workspace. The one thing set in code is an observing HTTP
// transport, which forwards every request unchanged and notes which token each one carried, so
// the test can tell which tokens the client used and how much life they had left. It never
// prints a token: only a fingerprint (the first 12 hex digits of its SHA-256, as the test
// computes it) and times.
//
// Settings: CONSUMER_INTERVAL between calls (default 1s); the run ends after the first successful
// call with the CONSUMER_TOKENS-th distinct token (default 4: three rotations) or after
// CONSUMER_MAX_DURATION (default 10m). It exits 1 if any call failed or too few tokens were seen.
//
// Output, one JSON object per line on stdout:
//
//	{"event":"token", "at", "fp", "expiresOn", "exp"}        the sidecar handed it a new token
//	{"event":"call", "start", "end", "ok", "attempts": [...], "error"}  one workspace call
//	{"event":"done", "calls", "failed", "tokens"}
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/databricks/databricks-sdk-go"
)

func main() { os.Exit(run()) }

// attempt is one HTTP request of a workspace call (the SDK may retry).
type attempt struct {
	At     time.Time `json:"at"`
	FP     string    `json:"fp"`               // fingerprint of the bearer token sent
	LeftMs int64     `json:"leftMs"`           // its exp minus the time it was sent; -1 if unknown
	Status int       `json:"status,omitempty"` // 0: no response
	Error  string    `json:"error,omitempty"`
}

type callLine struct {
	Event    string    `json:"event"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	OK       bool      `json:"ok"`
	Attempts []attempt `json:"attempts"`
	Error    string    `json:"error,omitempty"`
}

type tokenLine struct {
	Event     string    `json:"event"`
	At        time.Time `json:"at"`
	FP        string    `json:"fp"`
	ExpiresOn int64     `json:"expiresOn"` // what the token server reported, Unix seconds
	Exp       int64     `json:"exp"`       // the token's own exp claim, Unix seconds; 0 if not a JWT
}

type doneLine struct {
	Event  string `json:"event"`
	Calls  int    `json:"calls"`
	Failed int    `json:"failed"`
	Tokens int    `json:"tokens"`
	Reason string `json:"reason"`
}

var (
	outMu sync.Mutex
	out   = json.NewEncoder(os.Stdout)
)

func emit(v any) {
	outMu.Lock()
	defer outMu.Unlock()
	_ = out.Encode(v)
}

func run() int {
	interval := durationEnv("CONSUMER_INTERVAL", time.Second)
	maxDuration := durationEnv("CONSUMER_MAX_DURATION", 10*time.Minute)
	wantTokens := 4
	if v := os.Getenv("CONSUMER_TOKENS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "CONSUMER_TOKENS must be a positive integer")
			return 2
		}
		wantTokens = n
	}

	obs := &observer{next: http.DefaultTransport.(*http.Transport).Clone(), served: map[string]bool{}}
	// Everything but the transport comes from the environment.
	w, err := databricks.NewWorkspaceClient(&databricks.Config{HTTPTransport: obs})
	if err != nil {
		fmt.Fprintln(os.Stderr, "configuring the SDK:", err)
		return 1
	}

	used := map[string]bool{}
	calls, failed := 0, 0
	deadline := time.Now().Add(maxDuration)
	reason := "max duration reached"
	for time.Now().Before(deadline) {
		rec := &callRecord{}
		ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), callKey{}, rec), 30*time.Second)
		c := callLine{Event: "call", Start: time.Now()}
		_, err := w.CurrentUser.Me(ctx)
		cancel()
		c.End = time.Now()
		c.Attempts = rec.list()
		calls++
		if err != nil {
			failed++
			c.Error = err.Error()
		} else {
			c.OK = true
			if n := len(c.Attempts); n > 0 && c.Attempts[n-1].FP != "" {
				used[c.Attempts[n-1].FP] = true
			}
		}
		emit(c)
		if c.OK && len(used) >= wantTokens {
			reason = fmt.Sprintf("%d tokens used", len(used))
			break
		}
		time.Sleep(interval)
	}
	emit(doneLine{Event: "done", Calls: calls, Failed: failed, Tokens: len(used), Reason: reason})
	if failed > 0 || len(used) < wantTokens {
		return 1
	}
	return 0
}

type callKey struct{}

// callRecord collects the attempts of one call; the SDK's background token refreshes run
// concurrently, so it is locked.
type callRecord struct {
	mu       sync.Mutex
	attempts []attempt
}

func (r *callRecord) add(a attempt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts = append(r.attempts, a)
}

func (r *callRecord) list() []attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]attempt(nil), r.attempts...)
}

// observer forwards requests unchanged. For a workspace request it notes the bearer token's
// fingerprint and remaining life; for an answer of the metadata service it notes each new token
// and the expiry the server reported.
type observer struct {
	next http.RoundTripper

	mu     sync.Mutex
	served map[string]bool
}

func (o *observer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("X-Databricks-Metadata-Version") != "" {
		return o.metadata(req)
	}
	a := attempt{At: time.Now(), LeftMs: -1}
	if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
		a.FP = fingerprint(tok)
		if exp := jwtExp(tok); exp > 0 {
			a.LeftMs = time.Unix(exp, 0).Sub(a.At).Milliseconds()
		}
	}
	resp, err := o.next.RoundTrip(req)
	if err != nil {
		a.Error = err.Error()
	} else {
		a.Status = resp.StatusCode
	}
	if rec, ok := req.Context().Value(callKey{}).(*callRecord); ok {
		rec.add(a)
	}
	return resp, err
}

// metadata passes a token request through and reads its answer (then hands the SDK the same bytes).
func (o *observer) metadata(req *http.Request) (*http.Response, error) {
	resp, err := o.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var m struct {
		AccessToken string      `json:"access_token"`
		ExpiresOn   json.Number `json:"expires_on"`
	}
	if json.Unmarshal(body, &m) == nil && m.AccessToken != "" {
		fp := fingerprint(m.AccessToken)
		o.mu.Lock()
		seen := o.served[fp]
		o.served[fp] = true
		o.mu.Unlock()
		if !seen {
			expiresOn, _ := m.ExpiresOn.Int64()
			emit(tokenLine{Event: "token", At: time.Now(), FP: fp, ExpiresOn: expiresOn, Exp: jwtExp(m.AccessToken)})
		}
	}
	return resp, nil
}

// fingerprint identifies a token without revealing it: the first 12 hex digits of its SHA-256.
func fingerprint(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return fmt.Sprintf("%x", sum[:6])
}

// jwtExp reads a JWT's exp claim without verifying it; 0 when tok is not a JWT with one.
func jwtExp(tok string) int64 {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return 0
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil {
		return 0
	}
	return c.Exp
}

func durationEnv(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		fmt.Fprintf(os.Stderr, "%s: %q is not a positive duration; using %s\n", name, v, def)
		return def
	}
	return d
}
