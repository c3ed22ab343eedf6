package longruns

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/dbtoken/databricks-token-operator/internal/tokenserver"
	"github.com/dbtoken/databricks-token-operator/test/idp"
	"github.com/dbtoken/databricks-token-operator/test/secretvolume"
	"github.com/dbtoken/databricks-token-operator/test/workspace"
)

const (
	clientID     = "dbt-longruns-sp"
	clientSecret = "longruns-client-secret-value"
	pathSecret   = "0d9c2f4e-7a1b-4e3c-8f5d-6b2a9c1e7d40"
	// expiryTolerance: the operator computes the expiry as (its clock before the request) +
	// expires_in and writes whole seconds, so the served expires_on may be up to this much
	// before the token's exp, never after.
	expiryTolerance = 2 * time.Second
)

// timing scales every duration of a run with the token lifetime L, keeping the proportions of
// production (L = 60 min, renewBefore = 30 min, kubelet delay ≤ 2 min, server margin 30 s): the
// old token stays on disk at most renewBefore − propMax = L/3 before expiry, which is more than
// the server's margin L/4, as docs/long-runs.md requires of a real deployment.
type timing struct {
	lifetime     time.Duration // the IdP's token lifetime
	renewBefore  time.Duration // the rotator mints at exp − renewBefore (minus up to 10% jitter)
	propMin      time.Duration // and publishes after a delay in [propMin, propMax], like the kubelet
	propMax      time.Duration
	minRemaining time.Duration // the token server's margin
	interval     time.Duration // between two consumer calls
	duration     time.Duration // of the consumer's run
}

func timingFor(l time.Duration) timing {
	t := timing{
		lifetime:     l,
		renewBefore:  l / 2,
		propMin:      l / 20,
		propMax:      l / 6,
		minRemaining: l / 4,
		interval:     l / 120,
		duration:     3*l + l/4,
	}
	if t.interval < 200*time.Millisecond {
		t.interval = 200 * time.Millisecond
	}
	return t
}

// breakage turns the real server into a broken one, for the tests that prove the harness fails.
type breakage func(next http.Handler) http.Handler

// run is one harness run: its own IdP, workspace, Secret volume, rotator, token server and
// consumer process.
type run struct {
	t       *testing.T
	tm      timing
	idp     *idp.Server
	ws      *workspace.Server
	vol     *secretvolume.Dir
	cc      clientcredentials.Config
	logs    bytes.Buffer // the token server's log
	logsMu  sync.Mutex
	started time.Time

	mu          sync.Mutex
	findings    []string
	found       chan struct{} // closed at the first finding
	tokens      map[string]tokenInfo
	versions    map[string]string // Secret version → token hash
	rotations   []rotation
	validations []validation
	served      []served
	calls       []call
	output      []string // the consumer's raw output, to check for leaks
}

type tokenInfo struct {
	value string
	exp   time.Time // the JWT's exp claim, read here independently of the server
}

type rotation struct {
	minted, published time.Time
	version, hash     string
}

// validation is one token check by the workspace: a request of the consumer.
type validation struct {
	at   time.Time
	hash string
	err  error
}

// served is one answer of the token server.
type served struct {
	start, end    time.Time
	before, after string // Secret versions current when the request came and when it left
	status        int
	hash          string
	expiresOn     int64
}

func hashOf(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:6])
}

func (r *run) finding(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.findings) == 0 {
		close(r.found)
	}
	if len(r.findings) < 50 {
		r.findings = append(r.findings, fmt.Sprintf("%s: ", time.Since(r.started).Truncate(time.Millisecond))+fmt.Sprintf(format, args...))
	}
}

// ValidateToken is the workspace's token check, recorded: the IdP's own validation (signature,
// exp, nbf against the real clock), so "valid" means valid at the moment the request arrived.
func (r *run) ValidateToken(tok string) (idp.Claims, error) {
	c, err := r.idp.ValidateToken(tok)
	r.mu.Lock()
	r.validations = append(r.validations, validation{at: time.Now(), hash: hashOf(tok), err: err})
	r.mu.Unlock()
	if err != nil {
		r.finding("the workspace got a token the IdP refuses: %v", err)
	}
	return c, err
}

// mint gets a token from the IdP as the operator does, and the expiry the operator would write:
// its clock before the request plus expires_in.
func (r *run) mint(ctx context.Context) (string, time.Time, error) {
	issued := time.Now()
	tok, err := r.cc.Token(context.WithValue(ctx, oauth2.HTTPClient, r.idp.Client()))
	if err != nil {
		return "", time.Time{}, err
	}
	expiresIn, ok := tok.Extra("expires_in").(float64)
	if !ok {
		return "", time.Time{}, fmt.Errorf("no expires_in in the IdP's answer")
	}
	claims := jwt.RegisteredClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok.AccessToken, &claims); err != nil || claims.ExpiresAt == nil {
		return "", time.Time{}, fmt.Errorf("the IdP's token has no exp: %v", err)
	}
	r.mu.Lock()
	r.tokens[hashOf(tok.AccessToken)] = tokenInfo{value: tok.AccessToken, exp: claims.ExpiresAt.Time}
	r.mu.Unlock()
	return tok.AccessToken, issued.Add(time.Duration(expiresIn) * time.Second), nil
}

func (r *run) publish(tok string, exp time.Time) error {
	err := r.vol.Update(secretvolume.Strings(map[string]string{
		"DATABRICKS_HOST":             r.ws.URL(),
		"DATABRICKS_TOKEN":            tok,
		"DATABRICKS_TOKEN_EXPIRES_AT": exp.UTC().Format(time.RFC3339),
	}))
	if err == nil {
		r.mu.Lock()
		r.versions[r.vol.Version()] = hashOf(tok)
		r.mu.Unlock()
	}
	return err
}

// rotate plays the operator and the kubelet: a new token at exp − renewBefore (up to 10% of
// renewBefore earlier), on disk after the propagation delay.
func (r *run) rotate(ctx context.Context, exp time.Time) {
	for {
		jitter := time.Duration(rand.Int64N(int64(r.tm.renewBefore/10) + 1))
		if !sleepUntil(ctx, exp.Add(-r.tm.renewBefore-jitter)) {
			return
		}
		minted := time.Now()
		tok, next, err := r.mint(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.finding("minting a token: %v", err)
			}
			return
		}
		delay := r.tm.propMin + time.Duration(rand.Int64N(int64(r.tm.propMax-r.tm.propMin)+1))
		if !sleepUntil(ctx, time.Now().Add(delay)) {
			return
		}
		if err := r.publish(tok, next); err != nil {
			r.finding("publishing a version: %v", err)
			return
		}
		r.mu.Lock()
		r.rotations = append(r.rotations, rotation{minted: minted, published: time.Now(), version: r.vol.Version(), hash: hashOf(tok)})
		r.mu.Unlock()
		exp = next
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ServeHTTP records every answer of the token server and checks it as it happens: a 200 must
// carry the token of the Secret version current when the request came or when it left (no
// caching across a rotation), with expires_on equal to that token's exp (within the operator's
// rounding, never later), and at least the server's margin of life left.
func (r *run) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s := served{start: time.Now(), before: r.vol.Version()}
		rec := &bufferedResponse{header: http.Header{}}
		next.ServeHTTP(rec, req)
		s.end, s.after, s.status = time.Now(), r.vol.Version(), rec.status
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body.Bytes())

		if rec.status != http.StatusOK {
			r.finding("the token server answered %d: %s", rec.status, rec.body.String())
		} else {
			var body struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
				ExpiresOn   int64  `json:"expires_on"`
			}
			if err := json.Unmarshal(rec.body.Bytes(), &body); err != nil {
				r.finding("the token server's 200 is not JSON: %v", err)
			}
			s.hash, s.expiresOn = hashOf(body.AccessToken), body.ExpiresOn
			r.mu.Lock()
			info, known := r.tokens[s.hash]
			wantBefore, wantAfter := r.versions[s.before], r.versions[s.after]
			r.mu.Unlock()
			exp := time.Unix(body.ExpiresOn, 0)
			switch {
			case !known:
				r.finding("the token server handed out a token the IdP never issued")
			case s.hash != wantBefore && s.hash != wantAfter:
				r.finding("the token server handed out a token of an older Secret version (cached past a rotation): served %s, on disk %s", s.hash, wantAfter)
			case exp.After(info.exp) || exp.Before(info.exp.Add(-expiryTolerance)):
				r.finding("the token server reported expires_on %s for a token that expires at %s", exp.UTC().Format(time.RFC3339), info.exp.UTC().Format(time.RFC3339))
			case info.exp.Sub(s.end) < r.tm.minRemaining:
				r.finding("the token server handed out a token with %s left, less than its margin %s", info.exp.Sub(s.end), r.tm.minRemaining)
			case body.TokenType != "Bearer":
				r.finding("token_type %q", body.TokenType)
			}
		}
		r.mu.Lock()
		r.served = append(r.served, s)
		r.mu.Unlock()
	})
}

type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (r *run) Write(p []byte) (int, error) {
	r.logsMu.Lock()
	defer r.logsMu.Unlock()
	return r.logs.Write(p)
}

// result is what a run observed.
type result struct {
	findings      []string
	calls         int
	okCalls       int
	rotations     int
	tokensUsed    int           // distinct tokens the workspace saw from the consumer
	worstLifeLeft time.Duration // the least life a token had when the workspace got it
	served        int
	elapsed       time.Duration
}

// runHarness runs one harness for tm.duration, or until the first finding when stopEarly.
func runHarness(t *testing.T, tm timing, broken breakage, stopEarly bool) result {
	t.Helper()
	r := &run{t: t, tm: tm, found: make(chan struct{}), tokens: map[string]tokenInfo{}, versions: map[string]string{}, started: time.Now()}

	var err error
	r.idp, err = idp.Start(idp.Options{TokenLifetime: tm.lifetime})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.idp.Close)
	r.idp.AddDatabricksClient(clientID, clientSecret)
	r.ws, err = workspace.Start(workspace.Options{Validator: r})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.ws.Close)
	r.cc = clientcredentials.Config{ClientID: clientID, ClientSecret: clientSecret, TokenURL: r.idp.URL() + "/oidc/v1/token",
		Scopes: []string{"all-apis"}, AuthStyle: oauth2.AuthStyleInHeader}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tok, exp, err := r.mint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "secret"), 0o755); err != nil {
		t.Fatal(err)
	}
	// An empty first version; publish writes the first token as the next one.
	if r.vol, err = secretvolume.New(filepath.Join(dir, "secret"), nil); err != nil {
		t.Fatal(err)
	}
	if err := r.publish(tok, exp); err != nil {
		t.Fatal(err)
	}

	// The token server, configured as the sidecar sample configures it.
	h, err := tokenserver.New(tokenserver.Options{
		Volume:       tokenserver.Volume{Dir: r.vol.Path(), TokenKey: "DATABRICKS_TOKEN", ExpiresKey: "DATABRICKS_TOKEN_EXPIRES_AT", HostKey: "DATABRICKS_HOST"},
		PathSecret:   pathSecret,
		MinRemaining: tm.minRemaining,
		Logger:       slog.New(slog.NewJSONHandler(r, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	var handler http.Handler = h
	if broken != nil {
		handler = broken(handler)
	}
	ln, err := tokenserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan error, 1)
	go func() {
		srvDone <- tokenserver.Serve(ctx, ln, tokenserver.NewServer(r.record(handler), log.New(io.Discard, "", 0)), 0)
	}()

	rotDone := make(chan struct{})
	go func() { defer close(rotDone); r.rotate(ctx, exp) }()

	// The consumer: this test binary again, with the environment a pod would give dbt.
	caFile := filepath.Join(dir, "workspace-ca.pem")
	if err := os.WriteFile(caFile, r.ws.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	cmd := exec.CommandContext(cctx, os.Args[0])
	cmd.Env = []string{
		consumerEnv + "=go-sdk",
		consumerDurationEnv + "=" + tm.duration.String(),
		consumerIntervalEnv + "=" + tm.interval.String(),
		"HOME=" + dir, // no ~/.databrickscfg of the developer's
		"DATABRICKS_HOST=" + r.ws.URL(),
		"DATABRICKS_AUTH_TYPE=metadata-service",
		"DATABRICKS_METADATA_SERVICE_URL=http://" + ln.Addr().String() + tokenserver.TokenPathPrefix + pathSecret,
		"SSL_CERT_FILE=" + caFile, // how a Go client trusts a private CA: crypto/x509 reads it
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			var c call
			r.mu.Lock()
			r.output = append(r.output, line)
			r.mu.Unlock()
			if err := json.Unmarshal([]byte(line), &c); err != nil {
				r.finding("consumer printed %q", line)
				continue
			}
			switch {
			case c.Fatal != "":
				r.finding("the SDK client could not be configured: %s", c.Fatal)
			case !c.OK:
				r.finding("a workspace call failed: %s", c.Error)
			}
			r.mu.Lock()
			r.calls = append(r.calls, c)
			r.mu.Unlock()
		}
	}()
	if stopEarly {
		go func() {
			select {
			case <-r.found:
				ccancel()
			case <-cctx.Done():
			}
		}()
	}
	<-readDone
	waitErr := cmd.Wait()
	cancel()
	<-rotDone
	if err := <-srvDone; err != nil {
		t.Errorf("token server: %v", err)
	}
	if waitErr != nil && cctx.Err() == nil {
		r.finding("the consumer exited with %v: %s", waitErr, stderr.String())
	}

	// No token in anything a user would read: the consumer's output and errors, the server's log.
	r.logsMu.Lock()
	serverLog := r.logs.String()
	r.logsMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	consumerOut := strings.Join(r.output, "\n") + stderr.String()
	for _, info := range r.tokens {
		if strings.Contains(consumerOut, info.value) || strings.Contains(serverLog, info.value) {
			r.findings = append(r.findings, "a token appears in the consumer's output or the server's log")
			break
		}
	}
	if strings.Contains(serverLog, pathSecret) {
		r.findings = append(r.findings, "the path secret appears in the server's log")
	}

	res := result{findings: slices.Clone(r.findings), calls: len(r.calls), rotations: len(r.rotations), served: len(r.served), elapsed: time.Since(r.started)}
	used := map[string]bool{}
	res.worstLifeLeft = time.Duration(1<<63 - 1)
	for _, v := range r.validations {
		if v.err != nil {
			continue
		}
		used[v.hash] = true
		if left := r.tokens[v.hash].exp.Sub(v.at); left < res.worstLifeLeft {
			res.worstLifeLeft = left
		}
	}
	for _, c := range r.calls {
		if c.OK {
			res.okCalls++
		}
	}
	res.tokensUsed = len(used)
	t.Logf("token server log:\n%s", serverLog)
	return res
}
