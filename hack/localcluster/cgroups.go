package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupMounts lists the mount points of every cgroup hierarchy (v1 controllers, the named
// systemd hierarchy and a v2 "unified" one, as this machine's hybrid layout has).
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		if t := fields[sep+1]; (t == "cgroup" || t == "cgroup2") && !slices.Contains(out, fields[4]) {
			out = append(out, fields[4])
		}
	}
	return out, sc.Err()
}

// createCgroups makes NAME and NAME/daemons in every hierarchy. The kubelet puts the pods under
// NAME (its cgroupRoot), the supervisor and the components it starts (containerd shims included)
// live in NAME/daemons: one subtree holds every process of the cluster.
func createCgroups(c *config) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	for _, mp := range mounts {
		for _, dir := range []string{filepath.Join(mp, c.cgroupName()), filepath.Join(mp, c.cgroupName(), "daemons")} {
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("creating cgroup %s: %w", dir, err)
			}
			// A new v1 cpuset has no CPUs or memory nodes and accepts no process until given
			// its parent's.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				parent, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
				if err != nil {
					continue
				}
				if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
					return fmt.Errorf("%s/%s: %w", dir, f, err)
				}
			}
		}
	}
	return nil
}

// joinCgroups moves pid into NAME/daemons of every hierarchy.
func joinCgroups(c *config, pid int) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	for _, mp := range mounts {
		procs := filepath.Join(mp, c.cgroupName(), "daemons", "cgroup.procs")
		if err := os.WriteFile(procs, []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("joining %s: %w", procs, err)
		}
	}
	return nil
}

// leaveCgroups moves pid back to the root of every hierarchy, so that the cluster's cgroups can
// be removed while it still runs.
func leaveCgroups(pid int) {
	mounts, _ := cgroupMounts()
	for _, mp := range mounts {
		_ = os.WriteFile(filepath.Join(mp, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
	}
}

// cgroupDirs lists the cluster's cgroup directories, deepest first.
func cgroupDirs(c *config) []string {
	mounts, _ := cgroupMounts()
	var dirs []string
	for _, mp := range mounts {
		root := filepath.Join(mp, c.cgroupName())
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs
}

// cgroupPIDs lists every process in the cluster's cgroups.
func cgroupPIDs(c *config) []int {
	var pids []int
	for _, dir := range cgroupDirs(c) {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// killCgroups SIGKILLs every process in the cluster's cgroups but the caller, freezing them first
// (when the freezer hierarchy is there) so that none can fork while they are being killed, and
// waits until they are gone.
func killCgroups(c *config, self int) error {
	var freezer string
	mounts, _ := cgroupMounts()
	for _, mp := range mounts {
		if _, err := os.Stat(filepath.Join(mp, c.cgroupName(), "freezer.state")); err == nil {
			freezer = filepath.Join(mp, c.cgroupName(), "freezer.state")
		}
	}
	// The caller may be inside the tree (the supervisor): it must not freeze itself.
	if freezer != "" && self == 0 {
		_ = os.WriteFile(freezer, []byte("FROZEN"), 0o644)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []int
		for _, pid := range cgroupPIDs(c) {
			if pid != self {
				left = append(left, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if freezer != "" && self == 0 {
			_ = os.WriteFile(freezer, []byte("THAWED"), 0o644)
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in cgroup %s did not die", left, c.cgroupName())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeCgroups removes the cluster's cgroup directories, deepest first. A cgroup whose last
// process just died can be busy for a moment, hence the retries.
func removeCgroups(c *config) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var lastErr error
		for _, dir := range cgroupDirs(c) {
			if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				lastErr = fmt.Errorf("removing cgroup %s: %w", dir, err)
			}
		}
		if lastErr == nil || time.Now().After(deadline) {
			return lastErr
		}
		time.Sleep(100 * time.Millisecond)
	}
}
