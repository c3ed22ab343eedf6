package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/internal/tokenserver"
	"github.com/dbtoken/databricks-token-operator/test/secretvolume"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// The binary under test, built once by TestMain the way the image builds it.
var binary string

const (
	host           = "https://adb-1234567890123456.7.azuredatabricks.net"
	testPathSecret = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "token-server-bin-")
	if err == nil {
		// World-traversable, so the binary also runs as an unprivileged user.
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "token-server")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building token-server:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// jwt is a JWS-shaped token expiring at exp.
func jwt(exp time.Time) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." +
		enc.EncodeToString([]byte(fmt.Sprintf(`{"sub":"sp","exp":%d,"jti":"%d"}`, exp.Unix(), time.Now().UnixNano()))) + "." +
		enc.EncodeToString([]byte("sig"))
}

// volume creates a kubelet-style Secret volume in a directory any user may traverse.
func volume(t *testing.T, token string, exp time.Time) *secretvolume.Dir {
	t.Helper()
	dir, err := os.MkdirTemp("", "token-server-vol-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := secretvolume.New(dir, secretvolume.Strings(map[string]string{
		"DATABRICKS_HOST":             host,
		"DATABRICKS_TOKEN":            token,
		"DATABRICKS_TOKEN_EXPIRES_AT": exp.UTC().Format(time.RFC3339),
	}))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// process is a running token-server.
type process struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	stderr strings.Builder
	exited chan struct{}
}

func (p *process) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// start runs the binary with args (plus --listen 127.0.0.1:0 unless given) and waits for its
// "listening" line. uid >= 0 runs it as that user (needs root).
func start(t *testing.T, uid int, env []string, args ...string) *process {
	t.Helper()
	hasListen := false
	for _, a := range args {
		hasListen = hasListen || strings.HasPrefix(a, "--listen")
	}
	if !hasListen {
		args = append(args, "--listen=127.0.0.1:0")
	}
	p := &process{cmd: exec.Command(binary, args...), exited: make(chan struct{})}
	p.cmd.Env = env
	if uid >= 0 {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	pipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			var rec struct{ Msg, Address string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				addrc <- rec.Address
			}
		}
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			t.Errorf("token-server did not stop on SIGTERM")
		}
	})
	select {
	case p.addr = <-addrc:
	case <-p.exited:
		t.Fatalf("token-server exited: %s", p.logs())
	case <-time.After(10 * time.Second):
		t.Fatalf("token-server did not start: %s", p.logs())
	}
	return p
}

func get(t *testing.T, p *process) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+tokenserver.TokenPathPrefix+testPathSecret, nil)
	req.Header.Set(tokenserver.VersionHeader, "1")
	req.Header.Set(tokenserver.HostHeader, host)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, m
}

func env() []string { return []string{PathSecretEnv + "=" + testPathSecret} }

// TestServesAsNonRoot: the binary as the image runs it (uid 65532, like distroless nonroot; any
// unprivileged uid here) serves the Secret's token, and its probe passes.
func TestServesAsNonRoot(t *testing.T) {
	uid := -1
	if os.Geteuid() == 0 {
		uid = 65532
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok := jwt(exp)
	v := volume(t, tok, exp)
	p := start(t, uid, env(), "--secret-dir="+v.Path())
	status, m := get(t, p)
	if status != http.StatusOK || m["access_token"] != tok || m["expires_on"] != float64(exp.Unix()) {
		t.Fatalf("status %d, expires_on %v", status, m["expires_on"])
	}
	probe := exec.Command(binary, "probe", "--listen="+p.addr)
	if out, err := probe.CombinedOutput(); err != nil {
		t.Fatalf("probe failed: %v %s", err, out)
	}
	if strings.Contains(p.logs(), tok) || strings.Contains(p.logs(), testPathSecret) {
		t.Errorf("the log holds the token or the path secret:\n%s", p.logs())
	}
}

// TestUnreadableMountAsNonRoot: a Secret volume the server's user may not read is a 503 that says
// so, the probe fails with that reason, and the server stays up.
func TestUnreadableMountAsNonRoot(t *testing.T) {
	uid := -1
	if os.Geteuid() == 0 {
		uid = 65532
	}
	exp := time.Now().Add(time.Hour)
	v := volume(t, jwt(exp), exp)
	if err := os.Chmod(v.Path(), 0o700); err != nil {
		t.Fatal(err)
	}
	if uid < 0 {
		if err := os.Chmod(v.Path(), 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(v.Path(), 0o755) })
	}
	p := start(t, uid, env(), "--secret-dir="+v.Path())
	for range 3 {
		status, m := get(t, p)
		if status != http.StatusServiceUnavailable || m["error"] != tokenserver.CodeTokenUnavailable ||
			!strings.Contains(fmt.Sprint(m["error_description"]), "cannot be read") {
			t.Fatalf("got %d %v", status, m)
		}
	}
	out, err := exec.Command(binary, "probe", "--listen="+p.addr).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot be read") {
		t.Fatalf("probe: %v %s", err, out)
	}
	// Made readable: served, same process.
	if err := os.Chmod(v.Path(), 0o755); err != nil {
		t.Fatal(err)
	}
	if status, m := get(t, p); status != http.StatusOK {
		t.Fatalf("after fixing the mode: %d %v", status, m)
	}
}

// TestRefusesBadConfiguration: a non-loopback listen address, a missing or weak path secret, and
// unknown arguments stop the binary with a message.
func TestRefusesBadConfiguration(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"all interfaces", env(), []string{"--listen=0.0.0.0:0", "--secret-dir=/tmp"}, "127.0.0.1 only"},
		{"pod IP", env(), []string{"--listen=10.1.2.3:8765", "--secret-dir=/tmp"}, "127.0.0.1 only"},
		{"localhost name", env(), []string{"--listen=localhost:8765", "--secret-dir=/tmp"}, "127.0.0.1 only"},
		{"no path secret", nil, []string{"--secret-dir=/tmp"}, PathSecretEnv},
		{"short path secret", []string{PathSecretEnv + "=abc"}, []string{"--secret-dir=/tmp"}, "16 to 128"},
		{"bad key", env(), []string{"--secret-dir=/tmp", "--token-key=../x"}, "not a Secret key"},
		{"stray argument", env(), []string{"--secret-dir=/tmp", "serve"}, "unexpected arguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, tt.args...)
			cmd.Env = tt.env
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("started: %s", out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output lacks %q: %s", tt.want, out)
			}
			if strings.Contains(string(out), testPathSecret) {
				t.Errorf("the path secret is printed: %s", out)
			}
		})
	}
}

// TestResidentMemoryUnderLoad measures the server's peak RSS (VmHWM) while clients hammer it, and
// keeps it within the few MiB a sidecar should cost.
func TestResidentMemoryUnderLoad(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	v := volume(t, jwt(exp), exp)
	p := start(t, -1, env(), "--secret-dir="+v.Path())
	before := vmHWM(t, p.cmd.Process.Pid)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var served, busy, other int64
	var mu sync.Mutex
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer hc.CloseIdleConnections()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+tokenserver.TokenPathPrefix+testPathSecret, nil)
				req.Header.Set(tokenserver.VersionHeader, "1")
				req.Header.Set(tokenserver.HostHeader, host)
				resp, err := hc.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				switch resp.StatusCode {
				case http.StatusOK:
					served++
				case http.StatusServiceUnavailable:
					busy++
				default:
					other++
				}
				mu.Unlock()
			}
		}()
	}
	// Rotate the Secret meanwhile, as the kubelet would (far more often).
	for ctx.Err() == nil {
		e := time.Now().Add(time.Hour)
		if err := v.Update(secretvolume.Strings(map[string]string{"DATABRICKS_HOST": host, "DATABRICKS_TOKEN": jwt(e), "DATABRICKS_TOKEN_EXPIRES_AT": e.UTC().Format(time.RFC3339)})); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	after := vmHWM(t, p.cmd.Process.Pid)
	t.Logf("VmHWM %d KiB at start, %d KiB after 3 s of 64 clients (%d served, %d busy, %d other)", before, after, served, busy, other)
	if other != 0 || served == 0 {
		t.Errorf("unexpected answers: %d served, %d other", served, other)
	}
	if after > 24<<10 {
		t.Errorf("peak RSS %d KiB; a token sidecar should stay within a few MiB", after)
	}
}

func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

func TestDefaultExpiresAtKeyIsTheOperators(t *testing.T) {
	if defaultExpiresAtKey != v1alpha1.DefaultExpiresAtKey {
		t.Errorf("--expires-at-key defaults to %q, but the operator writes the expiry under %q", defaultExpiresAtKey, v1alpha1.DefaultExpiresAtKey)
	}
}
