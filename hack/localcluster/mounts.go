package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// tmpfsMounts are covered with a fresh tmpfs inside the cluster's mount namespace. The components
// have paths there that cannot be configured (containerd's shim sockets and runc state under
// /run/containerd, the pods' network namespaces under /run/netns, the kubelet's
// /var/log/containers links, the CNI result cache in /var/lib/cni); under a tmpfs of the
// cluster's own they never touch the machine's directories and vanish with the namespace.
var tmpfsMounts = []string{"/run", "/var/log", "/var/lib"}

// kernelTunables are the sysctls the kubelet sets at start-up to the values here unless they
// already have them (container_manager_linux.go, setupKernelTunables). They are not namespaced:
// the kubelet would change them for the whole machine. Inside the cluster's mount namespace a file
// holding the wanted value is bind-mounted over each, so the kubelet reads what it wants and
// leaves the machine's settings alone.
var kernelTunables = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// setupMounts runs in the supervisor, in the cluster's mount namespace (unshare --mount
// --propagation slave: the machine's mounts are seen, none of the cluster's leak out).
func setupMounts(c *config) error {
	for _, dir := range append(append([]string(nil), tmpfsMounts...), c.rt()) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=755"); err != nil {
			return fmt.Errorf("mounting a tmpfs on %s: %w", dir, err)
		}
	}
	dir := c.rt("sysctl")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, value := range kernelTunables {
		src := filepath.Join(dir, strings.ReplaceAll(name, "/", "."))
		if err := os.WriteFile(src, []byte(value+"\n"), 0o644); err != nil {
			return err
		}
		dst := "/proc/sys/" + name
		if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("shielding %s from the kubelet: %w", dst, err)
		}
	}
	return nil
}
