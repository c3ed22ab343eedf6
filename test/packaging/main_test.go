// Package packaging tests what users install and read: dist/install.yaml, the Helm chart in
// dist/chart and the generated docs/api-reference.md. Manifests are checked against a real
// kube-apiserver (envtest) with `kubectl apply --dry-run=server`, so schema errors, unknown fields
// and Pod Security violations surface here rather than in a user's cluster.
//
// Run through `make test`, or: KUBEBUILDER_ASSETS=$(hack/setup-envtest.sh) go test ./test/packaging/
// The tests need kubectl on the PATH; helm is built on first use by hack/install-helm.sh.
package packaging

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

// DefaultImage is the image dist/install.yaml is committed with (the Makefile's IMG default).
const DefaultImage = "ghcr.io/dbtoken/databricks-token-operator:latest"

var (
	// repoRoot is the module root, where the Makefile, hack/ and dist/ are.
	repoRoot string

	envOnce    sync.Once
	testEnv    *envtest.Environment
	kubeconfig string
	envErr     error

	helmOnce sync.Once
	helmPath string
	helmErr  error
)

func TestMain(m *testing.M) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, "packaging:", err)
		os.Exit(1)
	}
	repoRoot = root
	code := m.Run()
	if testEnv != nil {
		if err := testEnv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "packaging: stopping envtest:", err)
		}
	}
	if kubeconfig != "" {
		_ = os.RemoveAll(filepath.Dir(kubeconfig))
	}
	os.Exit(code)
}

// apiServer starts envtest once (CRDs from config/crd/bases) and returns the path of a kubeconfig
// for a system:masters user. Without KUBEBUILDER_ASSETS it asks hack/setup-envtest.sh, which
// builds the binaries on the first run.
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
		env := &envtest.Environment{
			CRDDirectoryPaths:     []string{filepath.Join(repoRoot, "config", "crd", "bases")},
			ErrorIfCRDPathMissing: true,
		}
		if _, err := env.Start(); err != nil {
			envErr = fmt.Errorf("starting envtest: %w", err)
			return
		}
		testEnv = env
		user, err := env.AddUser(envtest.User{Name: "packaging-admin", Groups: []string{"system:masters"}}, nil)
		if err != nil {
			envErr = fmt.Errorf("adding an envtest user: %w", err)
			return
		}
		cfg, err := user.KubeConfig()
		if err != nil {
			envErr = fmt.Errorf("writing the kubeconfig: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "packaging-kubeconfig-")
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

// helm returns the pinned helm binary from hack/install-helm.sh (built on the first run).
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		out, err := runScript("hack/install-helm.sh")
		if err != nil {
			helmErr = fmt.Errorf("hack/install-helm.sh: %w", err)
			return
		}
		helmPath = lastLine(out)
	})
	if helmErr != nil {
		t.Fatal(helmErr)
	}
	return helmPath
}

// runScript runs a script of the repository and returns its stdout; its stderr (progress) is
// passed through so a long first build is visible with -v.
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

// run runs name with args in the repository root, with stdin when non-nil, and a deadline.
func run(t *testing.T, stdin []byte, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = repoRoot
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
	return run(t, stdin, path, append([]string{"--kubeconfig", cfg}, args...)...)
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
