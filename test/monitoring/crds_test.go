package monitoring

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// monitoringAPIPackage holds the PrometheusRule and ServiceMonitor types and their kubebuilder
// markers. prometheus-operator's root module is not on the Go module proxy, but this API module
// is; manifests_test.go imports it, which keeps it in go.mod, so controller-gen can load it.
const monitoringAPIPackage = "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"

// monitoringCRDFiles are the generated CRDs the tests install; the package defines more
// (Prometheus, Alertmanager, ...), which are large and not needed.
var monitoringCRDFiles = []string{
	"monitoring.coreos.com_prometheusrules.yaml",
	"monitoring.coreos.com_servicemonitors.yaml",
}

// crdDir is where monitoringCRDs generated the CRDs; removed by cleanupCRDs.
var crdDir string

// monitoringCRDs generates the monitoring.coreos.com CRDs with the project's pinned controller-gen
// (`go tool controller-gen`, the one `make manifests` uses) from the API module that go.mod
// requires, into a temporary directory, and returns the paths of the ones the tests need. It takes
// a few seconds once controller-gen is built; there is nothing to cache that could go stale.
func monitoringCRDs() ([]string, error) {
	dir, err := os.MkdirTemp("", "monitoring-crds-")
	if err != nil {
		return nil, err
	}
	crdDir = dir
	start := time.Now()
	cmd := exec.Command("go", "tool", "controller-gen", "crd", "paths="+monitoringAPIPackage, "output:crd:dir="+dir)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go tool controller-gen crd paths=%s: %w\n%s", monitoringAPIPackage, err, out)
	}
	fmt.Fprintf(os.Stderr, "monitoring: generated the monitoring.coreos.com CRDs in %s\n", time.Since(start).Round(time.Millisecond))
	var paths []string
	for _, f := range monitoringCRDFiles {
		p := filepath.Join(dir, f)
		if _, err := os.Stat(p); err != nil {
			entries, _ := os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			return nil, fmt.Errorf("controller-gen wrote no %s (it wrote: %s)", f, strings.Join(names, ", "))
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func cleanupCRDs() {
	if crdDir != "" {
		_ = os.RemoveAll(crdDir)
	}
}
