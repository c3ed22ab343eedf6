package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dbtoken/databricks-token-operator/internal/testenv/procstat"
)

// StopGrace is how long Stop waits after SIGTERM before it kills the manager: the kubelet's
// default terminationGracePeriodSeconds.
const StopGrace = 30 * time.Second

// errorTail is how much of the manager's output an error quotes: enough for the lines that
// explain an exit, not so much that it buries the test's own message.
const errorTail = 4000

// ErrKilled is wrapped by Stop's error when the manager did not exit within StopGrace.
var ErrKilled = errors.New("killed")

// ManagerOptions says how to run one manager.
type ManagerOptions struct {
	// Name names the manager in errors.
	Name string
	// Args are added after the flags every manager gets (see StartManager); where a flag is
	// given twice the later one wins.
	Args []string
	// Env is added to this process's environment, for the manager only.
	Env []string
	// Output, when set, opens where one launch's output (stdout and stderr together) goes; it is
	// closed, if it is an io.Closer, once that process has exited. Launches are numbered from 1:
	// a launch whose health port was taken between choosing and binding it exits at once, and
	// the next one tries another port. Whatever Output says, the end of the output is kept for
	// error messages (Tail).
	Output func(launch int) (io.Writer, error)
	// ReadyTimeout bounds the wait for /readyz. Default 30s.
	ReadyTimeout time.Duration
	// SampleEvery, when positive, samples the manager's memory and CPU at that interval from its
	// launch on (Manager.Stats).
	SampleEvery time.Duration
}

// Manager is the manager binary running as a child process of this one.
type Manager struct {
	Name    string
	Launch  int      // which launch this is (see ManagerOptions.Output)
	Args    []string // its command line after the binary
	Probe   string   // host:port of its health probes
	Started time.Time
	ReadyAt time.Time         // when /readyz first answered 200
	Stats   *procstat.Sampler // nil unless ManagerOptions.SampleEvery was set

	cmd     *exec.Cmd
	tail    *tailBuffer
	done    chan struct{} // closed when the process has exited
	waitErr error         // cmd.Wait's result, valid after done
	grace   time.Duration
}

// StartManager runs the manager binary (ManagerBinary) against this control plane and waits until
// its /readyz answers 200. Every manager gets --kubeconfig for the admin user,
// --allowed-token-hosts=127.0.0.1,localhost (the test identity providers listen on loopback),
// --metrics-bind-address=0 and a free loopback --health-probe-bind-address, then opts.Args.
func (cp *ControlPlane) StartManager(ctx context.Context, opts ManagerOptions) (*Manager, error) {
	bin, err := cp.ManagerBinary(ctx)
	if err != nil {
		return nil, err
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 30 * time.Second
	}
	var lastErr error
	for launch := 1; launch <= 3; launch++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		probe := "127.0.0.1:" + strconv.Itoa(port)
		args := append([]string{
			"--kubeconfig", cp.Kubeconfig,
			"--allowed-token-hosts=127.0.0.1,localhost",
			"--metrics-bind-address=0",
			"--health-probe-bind-address=" + probe,
		}, opts.Args...)
		m, err := launchProcess(opts, launch, bin, args)
		if err != nil {
			return nil, err
		}
		m.Probe = probe
		if lastErr = m.waitReady(ctx, opts.ReadyTimeout); lastErr == nil {
			return m, nil
		}
		m.Kill()
		if !strings.Contains(m.tail.String(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("manager %s did not become ready: %w", opts.Name, lastErr)
}

// launchProcess starts bin with args and the options' environment and output.
func launchProcess(opts ManagerOptions, launch int, bin string, args []string) (*Manager, error) {
	m := &Manager{Name: opts.Name, Launch: launch, Args: args, tail: &tailBuffer{}, done: make(chan struct{}), grace: StopGrace}
	var out io.Writer = m.tail
	if opts.Output != nil {
		w, err := opts.Output(launch)
		if err != nil {
			return nil, err
		}
		out = &teeWriter{w: w, tail: m.tail}
	}
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = out, out
	if len(opts.Env) > 0 {
		m.cmd.Env = append(os.Environ(), opts.Env...)
	}
	m.cmd.SysProcAttr = childProcAttr()
	closeOutput := func() {
		if t, ok := out.(*teeWriter); ok {
			if c, ok := t.w.(io.Closer); ok {
				_ = c.Close()
			}
		}
	}
	if err := m.cmd.Start(); err != nil {
		closeOutput()
		return nil, fmt.Errorf("starting manager %s: %w", opts.Name, err)
	}
	m.Started = time.Now()
	if opts.SampleEvery > 0 {
		m.Stats = procstat.Start(m.cmd.Process.Pid, opts.SampleEvery)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		closeOutput()
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

// waitReady polls /readyz until it answers 200, the process exits, ctx ends or timeout passes.
func (m *Manager) waitReady(ctx context.Context, timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			return fmt.Errorf("exited before it was ready (%v); last log lines:\n%s", m.waitErr, m.Tail(errorTail))
		default:
		}
		resp, err := hc.Get("http://" + m.Probe + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				m.ReadyAt = time.Now()
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("/readyz on %s did not answer 200 within %s; last log lines:\n%s", m.Probe, timeout, m.Tail(errorTail))
}

// Pid is the manager's process ID.
func (m *Manager) Pid() int { return m.cmd.Process.Pid }

// Exited returns nil while the process runs, and an error that says how it ended otherwise.
func (m *Manager) Exited() error {
	select {
	case <-m.done:
		return fmt.Errorf("manager %s exited (%v); last log lines:\n%s", m.Name, m.waitErr, m.Tail(errorTail))
	default:
		return nil
	}
}

// Stop sends SIGTERM, as the kubelet does, and waits for the exit; after StopGrace it kills the
// process and returns an error wrapping ErrKilled. An exit status other than 0 is an error too.
func (m *Manager) Stop() error {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(m.grace):
		m.Kill()
		return fmt.Errorf("manager %s did not exit within %s of SIGTERM; %w", m.Name, m.grace, ErrKilled)
	}
	m.Stats.Stop()
	if m.waitErr != nil {
		return fmt.Errorf("manager %s exited with %v after SIGTERM", m.Name, m.waitErr)
	}
	return nil
}

// Kill ends the process at once and waits for it; after an exit it does nothing.
func (m *Manager) Kill() {
	select {
	case <-m.done:
	default:
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.Stats.Stop()
}

// Tail returns about the last n bytes of the manager's output.
func (m *Manager) Tail(n int) string {
	s := m.tail.String()
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// tailBuffer keeps the end of a process's output, bounded, so that a long run costs no memory.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 64<<10 {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-32<<10:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// teeWriter writes to the caller's output and to the tail. An error of the caller's writer does
// not stop the process's output from being read.
type teeWriter struct {
	w    io.Writer
	tail *tailBuffer
}

func (t *teeWriter) Write(p []byte) (int, error) {
	_, _ = t.w.Write(p)
	return t.tail.Write(p)
}

// LogBuffer collects output that goroutines write while a test reads it: a manager's Output, or a
// logger's sink.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
