// Package packaging tests what users install and read: dist/install.yaml, the Helm chart in
// dist/chart and the generated docs/api-reference.md. Manifests are checked against a real
// kube-apiserver (envtest) with `kubectl apply --dry-run=server`, so schema errors, unknown fields
// and Pod Security violations surface here rather than in a user's cluster.
//
// Run through `make test`, or: KUBEBUILDER_ASSETS=$(hack/setup-envtest.sh) go test ./test/packaging/
// The tests need kubectl on the PATH; helm is built on first use by hack/install-helm.sh.
package packaging

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dbtoken/databricks-token-operator/internal/testenv"
)

// DefaultImage is the image dist/install.yaml is committed with (the Makefile's IMG default).
const DefaultImage = "ghcr.io/dbtoken/databricks-token-operator:latest"

var (
	// repoRoot is the module root, where the Makefile, hack/ and dist/ are.
	repoRoot string

	envOnce      sync.Once
	controlPlane *testenv.ControlPlane
	envErr       error
	// apiServerLog is what kube-apiserver printed, for failures that depend on what it did.
	apiServerLog lockedBuffer

	helmOnce sync.Once
	helmPath string
	helmErr  error
)

func TestMain(m *testing.M) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "packaging:", err)
		os.Exit(1)
	}
	repoRoot = root
	code := m.Run()
	if controlPlane != nil {
		if err := controlPlane.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "packaging:", err)
		}
	}
	os.Exit(code)
}

// apiServer starts envtest once (CRDs from config/crd/bases). Without KUBEBUILDER_ASSETS it asks
// hack/setup-envtest.sh, which builds the binaries on the first run.
func apiServer(t *testing.T) *testenv.ControlPlane {
	t.Helper()
	envOnce.Do(func() {
		var assets string
		if assets, envErr = testenv.AssetsDir(context.Background(), os.Stderr); envErr == nil {
			controlPlane, envErr = testenv.Start(context.Background(), testenv.Options{AssetsDir: assets, APIServerLog: &apiServerLog})
		}
	})
	if envErr != nil {
		t.Fatal(envErr)
	}
	return controlPlane
}

// helm returns the pinned helm binary from hack/install-helm.sh (built on the first run).
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		if helmPath, helmErr = testenv.ToolPath(context.Background(), os.Stderr, "hack/install-helm.sh"); helmErr != nil {
			helmErr = fmt.Errorf("hack/install-helm.sh: %w", helmErr)
		}
	})
	if helmErr != nil {
		t.Fatal(helmErr)
	}
	return helmPath
}

// run runs name with args in the repository root, with stdin when non-nil, and a deadline
// (testenv.CommandTimeout).
func run(t *testing.T, stdin []byte, name string, args ...string) testenv.Result {
	t.Helper()
	return testenv.Run(context.Background(), "", stdin, name, args...)
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

// firstDiff describes where the committed and the freshly generated file first differ, by line.
func firstDiff(committed, generated []byte) string {
	g, w := strings.Split(string(committed), "\n"), strings.Split(string(generated), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl || i >= len(g) || i >= len(w) {
			return fmt.Sprintf("line %d:\n  committed: %q\n  generated: %q", i+1, gl, wl)
		}
	}
	return "no difference"
}

// lockedBuffer collects a process's output while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Lines returns the last n lines that contain substr.
func (b *lockedBuffer) Lines(substr string, n int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range strings.Split(b.buf.String(), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}
