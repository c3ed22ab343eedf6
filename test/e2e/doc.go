// Package e2e runs the real manager binary (cmd/manager) as a child process against an envtest
// kube-apiserver and the test identity provider (test/idp), and applies config/ with kubectl:
// what an operator of the operator sees. The tests live in the _test.go files; `make test` runs
// them with the envtest binaries from hack/setup-envtest.sh.
package e2e
