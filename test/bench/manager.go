package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dbtoken/databricks-token-operator/internal/testenv/procstat"
)

// buildManager compiles ./cmd/manager into dir.
func buildManager(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "manager")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/manager")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/manager: %w\n%s", err, out)
	}
	return bin, nil
}

// manager is one manager binary running as a child process. Its output goes to a log file; Go's
// GC trace (GODEBUG=gctrace=1, one line per collection on stderr) is parsed for heap sizes,
// because the manager serves no pprof and the benchmark runs it with metrics off.
type manager struct {
	name    string
	cmd     *exec.Cmd
	probe   string
	logPath string
	logFile *os.File
	out     *managerOutput
	sampler *procstat.Sampler

	started time.Time // process launched
	readyAt time.Time // /readyz answered 200

	done    chan struct{}
	waitErr error
}

// managerArgs are the flags the benchmark always passes: loopback token hosts, metrics off, a
// free health port. Everything else is the manager's default unless -manager-args says otherwise.
func managerArgs(kubeconfig, probe string, extra []string) []string {
	return append([]string{
		"--kubeconfig", kubeconfig,
		"--allowed-token-hosts=127.0.0.1,localhost",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=" + probe,
	}, extra...)
}

// startManager launches the binary and waits until /readyz answers. A free port can be taken
// between probing and binding; then the manager exits at once and another port is tried.
func startManager(ctx context.Context, bin, kubeconfig, logDir, name string, extra, env []string, sampleEvery time.Duration) (*manager, error) {
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		m, err := launchManager(bin, kubeconfig, logDir, fmt.Sprintf("%s-%d", name, attempt), extra, env, sampleEvery)
		if err != nil {
			return nil, err
		}
		if lastErr = m.waitReady(ctx, 60*time.Second); lastErr == nil {
			return m, nil
		}
		m.kill()
		if !m.out.contains("address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("manager %s did not become ready: %w", name, lastErr)
}

func launchManager(bin, kubeconfig, logDir, name string, extra, env []string, sampleEvery time.Duration) (*manager, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &manager{name: name, probe: "127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{}),
		logPath: filepath.Join(logDir, name+".log")}
	if m.logFile, err = os.Create(m.logPath); err != nil {
		return nil, err
	}
	m.out = &managerOutput{w: m.logFile}
	m.cmd = exec.Command(bin, managerArgs(kubeconfig, m.probe, extra)...)
	m.cmd.Stdout = m.out
	m.cmd.Stderr = m.out
	m.cmd.Env = append(append(os.Environ(), env...), "GODEBUG="+withGCTrace(os.Getenv("GODEBUG")))
	// Own process group: a Ctrl-C reaches only the benchmark, which stops the manager in order.
	// Pdeathsig: if the benchmark dies without cleaning up, the kernel kills the manager.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		m.logFile.Close()
		return nil, fmt.Errorf("starting the manager: %w", err)
	}
	m.started = time.Now()
	m.sampler = procstat.Start(m.cmd.Process.Pid, sampleEvery)
	go func() {
		m.waitErr = m.cmd.Wait()
		m.logFile.Close()
		close(m.done)
	}()
	return m, nil
}

func withGCTrace(godebug string) string {
	if godebug == "" {
		return "gctrace=1"
	}
	return godebug + ",gctrace=1"
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (m *manager) pid() int { return m.cmd.Process.Pid }

// waitReady polls /readyz until it answers 200, the process exits or timeout passes.
func (m *manager) waitReady(ctx context.Context, timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := m.exited(); err != nil {
			return err
		}
		resp, err := hc.Get("http://" + m.probe + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				m.readyAt = time.Now()
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("/readyz on %s did not answer 200 within %s (log: %s)", m.probe, timeout, m.logPath)
}

// exited returns an error when the process is no longer running.
func (m *manager) exited() error {
	select {
	case <-m.done:
		return fmt.Errorf("manager %s exited (%v); last log lines:\n%s", m.name, m.waitErr, m.out.tail(3000))
	default:
		return nil
	}
}

// stop sends SIGTERM, as the kubelet does, and waits for the exit (SIGKILL after 30 s).
func (m *manager) stop() (time.Duration, error) {
	if m == nil {
		return 0, nil
	}
	t0 := time.Now()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		m.kill()
		return time.Since(t0), fmt.Errorf("manager %s did not exit within 30s of SIGTERM; killed", m.name)
	}
	m.sampler.Stop()
	if m.waitErr != nil {
		return time.Since(t0), fmt.Errorf("manager %s exited with %v after SIGTERM (log: %s)", m.name, m.waitErr, m.logPath)
	}
	return time.Since(t0), nil
}

// kill ends the process at once and waits for it.
func (m *manager) kill() {
	if m == nil {
		return
	}
	select {
	case <-m.done:
	default:
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.sampler.Stop()
}

// gcLine is one parsed GODEBUG=gctrace=1 line: heap at the start of the collection, at its end,
// the live heap it marked, and the goal for the next one (MiB, as the runtime prints them).
type gcLine struct {
	At                             time.Time
	HeapStart, HeapEnd, Live, Goal int64
}

var gcTraceRE = regexp.MustCompile(`^gc \d+ @.*: .* (\d+)->(\d+)->(\d+) MB, (\d+) MB goal`)

func parseGCLine(line string, at time.Time) (gcLine, bool) {
	m := gcTraceRE.FindStringSubmatch(line)
	if m == nil {
		return gcLine{}, false
	}
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	return gcLine{At: at, HeapStart: n(m[1]), HeapEnd: n(m[2]), Live: n(m[3]), Goal: n(m[4])}, true
}

// managerOutput writes the manager's output to its log file, keeps a tail for error messages
// and collects the GC trace.
type managerOutput struct {
	w io.Writer

	mu      sync.Mutex
	partial []byte
	tailBuf []byte
	gcs     []gcLine
	seen    map[string]bool
}

func (o *managerOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = o.w.Write(p)
	o.tailBuf = append(o.tailBuf, p...)
	if len(o.tailBuf) > 64<<10 {
		o.tailBuf = append([]byte(nil), o.tailBuf[len(o.tailBuf)-32<<10:]...)
	}
	o.partial = append(o.partial, p...)
	now := time.Now()
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		line := string(o.partial[:i])
		o.partial = o.partial[i+1:]
		if g, ok := parseGCLine(line, now); ok {
			o.gcs = append(o.gcs, g)
		}
		if strings.Contains(line, "address already in use") {
			if o.seen == nil {
				o.seen = map[string]bool{}
			}
			o.seen["address already in use"] = true
		}
	}
	return len(p), nil
}

func (o *managerOutput) contains(s string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[s]
}

func (o *managerOutput) tail(n int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tailBuf) <= n {
		return string(o.tailBuf)
	}
	return "…" + string(o.tailBuf[len(o.tailBuf)-n:])
}

// heapStats summarises the GC trace in [from, to]: the live heap after the last collection, the
// largest live heap, and the largest heap at the start of a collection (about the peak heap).
type heapStats struct {
	GCs           int
	LastLiveMiB   int64
	MaxLiveMiB    int64
	MaxHeapMiB    int64
	LastGCAgoSecs float64
}

func (o *managerOutput) heap(from, to time.Time) heapStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	var h heapStats
	var last *gcLine
	for i := range o.gcs {
		g := &o.gcs[i]
		if g.At.Before(from) || g.At.After(to) {
			continue
		}
		h.GCs++
		h.MaxLiveMiB = max(h.MaxLiveMiB, g.Live)
		h.MaxHeapMiB = max(h.MaxHeapMiB, g.HeapStart)
		last = g
	}
	if last != nil {
		h.LastLiveMiB = last.Live
		h.LastGCAgoSecs = to.Sub(last.At).Seconds()
	}
	return h
}
