#!/usr/bin/env bash
# setup-envtest.sh builds the kube-apiserver and etcd binaries that envtest needs, from source,
# through the Go module proxy (this project's machines reach no download site), and caches them
# under ${XDG_CACHE_HOME:-$HOME/.cache} keyed by version so later runs and CI reuse them.
#
# Prints the assets directory on stdout (last line); progress goes to stderr.
# Usage: KUBEBUILDER_ASSETS="$(hack/setup-envtest.sh)" go test ./...
set -euo pipefail

K8S_VERSION="${ENVTEST_K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ENVTEST_ETCD_VERSION:-3.6.16}"
# k8s.io/kubernetes v1.X.Y publishes its staging modules (k8s.io/api, client-go, ...) as v0.X.Y.
STAGING_VERSION="v0.${K8S_VERSION#*.}"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/databricks-token-operator/envtest"
# Bump RECIPE when the way the binaries are built changes, so caches built the old way are not reused.
RECIPE=2
ASSETS="${CACHE_ROOT}/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-$(go env GOOS)-$(go env GOARCH)-r${RECIPE}"

log() { echo "setup-envtest: $*" >&2; }

if [[ -x "${ASSETS}/kube-apiserver" && -x "${ASSETS}/etcd" ]]; then
  echo "${ASSETS}"
  exit 0
fi

mkdir -p "${CACHE_ROOT}"
# One builder at a time: parallel `make test` and `make demo` must not race on the same cache.
exec 9>"${CACHE_ROOT}/.lock"
flock 9
if [[ -x "${ASSETS}/kube-apiserver" && -x "${ASSETS}/etcd" ]]; then
  echo "${ASSETS}"
  exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
mkdir -p "${WORK}/out"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

build_etcd() {
  log "building etcd v${ETCD_VERSION} from the Go module proxy (first run only, about a minute)..."
  local dir="${WORK}/etcd"
  mkdir -p "${dir}"
  cat >"${dir}/main.go" <<'GO'
// Command etcd is the upstream etcd server, built for envtest.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (
    cd "${dir}"
    go mod init envtest/etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >/dev/null 2>&1
    go mod tidy >/dev/null 2>&1
    go build -trimpath -ldflags "-s -w" -o "${WORK}/out/etcd" .
  )
}

build_kube_apiserver() {
  log "building kube-apiserver v${K8S_VERSION} from the Go module proxy (first run only, about 4-6 minutes on 2 cores)..."
  local dir="${WORK}/apiserver"
  mkdir -p "${dir}"
  cat >"${dir}/main.go" <<'GO'
// Command kube-apiserver is the upstream API server, built for envtest.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
GO
  # k8s.io/kubernetes points its staging modules at ./staging/src/...; a module that requires it
  # must replace each of them with the published version. Read the list from its own go.mod.
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module envtest/kube-apiserver"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')"
    echo
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    echo
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "${gomod}" |
      awk -v v="${STAGING_VERSION}" '{print "replace " $1 " => " $1 " " v}'
  } >"${dir}/go.mod"
  # The version must be stamped: pod-security admission parses gitMajor and gitMinor at start-up
  # and panics on empty values.
  local minor="${K8S_VERSION#*.}"
  minor="${minor%%.*}"
  local pkg=k8s.io/component-base/version
  local ver="-X ${pkg}.gitVersion=v${K8S_VERSION} -X ${pkg}.gitMajor=${K8S_VERSION%%.*} -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
  (
    cd "${dir}"
    go mod tidy >/dev/null 2>&1
    go build -trimpath -ldflags "-s -w ${ver}" -o "${WORK}/out/kube-apiserver" .
  )
}

build_etcd
build_kube_apiserver
mkdir -p "${ASSETS}"
mv "${WORK}/out/etcd" "${WORK}/out/kube-apiserver" "${ASSETS}/"
log "cached in ${ASSETS}"
echo "${ASSETS}"
