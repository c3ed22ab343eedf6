// Package monitoring tests what the operator ships for Prometheus and Grafana: the ServiceMonitor
// and PrometheusRule in config/prometheus, the dashboard in config/grafana, and the metrics
// reference in docs/monitoring.md.
//
//   - The alerting rules are checked and unit-tested with promtool (`promtool check rules`,
//     `promtool test rules` with testdata/alerts_test.yaml). hack/install-promtool.sh extracts
//     promtool from Debian's prometheus package on the first run and caches it.
//   - The manifests are decoded strictly into prometheus-operator's Go types and applied with
//     `kubectl apply --dry-run=server` to an envtest apiserver that has the monitoring.coreos.com
//     CRDs, generated from those same types with the project's controller-gen.
//   - The dashboard's and the rules' PromQL may only name metrics (and their labels) that the
//     operator registers; the list is read from the Go sources, not hard-coded.
//
// Run through `make test`, or: KUBEBUILDER_ASSETS=$(hack/setup-envtest.sh) go test ./test/monitoring/
// The tests need kubectl on the PATH; promtool comes from hack/install-promtool.sh (or $PROMTOOL).
package monitoring

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Files under test, relative to the repository root.
const (
	ruleFile      = "config/prometheus/prometheus_rule.yaml"
	monitorFile   = "config/prometheus/monitor.yaml"
	dashboardFile = "config/grafana/databricks-token-operator.json"
	metricsDoc    = "docs/monitoring.md"
	// ruleTests is promtool's unit-test file for ruleFile; it loads the rules from "rules.yaml"
	// beside it, which the test writes from the PrometheusRule's .spec.groups.
	ruleTests = "test/monitoring/testdata/alerts_test.yaml"
	// operatorNamespace is where config/default (and so config/prometheus) puts the operator.
	operatorNamespace = "databricks-token-operator-system"
)

var (
	// repoRoot is the module root, where config/, docs/ and hack/ are.
	repoRoot string

	envOnce    sync.Once
	testEnv    *envtest.Environment
	kubeconfig string
	envErr     error

	promtoolOnce sync.Once
	promtoolPath string
	promtoolErr  error
)

func TestMain(m *testing.M) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, "monitoring:", err)
		os.Exit(1)
	}
	repoRoot = root
	code := m.Run()
	if testEnv != nil {
		if err := testEnv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "monitoring: stopping envtest:", err)
		}
	}
	if kubeconfig != "" {
		_ = os.RemoveAll(filepath.Dir(kubeconfig))
	}
	cleanupCRDs()
	os.Exit(code)
}

// promtool returns the promtool to use: $PROMTOOL when set, else the pinned one from
// hack/install-promtool.sh (extracted from Debian's package on the first run), else — on a machine
// without apt — a promtool on the PATH.
func promtool(t *testing.T) string {
	t.Helper()
	promtoolOnce.Do(func() {
		if p := os.Getenv("PROMTOOL"); p != "" {
			promtoolPath = p
			return
		}
		out, err := runScript("hack/install-promtool.sh")
		if err == nil {
			promtoolPath = lastLine(out)
			return
		}
		if p, lookErr := exec.LookPath("promtool"); lookErr == nil {
			fmt.Fprintf(os.Stderr, "monitoring: hack/install-promtool.sh failed (%v); using %s from the PATH\n", err, p)
			promtoolPath = p
			return
		}
		promtoolErr = fmt.Errorf("hack/install-promtool.sh: %w (and no promtool on the PATH; or set PROMTOOL)", err)
	})
	if promtoolErr != nil {
		t.Fatal(promtoolErr)
	}
	return promtoolPath
}

// apiServer starts envtest once, with the PrometheusRule and ServiceMonitor CRDs generated from
// prometheus-operator's Go types, and returns the path of a kubeconfig for a system:masters user.
// Without KUBEBUILDER_ASSETS it asks hack/setup-envtest.sh, which builds the binaries on the
// first run.
func apiServer(t *testing.T) string {
	t.Helper()
	envOnce.Do(func() {
		if os.Getenv("KUBEBUILDER_ASSETS") == "" {
			out, err := runScript("hack/setup-envtest.sh")
			if err != nil {
				envErr = fmt.Errorf("KUBEBUILDER_ASSETS is unset and hack/setup-envtest.sh failed: %w", err)
				return
			}
			if err := os.Setenv("KUBEBUILDER_ASSETS", lastLine(out)); err != nil {
				envErr = err
				return
			}
		}
		crds, err := monitoringCRDs()
		if err != nil {
			envErr = err
			return
		}
		env := &envtest.Environment{CRDDirectoryPaths: crds, ErrorIfCRDPathMissing: true}
		start := time.Now()
		if _, err := env.Start(); err != nil {
			envErr = fmt.Errorf("starting envtest: %w", err)
			return
		}
		testEnv = env
		fmt.Fprintf(os.Stderr, "monitoring: envtest started in %s\n", time.Since(start).Round(time.Millisecond))
		user, err := env.AddUser(envtest.User{Name: "monitoring-admin", Groups: []string{"system:masters"}}, nil)
		if err != nil {
			envErr = fmt.Errorf("adding an envtest user: %w", err)
			return
		}
		cfg, err := user.KubeConfig()
		if err != nil {
			envErr = fmt.Errorf("writing the kubeconfig: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "monitoring-kubeconfig-")
		if err != nil {
			envErr = err
			return
		}
		kubeconfig = filepath.Join(dir, "kubeconfig")
		envErr = os.WriteFile(kubeconfig, cfg, 0o600)
	})
	if envErr != nil {
		t.Fatal(envErr)
	}
	return kubeconfig
}

// runScript runs a script of the repository and returns its stdout; its stderr (progress) is
// passed through so a long first run is visible with -v.
func runScript(script string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(repoRoot, script), args...)
	cmd.Dir = repoRoot
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	err := cmd.Run()
	return stdout.String(), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// result is a finished command.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("error: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// run runs name with args in dir (the repository root when empty), with stdin when non-nil, and
// a deadline.
func run(t *testing.T, dir string, stdin []byte, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = repoRoot
	if dir != "" {
		cmd.Dir = dir
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// kubectl runs kubectl against the envtest apiserver only: the kubeconfig is explicit and
// KUBECONFIG is overridden, so a developer's own cluster is never touched.
func kubectl(t *testing.T, stdin []byte, args ...string) result {
	t.Helper()
	path, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is not on the PATH: %v", err)
	}
	cfg := apiServer(t)
	t.Setenv("KUBECONFIG", cfg)
	return run(t, "", stdin, path, append([]string{"--kubeconfig", cfg}, args...)...)
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
