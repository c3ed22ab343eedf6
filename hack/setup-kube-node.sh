#!/usr/bin/env bash
# setup-kube-node.sh builds the node and controller binaries that hack/local-cluster.sh needs next
# to hack/setup-envtest.sh's kube-apiserver and etcd: kubelet, kube-controller-manager and
# kube-scheduler. They are built from source through the Go module proxy (this project's machines
# reach no download site), the same way as the envtest binaries, and cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/databricks-token-operator keyed by version and recipe.
#
# kube-proxy is not built: the local cluster needs exactly one Service address (the `kubernetes`
# Service that in-cluster clients such as the operator dial), and hack/local-cluster.sh gives it one
# DNAT rule inside the cluster's network namespace.
#
# Prints the binaries directory on stdout (last line); progress goes to stderr.
set -euo pipefail

K8S_VERSION="${LOCAL_CLUSTER_K8S_VERSION:-1.37.2}"
STAGING_VERSION="v0.${K8S_VERSION#*.}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/databricks-token-operator/kube-node"
# Bump RECIPE when the way the binaries are built changes, so caches built the old way are not reused.
RECIPE=1
BIN_DIR="${CACHE_ROOT}/k8s-${K8S_VERSION}-$(go env GOOS)-$(go env GOARCH)-r${RECIPE}"
BINARIES=(kubelet kube-controller-manager kube-scheduler)

log() { echo "[$(date +%H:%M:%S)] setup-kube-node: $*" >&2; }

complete() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x "${BIN_DIR}/${b}" ]] || return 1; done
}

if complete; then
  echo "${BIN_DIR}"
  exit 0
fi

mkdir -p "${CACHE_ROOT}"
# One builder at a time: two checkouts running `make test-cluster` must not race on the cache.
exec 9>"${CACHE_ROOT}/.lock"
flock 9
if complete; then
  echo "${BIN_DIR}"
  exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

# k8s.io/kubernetes points its staging modules at ./staging/src/...; a module that requires it must
# replace each of them with the published version. Read the list from its own go.mod.
gomod="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
{
  echo "module localcluster/kube-node"
  echo
  echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')"
  echo
  echo "require k8s.io/kubernetes v${K8S_VERSION}"
  echo
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "${gomod}" |
    awk -v v="${STAGING_VERSION}" '{print "replace " $1 " => " $1 " " v}'
} >"${WORK}/go.mod"

# One main package per binary, as upstream's cmd/<name>/<name>.go (same registrations), and a
# tools.go that imports each app package so `go mod tidy` keeps every dependency they need.
mkdir -p "${WORK}/kubelet" "${WORK}/kube-controller-manager" "${WORK}/kube-scheduler"
cat >"${WORK}/tools.go" <<'GO'
//go:build tools

// Package tools pins the upstream command packages this module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
)
GO
cat >"${WORK}/kubelet/main.go" <<'GO'
// Command kubelet is the upstream node agent.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() { os.Exit(cli.Run(app.NewKubeletCommand(context.Background()))) }
GO
cat >"${WORK}/kube-controller-manager/main.go" <<'GO'
// Command kube-controller-manager is the upstream controller manager.
package main

import (
	"os"
	_ "time/tzdata" // CronJob time zones

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() { os.Exit(cli.Run(app.NewControllerManagerCommand())) }
GO
cat >"${WORK}/kube-scheduler/main.go" <<'GO'
// Command kube-scheduler is the upstream scheduler.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() { os.Exit(cli.Run(app.NewSchedulerCommand())) }
GO

# The version must be stamped: the kubelet reports it as the node's kubeletVersion, and components
# compare it with the apiserver's.
minor="${K8S_VERSION#*.}"
minor="${minor%%.*}"
pkg=k8s.io/component-base/version
ver="-X ${pkg}.gitVersion=v${K8S_VERSION} -X ${pkg}.gitMajor=${K8S_VERSION%%.*} -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"

mkdir -p "${WORK}/out"
(
  cd "${WORK}"
  go mod tidy >/dev/null 2>&1 || go mod tidy
  # Built one at a time rather than in one `go build` so that each binary's time is reported;
  # the packages they share are compiled once (the Go build cache).
  for b in "${BINARIES[@]}"; do
    start=$(date +%s)
    log "building ${b} v${K8S_VERSION} from the Go module proxy (first run only; minutes on 2 cores)..."
    go build -trimpath -ldflags "-s -w ${ver}" -o "out/${b}" "./${b}"
    log "built ${b} in $(($(date +%s) - start)) s"
  done
)
mkdir -p "${BIN_DIR}"
for b in "${BINARIES[@]}"; do mv "${WORK}/out/${b}" "${BIN_DIR}/"; done
log "cached in ${BIN_DIR}"
echo "${BIN_DIR}"
