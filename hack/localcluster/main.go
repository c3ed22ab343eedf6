// Command localcluster brings up, and tears down, a single-node Kubernetes cluster on this machine
// for `make test-cluster` and for contributors (docs/local-cluster.md). Run it through
// hack/local-cluster.sh, which builds the Kubernetes binaries and installs containerd first.
//
// What runs, all of it inside a network namespace of its own (node IP on its lo, no route out)
// and a private mount namespace (so no mount can outlive the cluster):
//
//	etcd, kube-apiserver            from hack/setup-envtest.sh
//	kube-controller-manager, kube-scheduler, kubelet   from hack/setup-kube-node.sh
//	containerd + runc + CNI bridge  from Debian
//
// One supervisor process starts the components, keeps them in a cgroup of their own (with the
// pods: kubelet's cgroupRoot is inside it), and stops them all on `down`. Subcommands:
//
//	up      start (cleaning up what a crashed run left first); prints the kubeconfig
//	down    stop everything and remove the namespaces, cgroups and network
//	env     print the KUBECONFIG and how to reach the API server
//	exec    run a command inside the cluster's network namespace, e.g. kubectl
//	load    import an image tarball (docker archive) into the node's containerd
//	status  exit 0 when the cluster is running
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	sub, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(sub, flag.ExitOnError)
	var c config
	c.flags(fs)
	if err := fs.Parse(args); err != nil {
		os.Exit(2)
	}
	if err := c.complete(); err != nil {
		fail(err)
	}
	var err error
	switch sub {
	case "up":
		err = up(&c)
	case "down":
		err = down(&c, newNarrator(os.Stderr))
	case "env":
		err = printEnv(&c)
	case "exec":
		err = execIn(&c, fs.Args())
	case "load":
		err = load(&c, fs.Args())
	case "status":
		if pid := c.supervisorPID(); pid > 0 {
			fmt.Printf("running (supervisor PID %d)\n", pid)
			return
		}
		fmt.Println("not running")
		os.Exit(1)
	case "supervise":
		err = supervise(&c)
	default:
		usage()
	}
	if err != nil {
		fail(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: localcluster up|down|env|exec -- CMD...|load TARBALL...|status [flags]")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "local-cluster: %v\n", err)
	os.Exit(1)
}

// config is where everything lives. Names are derived from Name so that two clusters (say, a
// contributor's and `make test-cluster`'s) can run side by side.
type config struct {
	Name        string // LOCAL_CLUSTER_NAME, default "local"
	ModuleRoot  string
	EnvtestDir  string // kube-apiserver, etcd
	NodeBinDir  string // kubelet, kube-controller-manager, kube-scheduler
	StateDir    string // on disk: pki, kubeconfigs, logs (kept after down for post-mortems)
	NodeIP      string
	PodCIDR     string
	ServiceCIDR string
	ServiceIP   string // the kubernetes Service's cluster IP
}

func (c *config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Name, "name", envOr("LOCAL_CLUSTER_NAME", "local"), "cluster name (network namespace dbtoken-NAME)")
	fs.StringVar(&c.ModuleRoot, "module-root", ".", "the repository root")
	fs.StringVar(&c.EnvtestDir, "envtest-dir", os.Getenv("LOCAL_CLUSTER_ENVTEST_DIR"), "directory with kube-apiserver and etcd")
	fs.StringVar(&c.NodeBinDir, "node-bin-dir", os.Getenv("LOCAL_CLUSTER_NODE_BIN_DIR"), "directory with kubelet, kube-controller-manager, kube-scheduler")
	fs.StringVar(&c.StateDir, "state-dir", "", "state directory (default: the cache directory)")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (c *config) complete() error {
	for _, r := range c.Name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') || len(c.Name) > 20 {
			return fmt.Errorf("cluster name %q: use at most 20 of a-z, 0-9 and -", c.Name)
		}
	}
	root, err := filepath.Abs(c.ModuleRoot)
	if err != nil {
		return err
	}
	c.ModuleRoot = root
	if c.StateDir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return err
			}
			cache = filepath.Join(home, ".cache")
		}
		c.StateDir = filepath.Join(cache, "databricks-token-operator", "local-cluster", c.Name)
	}
	if c.StateDir, err = filepath.Abs(c.StateDir); err != nil {
		return err
	}
	// Inside the cluster's mount namespace these are covered with fresh tmpfs mounts (see
	// mounts.go); a state directory below them would vanish from the components' view.
	for _, hidden := range tmpfsMounts {
		if c.StateDir == hidden || strings.HasPrefix(c.StateDir, hidden+"/") {
			return fmt.Errorf("state directory %s is under %s, which the cluster covers with a tmpfs: set XDG_CACHE_HOME elsewhere", c.StateDir, hidden)
		}
	}
	// Addresses exist only inside the cluster's network namespace; each cluster has its own, so
	// they can be the same for every name.
	c.NodeIP = "10.243.0.1"
	c.PodCIDR = "10.244.0.0/24"
	c.ServiceCIDR = "10.96.0.0/24"
	c.ServiceIP = "10.96.0.1"
	return nil
}

// Names and paths derived from the config.
func (c *config) netns() string      { return "dbtoken-" + c.Name }
func (c *config) netnsPath() string  { return "/run/netns/" + c.netns() }
func (c *config) cgroupName() string { return "dbtoken-" + c.Name }
func (c *config) nodeName() string   { return "dbtoken-" + c.Name + "-node" }
func (c *config) path(p ...string) string {
	return filepath.Join(append([]string{c.StateDir}, p...)...)
}
func (c *config) pki(f string) string { return c.path("pki", f) }
func (c *config) logs(f string) string {
	return c.path("logs", f)
}

// rt is the runtime directory: a tmpfs inside the cluster's mount namespace (containerd's root,
// kubelet's root, etcd's data), so that nothing of a stopped cluster stays on disk or mounted.
func (c *config) rt(p ...string) string {
	return filepath.Join(append([]string{c.StateDir, "rt"}, p...)...)
}

func (c *config) kubeconfig() string { return c.path("admin.kubeconfig") }

// containerdSocket is containerd's default address: /run is the cluster's own tmpfs inside its
// mount namespace, so the default cannot meet another containerd.
func (c *config) containerdSocket() string    { return "/run/containerd/containerd.sock" }
func (c *config) apiServerURL() string        { return "https://" + c.NodeIP + ":6443" }
func (c *config) bin(dir, name string) string { return filepath.Join(dir, name) }
