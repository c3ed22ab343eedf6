package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
)

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// pauseImage is the pod sandbox image, built by `up` (test/cluster/image) and imported before the
// kubelet starts. No registry is reachable, so containerd must never need to pull it.
const pauseImage = "dbtoken.local/pause:1"

// renderConfigs writes the component configuration files into the state directory.
func renderConfigs(c *config) error {
	files := map[string]string{
		// No server is reachable from the node: pods resolve names only through what a test
		// serves on the node IP (port 53), so that a lookup fails fast instead of timing out
		// against a server that is not there.
		c.path("resolv.conf"): fmt.Sprintf("nameserver %s\noptions timeout:1 attempts:1\n", c.NodeIP),

		c.path("containerd.toml"): fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
# Plugins that would create directories outside root/state, or that this node does not use.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  # Without CAP_SYS_RESOURCE runc cannot lower a process's oom_score_adj below its parent's,
  # and fails every sandbox with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[5]q
`, c.rt("containerd", "root"), c.rt("containerd", "state"), c.containerdSocket(), pauseImage, c.path("cni")),

		// One bridge, no masquerading (there is nowhere to masquerade to): pods reach each other
		// and the node's addresses, nothing else.
		c.path("cni", "10-dbtoken.conflist"): fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "dbtoken",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    }
  ]
}
`, c.PodCIDR, c.rt("cni-ipam")),

		c.path("kubelet.yaml"): fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[2]q}
authorization:
  mode: Webhook
tlsCertFile: %[3]q
tlsPrivateKeyFile: %[4]q
containerRuntimeEndpoint: unix://%[5]s
# cgroup v1 only on these machines: cgroupfs, and the v1 deprecation gate opened. containerd 1.6
# does not answer the CRI RuntimeConfig call, so the kubelet keeps this driver (1.37 falls back;
# 1.38 will not).
cgroupDriver: cgroupfs
failCgroupV1: false
# Pods live under the cluster's own cgroup, so that down finds and removes every one of them.
cgroupRoot: /%[6]s
cgroupsPerQOS: true
resolvConf: %[7]q
clusterDomain: cluster.local
failSwapOn: false
# A Secret volume catches up within ~10 s rather than the default minute.
syncFrequency: 10s
podLogsDir: %[8]q
# Images cannot be pulled again here: never garbage-collect them, and do not evict on a
# nearly full disk of a developer machine.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
serializeImagePulls: false
maxPods: 110
rotateCertificates: false
serverTLSBootstrap: false
`, c.NodeIP, c.pki("ca.crt"), c.pki("kubelet-serving.crt"), c.pki("kubelet-serving.key"),
			c.containerdSocket(), c.cgroupName(), c.path("resolv.conf"), c.rt("pod-logs")),
	}
	for f, content := range files {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// component is one process of the cluster.
type component struct {
	name string
	bin  string
	args []string
}

func etcdComponent(c *config) component {
	return component{"etcd", c.bin(c.EnvtestDir, "etcd"), []string{
		"--name=" + c.nodeName(),
		"--data-dir=" + c.rt("etcd"),
		"--listen-client-urls=http://127.0.0.1:2379",
		"--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380",
		"--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=" + c.nodeName() + "=http://127.0.0.1:2380",
		"--listen-metrics-urls=http://127.0.0.1:2381",
		// A throw-away cluster on tmpfs: durability buys nothing.
		"--unsafe-no-fsync",
		"--log-level=warn",
	}}
}

func apiServerComponent(c *config) component {
	return component{"kube-apiserver", c.bin(c.EnvtestDir, "kube-apiserver"), []string{
		"--etcd-servers=http://127.0.0.1:2379",
		"--advertise-address=" + c.NodeIP,
		"--secure-port=6443",
		"--cert-dir=" + c.rt("apiserver"),
		"--tls-cert-file=" + c.pki("apiserver.crt"),
		"--tls-private-key-file=" + c.pki("apiserver.key"),
		"--client-ca-file=" + c.pki("ca.crt"),
		"--service-cluster-ip-range=" + c.ServiceCIDR,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.pki("sa.pub"),
		"--service-account-signing-key-file=" + c.pki("sa.key"),
		"--kubelet-client-certificate=" + c.pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + c.pki("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + c.pki("ca.crt"),
		// kubectl logs/exec would otherwise look the node's name up in DNS, which has no server.
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true",
		"--profiling=false",
	}}
}

func controllerManagerComponent(c *config) component {
	kc := c.path("controller-manager.kubeconfig")
	return component{"kube-controller-manager", c.bin(c.NodeBinDir, "kube-controller-manager"), []string{
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		"--secure-port=10257",
		"--cert-dir=" + c.rt("controller-manager"),
		"--leader-elect=false",
		// Each controller gets its own ServiceAccount token, as on a real control plane, and
		// ServiceAccount tokens can be minted at all.
		"--use-service-account-credentials",
		"--service-account-private-key-file=" + c.pki("sa.key"),
		// Publishes the kube-root-ca.crt ConfigMap in-cluster clients verify the API server with.
		"--root-ca-file=" + c.pki("ca.crt"),
		"--controllers=*,-nodeipam",
	}}
}

func schedulerComponent(c *config) component {
	kc := c.path("scheduler.kubeconfig")
	return component{"kube-scheduler", c.bin(c.NodeBinDir, "kube-scheduler"), []string{
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		"--secure-port=10259",
		"--leader-elect=false",
	}}
}

func containerdComponent(c *config) component {
	return component{"containerd", "containerd", []string{"--config=" + c.path("containerd.toml"), "--log-level=warn"}}
}

func kubeletComponent(c *config) component {
	return component{"kubelet", c.bin(c.NodeBinDir, "kubelet"), []string{
		"--config=" + c.path("kubelet.yaml"),
		"--kubeconfig=" + c.path("kubelet.kubeconfig"),
		"--root-dir=" + c.rt("kubelet"),
		"--cert-dir=" + c.rt("kubelet", "pki"),
		"--hostname-override=" + c.nodeName(),
		"--node-ip=" + c.NodeIP,
	}}
}
