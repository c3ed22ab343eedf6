#!/usr/bin/env bash
# test-cluster.sh is `make test-cluster`: it brings up a local cluster (hack/local-cluster.sh,
# named "test" so that a contributor's own "local" cluster is left alone), builds the manager and
# the two consumer images (a job reading the Secret; a Go SDK client of the token-server sidecar)
# without a daemon and imports them, runs the test/cluster package inside the cluster's network
# namespace, and tears the cluster down whatever happened.
#
# Needs root. The first run builds the Kubernetes binaries through the Go module proxy (see
# docs/local-cluster.md for the times); later runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOCAL_CLUSTER_NAME="${LOCAL_CLUSTER_NAME:-test}"
TESTFLAGS="${CLUSTER_TESTFLAGS:-}"

log() { echo "[$(date +%H:%M:%S)] test-cluster: $*" >&2; }
start=$(date +%s)
work="$(mktemp -d)"
status=0
finish() {
  status=$?
  log "tearing the cluster down"
  hack/local-cluster.sh down || status=1
  rm -rf "${work}"
  log "done in $(($(date +%s) - start)) s (exit ${status})"
  exit "${status}"
}
trap finish EXIT

helm="$(hack/install-helm.sh)"
hack/local-cluster.sh up >/dev/null
up=$(date +%s)
log "cluster up after $((up - start)) s"

# Tags other than "latest": the installer's Deployment then defaults to imagePullPolicy
# IfNotPresent and uses the imported image (no registry is reachable).
manager_image="dbtoken.local/databricks-token-operator:dev"
consumer_image="dbtoken.local/consumer:dev"
sdk_consumer_image="dbtoken.local/sdk-consumer:dev"
go run ./hack/image -kind manager -ref "${manager_image}" -o "${work}/manager.tar"
go run ./hack/image -kind consumer -ref "${consumer_image}" -o "${work}/consumer.tar"
go run ./hack/image -kind sdk-consumer -ref "${sdk_consumer_image}" -o "${work}/sdk-consumer.tar"
hack/local-cluster.sh load "${work}/manager.tar" "${work}/consumer.tar" "${work}/sdk-consumer.tar"
go test -c -o "${work}/cluster.test" ./test/cluster
log "images and test binary ready after $(($(date +%s) - up)) s"

# The test binary runs inside the cluster's network namespace, where the API server, the pods and
# the test's own identity provider, workspace and DNS meet on the node's address.
eval "$(hack/local-cluster.sh env)"
# shellcheck disable=SC2086 # TESTFLAGS is a list of flags
hack/local-cluster.sh exec -- env DBTOKEN_CLUSTER_TEST=1 HELM="${helm}" \
  CLUSTER_TEST_REPO_ROOT="${CLUSTER_TEST_REPO_ROOT:-${PWD}}" LOCAL_CLUSTER_NODE_IP="${LOCAL_CLUSTER_NODE_IP}" \
  CLUSTER_TEST_MANAGER_IMAGE="${manager_image}" CLUSTER_TEST_CONSUMER_IMAGE="${consumer_image}" \
  CLUSTER_TEST_SDK_CONSUMER_IMAGE="${sdk_consumer_image}" \
  "${work}/cluster.test" -test.v -test.timeout=30m ${TESTFLAGS}
