// Package cluster tests the operator the way users run it: its image, built like the Dockerfile's,
// installed from dist/install.yaml and from the Helm chart into a real single-node cluster
// (hack/local-cluster.sh: kubelet, containerd, runc, CNI), probed by the kubelet, electing a
// leader, exchanging tokens with the test identity provider over TLS for every identity block,
// and feeding a CronJob's pods.
//
// Run with `make test-cluster` (needs root; the first run builds the Kubernetes binaries). The
// test binary runs inside the cluster's network namespace, where the test identity provider
// (test/idp) and workspace (test/workspace) listen on the node's address under the real public
// host names (login.microsoftonline.com, adb-….azuredatabricks.net) that a small DNS server of
// the test resolves to the node. So the operator runs with its default --allowed-token-hosts and
// the manifests need no edit but the image.
//
// Without DBTOKEN_CLUSTER_TEST=1 (which `make test-cluster` sets) the package skips, so that
// `go test ./...` does not need a cluster.
package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/testenv"
)

// Settings from `make test-cluster` (hack/test-cluster.sh).
var (
	repoRoot      string
	kubeconfig    string // admin kubeconfig of the local cluster
	nodeIP        string // where the test's servers listen (the node's address)
	managerImage  string // the daemonless manager image, imported into the node
	consumerImage string // the consumer job image
	// sdkConsumerImage is the long-running Go SDK client of the token-server sidecar.
	sdkConsumerImage string
	helmBin          string
	kubectlBin       string

	restConfig *rest.Config
	cs         *kubernetes.Clientset
	k8s        client.Client
	scheme     = runtime.NewScheme()
)

func TestMain(m *testing.M) {
	if os.Getenv("DBTOKEN_CLUSTER_TEST") != "1" {
		fmt.Println("cluster: skipped (needs a local cluster: run `make test-cluster`)")
		os.Exit(0)
	}
	os.Exit(setup(m))
}

func setup(m *testing.M) int {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "cluster: "+format+"\n", args...)
		return 1
	}
	var err error
	repoRoot = os.Getenv("CLUSTER_TEST_REPO_ROOT") // the test binary may run from anywhere
	if repoRoot == "" {
		repoRoot = filepath.Join("..", "..")
	}
	if repoRoot, err = filepath.Abs(repoRoot); err != nil {
		return fail("%v", err)
	}
	for name, dst := range map[string]*string{
		"KUBECONFIG":                      &kubeconfig,
		"LOCAL_CLUSTER_NODE_IP":           &nodeIP,
		"CLUSTER_TEST_MANAGER_IMAGE":      &managerImage,
		"CLUSTER_TEST_CONSUMER_IMAGE":     &consumerImage,
		"CLUSTER_TEST_SDK_CONSUMER_IMAGE": &sdkConsumerImage,
		"HELM":                            &helmBin,
	} {
		if *dst = os.Getenv(name); *dst == "" {
			return fail("%s is not set; run through `make test-cluster`", name)
		}
	}
	if kubectlBin, err = exec.LookPath("kubectl"); err != nil {
		return fail("kubectl is needed on the PATH: %v", err)
	}
	if restConfig, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
		return fail("kubeconfig: %v", err)
	}
	restConfig.QPS, restConfig.Burst = 50, 100
	if cs, err = kubernetes.NewForConfig(restConfig); err != nil {
		return fail("%v", err)
	}
	if k8s, err = client.New(restConfig, client.Options{Scheme: scheme}); err != nil {
		return fail("%v", err)
	}
	env, err := startFakes()
	if err != nil {
		return fail("starting the test identity provider, workspace and DNS: %v", err)
	}
	defer env.close()
	fakes = env
	return m.Run()
}

// result is a finished command.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("error: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// command runs a program with the local cluster's kubeconfig, from the repository root.
func command(t *testing.T, stdin []byte, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

func kubectl(t *testing.T, stdin []byte, args ...string) result {
	t.Helper()
	return command(t, stdin, kubectlBin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
}

func mustKubectl(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	r := kubectl(t, stdin, args...)
	if r.err != nil {
		t.Fatalf("kubectl %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

func helm(t *testing.T, args ...string) result {
	t.Helper()
	return command(t, nil, helmBin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
}

// eventually polls cond until it holds, failing the test with its last message after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	if err := testenv.Eventually(timeout, 500*time.Millisecond, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// fingerprint identifies a token in test output without revealing it (the consumer image prints
// the same).
func fingerprint(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return fmt.Sprintf("%x", sum[:6])
}

func logf(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("[%s] %s", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
