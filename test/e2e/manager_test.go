package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/internal/testenv"
)

// managerProc is one manager binary running as a child process, with all it logged.
type managerProc struct {
	*testenv.Manager
	logs *testenv.LogBuffer
}

// startManager starts the manager binary with the e2e flags plus extra, waits until /readyz
// answers 200 and registers a cleanup that kills it if still running, checks its logs for
// secret material and prints the tail of its logs if the test failed.
func startManager(t *testing.T, name string, extra ...string) *managerProc {
	t.Helper()
	var (
		m        *testenv.Manager
		launches []*testenv.LogBuffer // the harness relaunches when the probe port was taken
	)
	t.Cleanup(func() {
		if m != nil {
			m.Kill() // no leaked processes; a no-op after stop
		}
		for i, logs := range launches {
			text := logs.String()
			if msg := leakIn(text); msg != "" {
				t.Errorf("manager %s: %s", name, msg)
			}
			if t.Failed() {
				cmdline := "not ready"
				if m != nil && m.Launch == i+1 {
					cmdline = strings.Join(m.Args, " ")
				}
				t.Logf("manager %s (%s) logs, last 6000 bytes:\n%s", name, cmdline, tail(text, 6000))
			}
		}
	})
	var err error
	m, err = controlPlane.StartManager(context.Background(), testenv.ManagerOptions{
		Name: name,
		// Short exchanges, and debug logs: routine lines must stay free of secrets too.
		Args: append([]string{"--zap-log-level=debug", "--token-timeout=5s"}, extra...),
		Output: func(int) (io.Writer, error) {
			launches = append(launches, &testenv.LogBuffer{})
			return launches[len(launches)-1], nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &managerProc{Manager: m, logs: launches[m.Launch-1]}
}

// stop sends SIGTERM, as the kubelet does, and waits for a clean exit.
func (m *managerProc) stop(t *testing.T) {
	t.Helper()
	err := m.Stop()
	if errors.Is(err, testenv.ErrKilled) {
		t.Fatal(err)
	}
	if err != nil {
		t.Errorf("%v; logs:\n%s", err, tail(m.logs.String(), 4000))
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

// lineTime is the time of the first log line containing s (the manager logs JSON with "ts", an
// RFC 3339 time in whole seconds).
func (m *managerProc) lineTime(t *testing.T, s string) time.Time {
	t.Helper()
	for _, line := range strings.Split(m.logs.String(), "\n") {
		if !strings.Contains(line, s) {
			continue
		}
		var rec struct {
			TS time.Time `json:"ts"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.TS.IsZero() {
			t.Fatalf("log line without a ts: %.200s", line)
		}
		return rec.TS
	}
	t.Fatalf("%s never logged %q", m.Name, s)
	return time.Time{}
}
