package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// managerProc is one manager binary running as a child process.
type managerProc struct {
	name  string
	cmd   *exec.Cmd
	logs  *syncBuffer
	probe string // host:port of the health probes

	done    chan struct{} // closed when the process has exited
	waitErr error         // cmd.Wait's result, valid after done
	stopped bool          // stop was called
}

// baseManagerArgs are the flags every e2e manager runs with: loopback only, short exchanges,
// debug logs (routine lines must stay free of secrets too).
func baseManagerArgs(probe string) []string {
	return []string{
		"--kubeconfig", kubeconfig,
		"--allowed-token-hosts=127.0.0.1,localhost",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=" + probe,
		"--zap-log-level=debug",
		"--token-timeout=5s",
	}
}

// startManager starts the manager binary with the base flags plus extra, waits until /readyz
// answers 200 and registers a cleanup that kills it if still running, checks its logs for
// secret material and prints the tail of its logs if the test failed.
func startManager(t *testing.T, name string, extra ...string) *managerProc {
	t.Helper()
	var lastErr error
	// A free port can be taken between probing and binding; then the manager exits at once and
	// we try another.
	for attempt := 0; attempt < 3; attempt++ {
		m, err := launchManager(name, extra)
		if err != nil {
			t.Fatalf("starting manager %s: %v", name, err)
		}
		t.Cleanup(func() { m.cleanup(t) })
		if lastErr = m.waitReady(30 * time.Second); lastErr == nil {
			return m
		}
		m.kill()
		if !strings.Contains(m.logs.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("manager %s did not become ready: %v", name, lastErr)
	return nil
}

func launchManager(name string, extra []string) (*managerProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &managerProc{name: name, logs: &syncBuffer{}, probe: "127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{})}
	m.cmd = exec.Command(managerBin, append(baseManagerArgs(m.probe), extra...)...)
	m.cmd.Stdout = m.logs
	m.cmd.Stderr = m.logs
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		close(m.done)
	}()
	return m, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls /readyz until it answers 200, the process exits or timeout passes.
func (m *managerProc) waitReady(timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			return fmt.Errorf("exited before it was ready (%v); logs:\n%s", m.waitErr, tail(m.logs.String(), 4000))
		default:
		}
		resp, err := hc.Get("http://" + m.probe + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("/readyz on %s did not answer 200 within %s; logs:\n%s", m.probe, timeout, tail(m.logs.String(), 4000))
}

// stop sends SIGTERM, as the kubelet does, and waits for a clean exit.
func (m *managerProc) stop(t *testing.T) {
	t.Helper()
	m.stopped = true
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		m.kill()
		t.Fatalf("manager %s did not exit within 30s of SIGTERM", m.name)
	}
	if m.waitErr != nil {
		t.Errorf("manager %s exited with %v after SIGTERM; logs:\n%s", m.name, m.waitErr, tail(m.logs.String(), 4000))
	}
}

// kill ends the process at once and waits for it.
func (m *managerProc) kill() {
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Kill()
	<-m.done
}

// running reports whether the process has not exited.
func (m *managerProc) running() bool {
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

func (m *managerProc) cleanup(t *testing.T) {
	m.kill() // no leaked processes; a no-op after stop
	logs := m.logs.String()
	if msg := leakIn(logs); msg != "" {
		t.Errorf("manager %s: %s", m.name, msg)
	}
	if t.Failed() {
		t.Logf("manager %s (%s) logs, last 6000 bytes:\n%s", m.name, strings.Join(m.cmd.Args[1:], " "), tail(logs, 6000))
	}
}

// count returns how many log lines contain s.
func (m *managerProc) count(s string) int {
	return strings.Count(m.logs.String(), s)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
