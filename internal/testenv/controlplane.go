// Package testenv starts and stops the control plane that the tests, the scale benchmark and the
// demo run against (envtest: etcd and kube-apiserver with the project's CRDs), and runs the
// project's commands against it: kubectl with an admin kubeconfig, the manager binary as a child
// process, and the hack/ scripts that build the tools they need.
//
// It takes no *testing.T and returns errors, so that Go tests, Ginkgo suites and programs
// (cmd/demo, test/bench) use the same code; it is internal so that users never depend on it.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/dbtoken/databricks-token-operator/internal/testenv/procstat"
)

// Options says which control plane to start. The zero value starts one with the project's CRDs
// and the binaries named by KUBEBUILDER_ASSETS.
type Options struct {
	// AssetsDir holds the kube-apiserver and etcd binaries. Default: $KUBEBUILDER_ASSETS.
	AssetsDir string
	// CRDPaths are the CRD files or directories to install; every one must exist. Default:
	// config/crd/bases of this module.
	CRDPaths []string
	// APIServerFlags are set on kube-apiserver's command line, flag name (no dashes) → values,
	// replacing envtest's value for that flag if it has one.
	APIServerFlags map[string][]string
	// Dir receives the kubeconfig and the manager binary, which Stop removes; other files there
	// are left alone. Default: a new temporary directory, which Stop removes.
	Dir string
	// BuildManager builds cmd/manager while the control plane starts, which takes about as long,
	// instead of on the first StartManager.
	BuildManager bool
	// ManagerBinary, when set, is run by StartManager instead of a build of this module's
	// cmd/manager: another commit's build, for benchmarks side by side on the same harness.
	ManagerBinary string
	// APIServerLog, when set, receives kube-apiserver's output (its klog lines), for tests that
	// explain a failure by what the API server did.
	APIServerLog io.Writer
}

// ControlPlane is a running envtest control plane.
type ControlPlane struct {
	// Config is for clients of a system:masters user, with envtest's high QPS.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for the same user.
	Kubeconfig string
	// AssetsDir holds the kube-apiserver and etcd binaries it runs.
	AssetsDir string

	env    *envtest.Environment
	dir    string
	ownDir bool           // dir was created by Start, so Stop removes it
	pids   map[string]int // etcd and kube-apiserver

	buildMu    sync.Mutex
	managerBin string // built by ManagerBinary
}

// controlPlaneBinaries are the processes envtest starts.
var controlPlaneBinaries = []string{"etcd", "kube-apiserver"}

// Start starts etcd and kube-apiserver, installs the CRDs and writes the kubeconfig. On error
// nothing is left running.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	assets, err := checkAssets(opts.AssetsDir)
	if err != nil {
		return nil, err
	}
	crds := opts.CRDPaths
	if len(crds) == 0 {
		crds = []string{filepath.Join(root, "config", "crd", "bases")}
	}
	cp := &ControlPlane{AssetsDir: assets, dir: opts.Dir, managerBin: opts.ManagerBinary}
	if cp.dir == "" {
		if cp.dir, err = os.MkdirTemp("", "dbtoken-testenv-"); err != nil {
			return nil, err
		}
		cp.ownDir = true
	}
	cp.env = &envtest.Environment{CRDDirectoryPaths: crds, ErrorIfCRDPathMissing: true}
	// Explicit paths: envtest prefers the KUBEBUILDER_ASSETS variable over BinaryAssetsDirectory,
	// even when the variable is set but empty.
	cp.env.ControlPlane.APIServer = &envtest.APIServer{Path: filepath.Join(assets, "kube-apiserver"), Out: opts.APIServerLog, Err: opts.APIServerLog}
	cp.env.ControlPlane.Etcd = &envtest.Etcd{Path: filepath.Join(assets, "etcd")}
	for name, values := range opts.APIServerFlags {
		cp.env.ControlPlane.APIServer.Configure().Set(name, values...)
	}

	built := make(chan error, 1)
	if opts.BuildManager {
		go func() {
			_, err := cp.ManagerBinary(ctx)
			built <- err
		}()
	} else {
		built <- nil
	}

	before := procstat.Children()
	cp.Config, err = cp.env.Start()
	cp.pids = newControlPlaneProcesses(before, procstat.Children())
	if err == nil {
		err = os.WriteFile(filepath.Join(cp.dir, "kubeconfig"), cp.env.KubeConfig, 0o600)
		cp.Kubeconfig = filepath.Join(cp.dir, "kubeconfig")
	} else {
		err = fmt.Errorf("starting envtest (assets %s): %w", assets, err)
	}
	if buildErr := <-built; err == nil {
		err = buildErr
	}
	if err != nil {
		_ = cp.Stop() // a half-started control plane must not outlive the error
		return nil, err
	}
	return cp, nil
}

// checkAssets checks that dir (default $KUBEBUILDER_ASSETS) holds the control plane's binaries.
func checkAssets(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if dir == "" {
		return "", errors.New("KUBEBUILDER_ASSETS is not set: run through `make test`, or with KUBEBUILDER_ASSETS=\"$(hack/setup-envtest.sh)\", which builds kube-apiserver and etcd on its first run")
	}
	for _, name := range controlPlaneBinaries {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("no %s in the envtest assets directory %s (%w): run hack/setup-envtest.sh, which builds it", name, dir, err)
		}
	}
	return dir, nil
}

// AssetsDir returns $KUBEBUILDER_ASSETS or, when it is unset, the directory hack/setup-envtest.sh
// prints after building kube-apiserver and etcd (minutes, the first time; its progress goes to
// progress). It is for the suites and programs that also work without `make`; Start alone
// insists on the variable.
func AssetsDir(ctx context.Context, progress io.Writer) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	dir, err := ToolPath(ctx, progress, "hack/setup-envtest.sh")
	if err != nil {
		return "", fmt.Errorf("KUBEBUILDER_ASSETS is unset and hack/setup-envtest.sh failed: %w", err)
	}
	return dir, nil
}

// newControlPlaneProcesses picks etcd and kube-apiserver among the children in after that were not
// in before: those envtest has just started.
func newControlPlaneProcesses(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for _, name := range controlPlaneBinaries {
		if pid, ok := after[name]; ok && before[name] != pid {
			out[name] = pid
		}
	}
	return out
}

// ProcessIDs returns the pids of etcd and kube-apiserver, by name (empty where /proc is not
// readable), so that their memory and CPU can be measured.
func (cp *ControlPlane) ProcessIDs() map[string]int {
	out := make(map[string]int, len(cp.pids))
	for name, pid := range cp.pids {
		out[name] = pid
	}
	return out
}

// Stop stops kube-apiserver and etcd and removes the kubeconfig and the manager binary. envtest
// runs them in their own process groups, where they would outlive this process if its own stop
// failed; whatever is still running then is killed.
func (cp *ControlPlane) Stop() error {
	err := cp.env.Stop()
	children := procstat.Children()
	for name, pid := range cp.pids {
		if children[name] == pid {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if cp.ownDir {
		_ = os.RemoveAll(cp.dir)
	} else {
		_ = os.Remove(filepath.Join(cp.dir, "kubeconfig"))
		_ = os.Remove(filepath.Join(cp.dir, "manager"))
	}
	if err != nil {
		return fmt.Errorf("stopping envtest: %w", err)
	}
	return nil
}

// Kubectl runs kubectl (from the PATH) against this control plane only: the kubeconfig is explicit
// and KUBECONFIG is overridden, so a developer's own cluster is never touched. It runs in the
// module root, so paths such as config/default work, and like Run for at most CommandTimeout.
func (cp *ControlPlane) Kubectl(ctx context.Context, stdin []byte, args ...string) Result {
	path, err := exec.LookPath("kubectl")
	if err != nil {
		return Result{Err: fmt.Errorf("kubectl is not on the PATH: %w", err)}
	}
	return runWithEnv(ctx, "", []string{"KUBECONFIG=" + cp.Kubeconfig}, stdin, path, append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
}

// ManagerBinary builds cmd/manager from this checkout the first time it is called and returns the
// path of the binary; later calls, from any goroutine, return the same path.
func (cp *ControlPlane) ManagerBinary(ctx context.Context) (string, error) {
	cp.buildMu.Lock()
	defer cp.buildMu.Unlock()
	if cp.managerBin != "" {
		return cp.managerBin, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cp.dir, "manager")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/manager")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/manager: %w\n%s", err, out)
	}
	cp.managerBin = bin
	return bin, nil
}
