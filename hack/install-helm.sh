#!/usr/bin/env bash
# install-helm.sh builds the pinned helm CLI from source through the Go module proxy (this
# project's machines reach no download site) and caches it under
# ${XDG_CACHE_HOME:-$HOME/.cache}/databricks-token-operator/bin, keyed by version, so later runs
# and CI reuse it. helm is a tool, not a dependency: it is never added to go.mod.
#
# Prints the helm binary's path on stdout (last line); progress goes to stderr.
# Usage: HELM="$(hack/install-helm.sh)"; "${HELM}" lint dist/chart
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/databricks-token-operator/bin"
HELM_BIN="${CACHE_ROOT}/helm-${HELM_VERSION}"

log() { echo "install-helm: $*" >&2; }

if [[ -x "${HELM_BIN}" ]]; then
  echo "${HELM_BIN}"
  exit 0
fi

mkdir -p "${CACHE_ROOT}"
# One builder at a time: parallel test runs must not race on the same cache entry.
exec 9>"${CACHE_ROOT}/.helm.lock"
flock 9
if [[ -x "${HELM_BIN}" ]]; then
  echo "${HELM_BIN}"
  exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
log "building helm ${HELM_VERSION} from the Go module proxy (first run only, about a minute or more)..."
# `go install pkg@version` ignores the current module; run it from the scratch directory and without
# the caller's GOFLAGS (e.g. -mod=vendor) so that nothing of this project leaks into the build.
(
  cd "${WORK}"
  env -u GOFLAGS GOBIN="${WORK}/bin" CGO_ENABLED=0 \
    go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
)
mv "${WORK}/bin/helm" "${HELM_BIN}"
log "cached in ${HELM_BIN}"
echo "${HELM_BIN}"
