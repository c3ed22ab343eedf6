#!/usr/bin/env bash
# local-cluster.sh runs a single-node Kubernetes cluster on this machine, for `make test-cluster`
# and for contributors (docs/local-cluster.md).
#
#   hack/local-cluster.sh up       build what is missing (first run only), start, print the kubeconfig
#   hack/local-cluster.sh down     stop it; no process, mount, cgroup or network namespace is left
#   hack/local-cluster.sh env      print KUBECONFIG and how to reach the API server
#   hack/local-cluster.sh shell    a shell inside the cluster's network namespace, KUBECONFIG set
#   hack/local-cluster.sh exec -- CMD...   run CMD there (e.g. kubectl get pods -A)
#   hack/local-cluster.sh load TARBALL...  import docker-archive images into the node
#   hack/local-cluster.sh status
#
# LOCAL_CLUSTER_NAME (default "local") names the cluster, so that several can run at once.
# Needs root. Installs containerd, runc, the CNI plugins and iptables from Debian when missing;
# builds kube-apiserver and etcd (hack/setup-envtest.sh) and the kubelet, controller manager and
# scheduler (hack/setup-kube-node.sh) through the Go module proxy on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."

cmd="${1:-}"
[[ -n "${cmd}" ]] || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
shift

log() { echo "[$(date +%H:%M:%S)] local-cluster: $*" >&2; }

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/databricks-token-operator"
BIN="${CACHE_ROOT}/local-cluster/bin/localcluster"

# install_packages installs what runs containers when it is missing. Only Debian is known: on other
# systems up's own checks say what is missing.
install_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    log "missing ${missing[*]}, and cannot install them here (needs root and apt-get); up will say what is missing"
    return 0
  fi
  log "installing ${missing[*]} from Debian..."
  # The package scripts must not start a containerd of the machine's own.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
      log "apt-get install ${missing[*]} failed; up will say what is missing"
  fi
}

# The supervisor is this program: build it (seconds, cached by Go) so it matches the checkout.
mkdir -p "$(dirname "${BIN}")"
go build -o "${BIN}.tmp" ./hack/localcluster && mv "${BIN}.tmp" "${BIN}"

case "${cmd}" in
up)
  install_packages
  start=$(date +%s)
  envtest="$(hack/setup-envtest.sh)"
  node="$(hack/setup-kube-node.sh)"
  (($(date +%s) - start > 5)) && log "Kubernetes binaries ready after $(($(date +%s) - start)) s"
  exec "${BIN}" up -module-root "${PWD}" -envtest-dir "${envtest}" -node-bin-dir "${node}" "$@"
  ;;
shell)
  exec "${BIN}" exec "$@" -- "${SHELL:-/bin/bash}"
  ;;
down | env | exec | load | status)
  exec "${BIN}" "${cmd}" -module-root "${PWD}" "$@"
  ;;
*)
  echo "local-cluster.sh: unknown command ${cmd}" >&2
  exit 2
  ;;
esac
