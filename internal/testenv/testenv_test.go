package testenv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/internal/testenv/procstat"
)

// The tests that start a control plane run one after another (no t.Parallel): the checks that
// nothing is left running look at every etcd and kube-apiserver this process has started.

func TestModuleRootFromAnySubdirectory(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"go.mod", "config/crd/bases", "cmd/manager", "hack/setup-envtest.sh"} {
		if _, err := os.Stat(filepath.Join(root, rel)); err != nil {
			t.Errorf("module root %s has no %s: %v", root, rel, err)
		}
	}

	t.Chdir(filepath.Join(root, "config", "crd", "bases"))
	if got, err := ModuleRoot(); err != nil || got != root {
		t.Errorf("from config/crd/bases: ModuleRoot() = %q, %v; want %q", got, err, root)
	}

	// A go.mod of another module is not this one.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "go.mod"), []byte("module example.com/other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(other)
	if _, err := ModuleRoot(); err == nil || !strings.Contains(err.Error(), "run from inside the databricks-token-operator repository") {
		t.Errorf("outside the repository: err = %v", err)
	}
}

func TestStartSaysHowToGetTheBinaries(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", "")
	_, err := Start(context.Background(), Options{})
	if err == nil {
		t.Fatal("Start without KUBEBUILDER_ASSETS succeeded")
	}
	for _, want := range []string{"KUBEBUILDER_ASSETS is not set", "make test", "hack/setup-envtest.sh"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	empty := t.TempDir()
	_, err = Start(context.Background(), Options{AssetsDir: empty})
	if err == nil || !strings.Contains(err.Error(), "no etcd in the envtest assets directory "+empty) || !strings.Contains(err.Error(), "hack/setup-envtest.sh") {
		t.Errorf("with an empty assets directory: err = %v", err)
	}
}

func TestStartLeavesNothingRunningOnError(t *testing.T) {
	assets := requireAssets(t)
	dir := t.TempDir()
	_, err := Start(context.Background(), Options{AssetsDir: assets, CRDPaths: []string{filepath.Join(dir, "no-such-crds")}, Dir: dir})
	if err == nil {
		t.Fatal("Start with a missing CRD path succeeded")
	}
	if !strings.Contains(err.Error(), "no-such-crds") {
		t.Errorf("the error does not name the missing path: %v", err)
	}
	assertNoControlPlaneRunning(t)
	if _, err := os.Stat(filepath.Join(dir, "kubeconfig")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a kubeconfig was left behind: %v", err)
	}
}

func TestControlPlane(t *testing.T) {
	requireAssets(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	cp, err := Start(ctx, Options{
		// Visible through the API: Services get their ClusterIP from this range.
		APIServerFlags: map[string][]string{"service-cluster-ip-range": {"10.96.0.0/24"}},
		BuildManager:   true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane up and manager built in %s", time.Since(start).Round(time.Millisecond))
	stopped := false
	defer func() {
		if !stopped {
			_ = cp.Stop()
		}
	}()

	t.Run("kubeconfig", func(t *testing.T) {
		fi, err := os.Stat(cp.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("kubeconfig mode %v, want 0600: it holds the admin's client key", fi.Mode().Perm())
		}
	})

	t.Run("kubectl", func(t *testing.T) {
		// A KUBECONFIG of the developer's is never used.
		t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "someone-elses-cluster"))
		r := cp.Kubectl(ctx, nil, "get", "crd", "-o", "name")
		if r.Err != nil {
			t.Fatalf("kubectl get crd: %s", r)
		}
		for _, crd := range []string{"databrickscredentials.dbtoken.io", "clusterdatabrickscredentials.dbtoken.io"} {
			if !strings.Contains(r.Stdout, crd) {
				t.Errorf("CRD %s not installed; kubectl get crd says:\n%s", crd, r.Stdout)
			}
		}
		cm := []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-stdin\n  namespace: default\ndata:\n  k: v\n")
		if r := cp.Kubectl(ctx, cm, "apply", "-f", "-"); r.Err != nil {
			t.Fatalf("kubectl apply -f - (stdin): %s", r)
		}
		if r := cp.Kubectl(ctx, nil, "get", "configmap", "from-stdin", "-o", "jsonpath={.data.k}"); r.Err != nil || r.Stdout != "v" {
			t.Errorf("the ConfigMap sent on stdin: %s", r)
		}
		if r := cp.Kubectl(ctx, nil, "get", "no-such-kind"); r.Err == nil || !strings.Contains(r.Stderr, "no-such-kind") {
			t.Errorf("a failing kubectl: %s", r)
		}
	})

	t.Run("apiserver flags", func(t *testing.T) {
		if r := cp.Kubectl(ctx, nil, "create", "service", "clusterip", "probe", "--tcp=80:80"); r.Err != nil {
			t.Fatalf("creating a Service: %s", r)
		}
		r := cp.Kubectl(ctx, nil, "get", "service", "probe", "-o", "jsonpath={.spec.clusterIP}")
		if r.Err != nil || !strings.HasPrefix(r.Stdout, "10.96.0.") {
			t.Errorf("ClusterIP outside --service-cluster-ip-range=10.96.0.0/24: %s", r)
		}
	})

	t.Run("manager binary is built once", func(t *testing.T) {
		a, err := cp.ManagerBinary(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, err := cp.ManagerBinary(ctx)
		if err != nil || a != b {
			t.Fatalf("second ManagerBinary = %q, %v; want %q", b, err, a)
		}
		if fi, err := os.Stat(a); err != nil || fi.Mode()&0o100 == 0 {
			t.Fatalf("%s is not an executable: %v", a, err)
		}
	})

	t.Run("manager", func(t *testing.T) {
		var out LogBuffer
		launches := 0
		m, err := cp.StartManager(ctx, ManagerOptions{
			Name:        "probe",
			Args:        []string{"--zap-log-level=debug"},
			Output:      func(int) (io.Writer, error) { launches++; return &out, nil },
			SampleEvery: 50 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Kill()
		if m.Launch != launches {
			t.Errorf("Launch = %d after %d calls of Output", m.Launch, launches)
		}
		wantArgs := []string{"--kubeconfig", cp.Kubeconfig, "--allowed-token-hosts=127.0.0.1,localhost", "--metrics-bind-address=0",
			"--health-probe-bind-address=" + m.Probe, "--zap-log-level=debug"}
		if !slices.Equal(m.Args, wantArgs) {
			t.Errorf("Args = %q, want %q", m.Args, wantArgs)
		}
		if !m.ReadyAt.After(m.Started) {
			t.Errorf("ReadyAt %v is not after Started %v", m.ReadyAt, m.Started)
		}
		resp, err := http.Get("http://" + m.Probe + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/readyz = %d", resp.StatusCode)
		}
		if err := m.Exited(); err != nil {
			t.Errorf("Exited() while running: %v", err)
		}
		if rss := m.Stats.Last().Mem.RSS; rss <= 0 {
			t.Errorf("sampled RSS %d", rss)
		}
		if err := m.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if m.Exited() == nil {
			t.Error("Exited() is nil after Stop")
		}
		if !strings.Contains(out.String(), "starting manager") || !strings.Contains(m.Tail(1<<20), "starting manager") {
			t.Errorf("the output lacks the manager's start line; Output got %d bytes", len(out.String()))
		}
	})

	t.Run("manager that never gets ready", func(t *testing.T) {
		launches := 0
		_, err := cp.StartManager(ctx, ManagerOptions{
			Name:   "bad-flag",
			Args:   []string{"--no-such-flag"},
			Output: func(int) (io.Writer, error) { launches++; return io.Discard, nil },
		})
		if err == nil {
			t.Fatal("a manager with an unknown flag became ready")
		}
		for _, want := range []string{"manager bad-flag did not become ready", "exited before it was ready", "no-such-flag"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not say %q: %v", want, err)
			}
		}
		if launches != 1 {
			t.Errorf("%d launches; only a taken probe port is worth another", launches)
		}
	})

	pids := cp.ProcessIDs()
	for _, name := range controlPlaneBinaries {
		if pids[name] == 0 {
			t.Errorf("ProcessIDs has no %s: %v", name, pids)
		}
	}
	bin, _ := cp.ManagerBinary(ctx)
	stopped = true
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	assertNoControlPlaneRunning(t)
	for _, f := range []string{cp.Kubeconfig, bin} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was not removed: %v", f, err)
		}
	}
}

// TestStopKillsAfterGrace runs a shell that ignores SIGTERM in the manager's place, with a
// short grace period.
func TestStopKillsAfterGrace(t *testing.T) {
	for name, tc := range map[string]struct {
		script  string
		wantErr string
		killed  bool
	}{
		"clean exit":    {script: `trap "exit 0" TERM`},
		"exit status":   {script: `trap "exit 3" TERM`, wantErr: "exited with exit status 3 after SIGTERM"},
		"ignores TERM":  {script: `trap "" TERM`, wantErr: "did not exit within 300ms of SIGTERM; killed", killed: true},
		"already ended": {script: `exit 0`},
	} {
		t.Run(name, func(t *testing.T) {
			var out LogBuffer
			m, err := launchProcess(ManagerOptions{Name: "sh", Output: func(int) (io.Writer, error) { return &out, nil }}, 1,
				"/bin/sh", []string{"-c", tc.script + "; echo started; while :; do sleep 0.05; done"})
			if err != nil {
				t.Fatal(err)
			}
			m.grace = 300 * time.Millisecond
			if name == "already ended" {
				<-m.done
			} else {
				for !strings.Contains(out.String(), "started") { // the trap is set
					time.Sleep(10 * time.Millisecond)
				}
			}
			err = m.Stop()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Stop() = %v, want %q", err, tc.wantErr)
			}
			if errors.Is(err, ErrKilled) != tc.killed {
				t.Errorf("errors.Is(%v, ErrKilled) = %v", err, !tc.killed)
			}
			if m.Exited() == nil {
				t.Error("still running after Stop")
			}
		})
	}
}

func TestTailIsBounded(t *testing.T) {
	var b tailBuffer
	chunk := bytes.Repeat([]byte("x"), 1000)
	for range 200 {
		_, _ = b.Write(chunk)
	}
	_, _ = b.Write([]byte("the end"))
	s := b.String()
	if len(s) > 64<<10 || !strings.HasSuffix(s, "the end") {
		t.Errorf("tail of %d bytes ending %q", len(s), s[max(0, len(s)-10):])
	}
	m := &Manager{tail: &b}
	if got := m.Tail(7); got != "…the end" {
		t.Errorf("Tail(7) = %q", got)
	}
}

func TestToolPathIsTheLastLine(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := func(body string) string {
		p := filepath.Join(dir, "tool.sh")
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
			t.Fatal(err)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			t.Fatal(err)
		}
		return rel
	}
	var progress bytes.Buffer
	got, err := ToolPath(context.Background(), &progress, script("echo building >&2; echo noise; pwd; echo '  /opt/tool  '; echo\n"))
	if err != nil || got != "/opt/tool" {
		t.Errorf("ToolPath = %q, %v; want /opt/tool", got, err)
	}
	if progress.String() != "building\n" {
		t.Errorf("progress = %q", progress.String())
	}
	out, err := RunScript(context.Background(), io.Discard, script("pwd\n"))
	if err != nil || strings.TrimSpace(out) != root {
		t.Errorf("RunScript ran in %q (%v), want the module root %s", out, err, root)
	}
	if _, err := ToolPath(context.Background(), io.Discard, script("true\n")); err == nil || err.Error() != "printed no path" {
		t.Errorf("a script that prints nothing: %v", err)
	}
	if _, err := ToolPath(context.Background(), io.Discard, script("exit 2\n")); err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Errorf("a failing script: %v", err)
	}
}

func TestRunDefaultsToModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	r := Run(context.Background(), "", []byte("from stdin"), "sh", "-c", "pwd; cat; echo oops >&2; exit 1")
	if r.Stdout != root+"\nfrom stdin" || r.Stderr != "oops\n" || r.Err == nil {
		t.Errorf("Run = %s", r)
	}
	if r := Run(context.Background(), "/", nil, "pwd"); r.Stdout != "/\n" {
		t.Errorf("Run in / = %s", r)
	}
}

// requireAssets returns KUBEBUILDER_ASSETS, failing the test without it, as the other envtest
// suites do: skipping would let `go test ./...` pass without testing the harness.
func requireAssets(t *testing.T) string {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run through `make test`, or with KUBEBUILDER_ASSETS=\"$(hack/setup-envtest.sh)\"")
	}
	return assets
}

// assertNoControlPlaneRunning fails when this process still has an etcd or kube-apiserver child.
func assertNoControlPlaneRunning(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second) // a killed process is reaped by envtest's Wait
	for {
		children := procstat.Children()
		var left []string
		for _, name := range controlPlaneBinaries {
			if _, ok := children[name]; ok {
				left = append(left, name)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
