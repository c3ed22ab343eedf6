package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// run runs a command and returns its error with its output.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// inNetns runs a command inside the cluster's network namespace. nsenter, unlike `ip netns exec`,
// leaves /sys alone (ip netns exec remounts it, hiding the cgroup mounts).
func inNetns(c *config, name string, args ...string) error {
	return run("nsenter", append([]string{"--net=" + c.netnsPath(), "--", name}, args...)...)
}

// createNetns makes the cluster's network: a namespace whose lo holds the node IP, with no other
// interface and no default route, so nothing in it can reach beyond this machine. Forwarding and
// bridge netfilter are switched on in it only (these sysctls are per network namespace); the
// host's are left alone. The one Service address the cluster needs — the kubernetes Service that
// in-cluster clients dial — is a DNAT rule to the API server, in the namespace's own iptables.
func createNetns(c *config) error {
	if err := run("ip", "netns", "add", c.netns()); err != nil {
		return err
	}
	steps := [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "addr", "add", c.NodeIP + "/32", "dev", "lo"},
		{"sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
	}
	for _, s := range steps {
		if err := inNetns(c, s[0], s[1:]...); err != nil {
			return err
		}
	}
	// bridge-nf lets iptables see traffic between two pods on the bridge (a pod calling a
	// Service whose endpoint is on the same bridge). Present only when br_netfilter is loaded;
	// nothing here needs it, so its absence is not an error.
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil {
		if err := inNetns(c, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"); err != nil {
			return err
		}
	}
	for _, chain := range []string{"PREROUTING", "OUTPUT"} {
		if err := inNetns(c, "iptables", "-w", "-t", "nat", "-A", chain, "-d", c.ServiceIP+"/32", "-p", "tcp", "--dport", "443",
			"-j", "DNAT", "--to-destination", c.NodeIP+":6443"); err != nil {
			return fmt.Errorf("the kubernetes Service rule: %w", err)
		}
	}
	return nil
}

func netnsExists(c *config) bool {
	_, err := os.Stat(c.netnsPath())
	return err == nil
}

// netnsInode identifies the namespace, to find processes that are in it.
func netnsInode(c *config) (uint64, bool) {
	var st statT
	if err := stat(c.netnsPath(), &st); err != nil {
		return 0, false
	}
	return st.Ino, true
}
