package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/dbtoken/databricks-token-operator/internal/testenv"
)

// manager is one manager binary running as a child process. Its output goes to a log file; Go's
// GC trace (GODEBUG=gctrace=1, one line per collection on stderr) is parsed for heap sizes,
// because the manager serves no pprof and the benchmark runs it with metrics off.
type manager struct {
	*testenv.Manager // Name is manager-<n>-<launch>, as is its log file
	logPath          string
	out              *managerOutput
}

// startManager launches the manager binary against the control plane and waits until /readyz
// answers. The harness passes loopback token hosts, metrics off and a free health port; everything
// else is the manager's default unless -manager-args (extra) says otherwise. Its memory and CPU
// are sampled every sampleEvery from the launch on.
func startManager(ctx context.Context, cp *testenv.ControlPlane, logDir, name string, extra, env []string, sampleEvery time.Duration) (*manager, error) {
	outs := map[int]*managerOutput{}
	logPath := func(launch int) string { return filepath.Join(logDir, fmt.Sprintf("%s-%d.log", name, launch)) }
	m, err := cp.StartManager(ctx, testenv.ManagerOptions{
		Name: name,
		Args: extra,
		Env:  append(append([]string(nil), env...), "GODEBUG="+withGCTrace(os.Getenv("GODEBUG"))),
		Output: func(launch int) (io.Writer, error) {
			f, err := os.Create(logPath(launch))
			if err != nil {
				return nil, err
			}
			outs[launch] = &managerOutput{f: f}
			return outs[launch], nil
		},
		ReadyTimeout: 60 * time.Second,
		SampleEvery:  sampleEvery,
	})
	if err != nil {
		return nil, err
	}
	m.Name = fmt.Sprintf("%s-%d", name, m.Launch)
	return &manager{Manager: m, logPath: logPath(m.Launch), out: outs[m.Launch]}, nil
}

func withGCTrace(godebug string) string {
	if godebug == "" {
		return "gctrace=1"
	}
	return godebug + ",gctrace=1"
}

// stop sends SIGTERM, as the kubelet does, and waits for the exit (SIGKILL after 30 s).
func (m *manager) stop() (time.Duration, error) {
	if m == nil {
		return 0, nil
	}
	t0 := time.Now()
	err := m.Stop()
	if err != nil && !errors.Is(err, testenv.ErrKilled) {
		err = fmt.Errorf("%w (log: %s)", err, m.logPath)
	}
	return time.Since(t0), err
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

// managerOutput writes the manager's output to its log file and collects the GC trace.
type managerOutput struct {
	f *os.File

	mu      sync.Mutex
	partial []byte
	gcs     []gcLine
}

func (o *managerOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, _ = o.f.Write(p)
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
	}
	return len(p), nil
}

// Close closes the log file; the harness calls it once the process has exited.
func (o *managerOutput) Close() error { return o.f.Close() }

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
