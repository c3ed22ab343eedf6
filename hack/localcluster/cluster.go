package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dbtoken/databricks-token-operator/test/cluster/image"
)

// up starts the cluster and returns once a pod has run on its node.
func up(c *config) error {
	n := newNarrator(os.Stderr)
	if pid := c.supervisorPID(); pid > 0 {
		return fmt.Errorf("cluster %q is already running (supervisor PID %d): run `hack/local-cluster.sh down` first", c.Name, pid)
	}
	if err := preflight(c); err != nil {
		return err
	}
	if left := leftovers(c); len(left) > 0 {
		n.say("cleaning up what an earlier run left behind: %s", strings.Join(left, "; "))
		if err := cleanup(c); err != nil {
			return err
		}
	}
	for _, d := range []string{c.path("logs"), c.path("images")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	_ = os.Remove(c.path("pids"))
	if err := pkiFiles(c); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := renderConfigs(c); err != nil {
		return err
	}
	n.say("certificates and configuration written to %s", c.StateDir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := image.Write(ctx, c.ModuleRoot, image.Pause(pauseImage), c.path("images", "pause.tar")); err != nil {
		return fmt.Errorf("building the pause image: %w", err)
	}
	n.say("pause image built")

	fail := func(err error) error {
		n.say("start-up failed, cleaning up")
		if cerr := cleanup(c); cerr != nil {
			err = fmt.Errorf("%w; and cleaning up: %v", err, cerr)
		}
		return err
	}
	if err := createNetns(c); err != nil {
		return fail(fmt.Errorf("creating the network namespace: %w", err))
	}
	n.say("network namespace %s: node IP %s, pods %s, services %s, no route out", c.netns(), c.NodeIP, c.PodCIDR, c.ServiceCIDR)

	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	logFile, err := os.OpenFile(c.logs("supervisor.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fail(err)
	}
	// nsenter and unshare each exec the next program, so the PID started here is the
	// supervisor's. --propagation slave: the machine's mounts are seen inside, none of the
	// cluster's are seen outside.
	cmd := exec.Command("nsenter", "--net="+c.netnsPath(), "--",
		"unshare", "--mount", "--propagation", "slave", "--",
		self, "supervise", "-name", c.Name, "-module-root", c.ModuleRoot, "-state-dir", c.StateDir,
		"-envtest-dir", c.EnvtestDir, "-node-bin-dir", c.NodeBinDir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = []*os.File{pw} // fd 3: progressFD
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("starting the supervisor: %w", err))
	}
	pw.Close()
	logFile.Close()
	if err := os.WriteFile(c.path("supervisor.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return fail(err)
	}
	// The supervisor outlives `up`: it is not waited for here (down stops it).
	_ = cmd.Process.Release()

	ready := false
	var failure string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "READY":
			ready = true
		case strings.HasPrefix(line, "FAILED "):
			if failure, err = strconv.Unquote(strings.TrimPrefix(line, "FAILED ")); err != nil {
				failure = strings.TrimPrefix(line, "FAILED ")
			}
		default:
			n.say("%s", line)
		}
	}
	pr.Close()
	if !ready {
		if failure == "" {
			failure = "the supervisor exited: " + tail(c.logs("supervisor.log"), 10)
		}
		return fail(errors.New(failure))
	}
	n.say("cluster %q is up; logs in %s", c.Name, c.path("logs"))
	fmt.Println(c.kubeconfig())
	fmt.Fprintf(os.Stderr, "\nKUBECONFIG=%s\nThe API server (%s) is reachable only inside the network namespace %s:\n  hack/local-cluster.sh shell                     # a shell there, with KUBECONFIG set\n  hack/local-cluster.sh exec -- kubectl get nodes\n  hack/local-cluster.sh down                      # stop it and remove everything\n",
		c.kubeconfig(), c.apiServerURL(), c.netns())
	return nil
}

// down stops the cluster: the supervisor first (it stops the components in order), then
// whatever is left, whoever left it.
func down(c *config, n *narrator) error {
	if pid := c.supervisorPID(); pid > 0 {
		n.say("stopping the supervisor (PID %d)", pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(90 * time.Second)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if alive(pid) {
			n.say("the supervisor did not stop within 90s: killing it")
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if err := cleanup(c); err != nil {
		return err
	}
	if left := leftovers(c); len(left) > 0 {
		return fmt.Errorf("after down, still there: %s", strings.Join(left, "; "))
	}
	_ = os.Remove(c.path("supervisor.pid"))
	n.say("cluster %q is down: no process, cgroup, mount or network namespace of it is left", c.Name)
	return nil
}

// cleanup removes everything a cluster of this name may have left, running or crashed: the
// processes in its cgroups (components, containerd shims, pods) and in its network namespace,
// the cgroups, and the network namespace with its interfaces and iptables rules. The cluster's
// other mounts live in its private mount namespace, which the kernel frees with its last process.
func cleanup(c *config) error {
	var errs []error
	if err := killCgroups(c, 0); err != nil {
		errs = append(errs, err)
	}
	for _, pid := range netnsPIDs(c) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(netnsPIDs(c)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if err := removeCgroups(c); err != nil {
		errs = append(errs, err)
	}
	if netnsExists(c) {
		if err := run("ip", "netns", "delete", c.netns()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// leftovers describes what of the cluster exists, "" items for none.
func leftovers(c *config) []string {
	var out []string
	if pids := cgroupPIDs(c); len(pids) > 0 {
		out = append(out, fmt.Sprintf("processes %v in cgroup %s", pids, c.cgroupName()))
	}
	if dirs := cgroupDirs(c); len(dirs) > 0 {
		out = append(out, fmt.Sprintf("%d cgroup directories (%s)", len(dirs), dirs[len(dirs)-1]))
	}
	if pids := netnsPIDs(c); len(pids) > 0 {
		out = append(out, fmt.Sprintf("processes %v in network namespace %s", pids, c.netns()))
	}
	if netnsExists(c) {
		out = append(out, "network namespace "+c.netns())
	}
	if m := ourMounts(c); len(m) > 0 {
		out = append(out, "mounts "+strings.Join(m, ", "))
	}
	return out
}

// ourMounts lists mounts of the machine's mount namespace that belong to the cluster.
func ourMounts(c *config) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if mp := f[4]; mp == c.netnsPath() || mp == c.StateDir || strings.HasPrefix(mp, c.StateDir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// netnsPIDs lists the processes in the cluster's network namespace, other than this one.
func netnsPIDs(c *config) []int {
	ino, ok := netnsInode(c)
	if !ok {
		return nil
	}
	want := fmt.Sprintf("net:[%d]", ino)
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net")); err == nil && l == want {
			out = append(out, pid)
		}
	}
	return out
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is dead for our purposes (its parent, not us, reaps it).
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// supervisorPID is the running supervisor of this cluster, 0 if none. The PID file is trusted
// only if that process is this cluster's supervisor (PIDs are reused).
func (c *config) supervisorPID() int {
	b, err := os.ReadFile(c.path("supervisor.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !alive(pid) {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0
	}
	args := strings.Split(string(cmdline), "\x00")
	if !slices.Contains(args, "supervise") || !slices.Contains(args, c.StateDir) {
		return 0
	}
	return pid
}

// preflight says exactly what this machine lacks to run containers, all of it at once.
func preflight(c *config) error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces, cgroups and mounts need it)")
	}
	for cmd, pkg := range map[string]string{
		"containerd": "containerd", "containerd-shim-runc-v2": "containerd", "ctr": "containerd",
		"runc": "runc", "iptables": "iptables", "ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux",
		"sysctl": "procps",
	} {
		if _, err := exec.LookPath(cmd); err != nil {
			missing = append(missing, fmt.Sprintf("the %s command (Debian package %s)", cmd, pkg))
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat("/usr/lib/cni/" + p); err != nil {
			missing = append(missing, fmt.Sprintf("the CNI plugin /usr/lib/cni/%s (Debian package containernetworking-plugins)", p))
		}
	}
	for dir, bins := range map[string][]string{
		c.EnvtestDir: {"kube-apiserver", "etcd"},
		c.NodeBinDir: {"kubelet", "kube-controller-manager", "kube-scheduler"},
	} {
		for _, b := range bins {
			if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
				missing = append(missing, fmt.Sprintf("%s in %q (hack/setup-envtest.sh, hack/setup-kube-node.sh build it)", b, dir))
			}
		}
	}
	if b, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(b), "\toverlay\n") {
		missing = append(missing, "the overlay filesystem in the kernel (containerd's overlayfs snapshotter; `modprobe overlay`)")
	}
	if _, err := os.Stat("/dev/kmsg"); err != nil {
		missing = append(missing, "/dev/kmsg (the kubelet's OOM watcher reads it)")
	}
	if err := capSysAdmin(); err != nil {
		missing = append(missing, err.Error())
	}
	missing = append(missing, missingControllers()...)
	if len(missing) > 0 {
		return fmt.Errorf("this machine cannot run the local cluster; missing:\n  - %s", strings.Join(missing, "\n  - "))
	}
	return nil
}

// missingControllers names the cgroup controllers the kubelet needs that no hierarchy offers.
func missingControllers() []string {
	have := map[string]bool{}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return []string{"/proc/self/mountinfo: " + err.Error()}
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if sep < 0 || sep+3 >= len(f) {
			continue
		}
		switch f[sep+1] {
		case "cgroup": // v1: the super options name the hierarchy's controllers, e.g. rw,cpu
			for _, opt := range strings.Split(f[sep+3], ",") {
				have[opt] = true
			}
		case "cgroup2":
			if c, err := os.ReadFile(filepath.Join(f[4], "cgroup.controllers")); err == nil {
				for _, ctrl := range strings.Fields(string(c)) {
					have[ctrl] = true
					if ctrl == "cpu" {
						have["cpuacct"] = true // v2's cpu controller accounts too
					}
				}
			}
		}
	}
	var out []string
	for _, ctrl := range []string{"cpu", "cpuacct", "cpuset", "memory", "pids"} {
		if !have[ctrl] {
			out = append(out, fmt.Sprintf("the %s cgroup controller (no hierarchy mounted under /sys/fs/cgroup offers it)", ctrl))
		}
	}
	return out
}

func capSysAdmin() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return err
			}
			if caps&(1<<21) == 0 {
				return errors.New("CAP_SYS_ADMIN (mounts and namespaces need it; a container must be privileged)")
			}
			return nil
		}
	}
	return nil
}

// load imports docker-archive tarballs into the node's containerd, where pods with
// imagePullPolicy Never or IfNotPresent find them.
func load(c *config, files []string) error {
	pid := c.supervisorPID()
	if pid == 0 {
		return fmt.Errorf("cluster %q is not running", c.Name)
	}
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return err
		}
		for _, hidden := range tmpfsMounts {
			if strings.HasPrefix(abs, hidden+"/") {
				return fmt.Errorf("%s: the cluster does not see files under %s (its own tmpfs there); put the tarball elsewhere", abs, hidden)
			}
		}
		// containerd's socket is in the cluster's mount namespace: enter it to reach it.
		if err := run("nsenter", "--target", strconv.Itoa(pid), "--mount", "--net", "--",
			"ctr", "--address", c.containerdSocket(), "-n", "k8s.io", "images", "import", abs); err != nil {
			return err
		}
	}
	return nil
}

// execIn replaces this process with cmd inside the cluster's network namespace, with KUBECONFIG
// set to the admin kubeconfig.
func execIn(c *config, cmd []string) error {
	if len(cmd) == 0 {
		return errors.New("exec: no command")
	}
	if !netnsExists(c) {
		return fmt.Errorf("cluster %q is not running", c.Name)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return err
	}
	env := append(os.Environ(), "KUBECONFIG="+c.kubeconfig(), "LOCAL_CLUSTER_NAME="+c.Name)
	return syscall.Exec(nsenter, append([]string{"nsenter", "--net=" + c.netnsPath(), "--"}, cmd...), env)
}

func printEnv(c *config) error {
	fmt.Printf("export KUBECONFIG=%s\n", c.kubeconfig())
	fmt.Printf("export LOCAL_CLUSTER_NAME=%s\n", c.Name)
	fmt.Printf("export LOCAL_CLUSTER_NETNS=%s\n", c.netns())
	fmt.Printf("export LOCAL_CLUSTER_NODE_IP=%s\n", c.NodeIP)
	fmt.Printf("# The API server (%s) is reachable only inside the network namespace:\n", c.apiServerURL())
	fmt.Printf("#   nsenter --net=%s -- kubectl get nodes    (or: hack/local-cluster.sh shell)\n", c.netnsPath())
	return nil
}

var _ = fs.ErrNotExist
