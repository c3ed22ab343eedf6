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
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/internal/testenv"
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

	envOnce      sync.Once
	controlPlane *testenv.ControlPlane
	envErr       error

	promtoolOnce sync.Once
	promtoolPath string
	promtoolErr  error
)

func TestMain(m *testing.M) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "monitoring:", err)
		os.Exit(1)
	}
	repoRoot = root
	code := m.Run()
	if controlPlane != nil {
		if err := controlPlane.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "monitoring:", err)
		}
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
		p, err := testenv.ToolPath(context.Background(), os.Stderr, "hack/install-promtool.sh")
		if err == nil {
			promtoolPath = p
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
// prometheus-operator's Go types (and not the project's own). Without KUBEBUILDER_ASSETS it asks
// hack/setup-envtest.sh, which builds the binaries on the first run.
func apiServer(t *testing.T) *testenv.ControlPlane {
	t.Helper()
	envOnce.Do(func() {
		var opts testenv.Options
		if opts.AssetsDir, envErr = testenv.AssetsDir(context.Background(), os.Stderr); envErr != nil {
			return
		}
		if opts.CRDPaths, envErr = monitoringCRDs(); envErr != nil {
			return
		}
		start := time.Now()
		if controlPlane, envErr = testenv.Start(context.Background(), opts); envErr != nil {
			return
		}
		fmt.Fprintf(os.Stderr, "monitoring: envtest started in %s\n", time.Since(start).Round(time.Millisecond))
	})
	if envErr != nil {
		t.Fatal(envErr)
	}
	return controlPlane
}

// run runs name with args in dir (the repository root when empty), with stdin when non-nil, and
// a deadline (testenv.CommandTimeout).
func run(t *testing.T, dir string, stdin []byte, name string, args ...string) testenv.Result {
	t.Helper()
	return testenv.Run(context.Background(), dir, stdin, name, args...)
}

// kubectl runs kubectl against the envtest apiserver only, with a deadline (see testenv's Kubectl).
func kubectl(t *testing.T, stdin []byte, args ...string) testenv.Result {
	t.Helper()
	return apiServer(t).Kubectl(context.Background(), stdin, args...)
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
