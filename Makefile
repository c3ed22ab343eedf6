# databricks-token-operator Makefile. `make help` lists the targets.

# Image to build and deploy.
IMG ?= ghcr.io/dbtoken/databricks-token-operator:latest
# Where `make install`/`deploy` point kubectl (uses the current context by default).
KUBECTL ?= kubectl
CONTAINER_TOOL ?= docker
# Extra flags for `go test`, e.g. GOTESTFLAGS=-run=TestController.
GOTESTFLAGS ?=

CONTROLLER_GEN = go tool controller-gen
ENVTEST_ASSETS = $(shell hack/setup-envtest.sh)

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate the CRD and RBAC manifests under config/ from the API types and markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases

.PHONY: generate
generate: ## Generate DeepCopy methods for the API types.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -l -w $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: verify
verify: manifests generate ## Fail when generated files or formatting differ from what is committed.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@git diff --exit-code -- config api || { echo "generated files are stale: run 'make manifests generate' and commit"; exit 1; }

.PHONY: setup-envtest
setup-envtest: ## Build (first run only) and cache the kube-apiserver and etcd binaries for tests.
	@hack/setup-envtest.sh >/dev/null

.PHONY: test
test: manifests generate fmt vet setup-envtest ## Run unit, envtest controller and end-to-end tests.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test ./... $(GOTESTFLAGS) -coverprofile cover.out

.PHONY: test-long-runs
test-long-runs: ## The token-server sidecar with the Go SDK across three rotations of 2-minute tokens (~7 min; `make test` runs it with 20 s tokens).
	go test ./test/longruns/ -count=1 -v -timeout 20m -run 'TestGoSDKAcrossRotations' $(GOTESTFLAGS) -token-lifetime=2m

.PHONY: test-cluster
test-cluster: ## Install the image with dist/install.yaml and the Helm chart into a real local cluster and test it there (root; docs/local-cluster.md).
	hack/test-cluster.sh

.PHONY: test-monitoring
test-monitoring: setup-envtest ## Check and unit-test the alerts (promtool), the dashboard and config/prometheus (part of `make test`).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test ./test/monitoring/ -count=1 $(GOTESTFLAGS)

# Flags for the scale benchmark, e.g. BENCH_FLAGS="-n 10000 -m 100 -k 10000" (go run ./test/bench -h).
BENCH_FLAGS ?=

.PHONY: bench
bench: setup-envtest ## Run the micro-benchmarks and the scale benchmark (test/bench, BENCH_FLAGS=...); figures in docs/performance.md.
	go test -run='^$$' -bench=. -benchmem ./internal/... ./test/idp/
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./test/bench $(BENCH_FLAGS)

##@ Demo

# How long `make demo` runs once the operator is up (Go duration); empty runs until Ctrl-C.
DEMO_DURATION ?=

.PHONY: demo
demo: ## Run the operator locally against a fake Entra ID and workspace (DEMO_DURATION=200s to stop by itself).
	DEMO_DURATION="$(DEMO_DURATION)" go run ./cmd/demo

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager and token-server binaries into bin/.
	go build -o bin/manager ./cmd/manager
	go build -o bin/token-server ./cmd/token-server

.PHONY: run
run: manifests generate fmt vet ## Run the manager against the cluster in ~/.kube/config (install the CRD first).
	go run ./cmd/manager

.PHONY: docker-build
docker-build: ## Build the manager image (needs a container engine).
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the manager image.
	$(CONTAINER_TOOL) push $(IMG)

##@ Deployment

.PHONY: install
install: manifests ## Install the CRD into the cluster of the current kubectl context.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRD (and with it every DatabricksCredential) from the cluster.
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the operator with image IMG to the cluster of the current kubectl context.
	hack/render-default.sh "$(IMG)" | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: ## Remove the operator from the cluster.
	hack/render-default.sh "$(IMG)" | $(KUBECTL) delete --ignore-not-found -f -

##@ Packaging

.PHONY: build-installer
build-installer: manifests helm-crds ## Write dist/install.yaml (CRD, RBAC, Deployment, metrics Service) for image IMG; commit it built with the default IMG.
	@mkdir -p dist
	hack/render-default.sh "$(IMG)" > dist/install.yaml.tmp
	mv dist/install.yaml.tmp dist/install.yaml

.PHONY: helm-crds
helm-crds: manifests ## Copy the generated CRDs from config/crd/bases into the Helm chart (dist/chart/crds/).
	@mkdir -p dist/chart/crds
	rm -f dist/chart/crds/*.yaml
	cp config/crd/bases/*.yaml dist/chart/crds/

.PHONY: helm-lint
helm-lint: ## Lint the Helm chart in dist/chart (builds the pinned helm on first use).
	"$$(hack/install-helm.sh)" lint --strict dist/chart

.PHONY: docs
docs: manifests ## Regenerate docs/api-reference.md from the CRD schema (hack/crd-ref-docs).
	go run ./hack/crd-ref-docs -out docs/api-reference.md config/crd/bases
