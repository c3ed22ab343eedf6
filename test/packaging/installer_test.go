package packaging

import (
	"bytes"
	"context"
	"os"
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/dbtoken/databricks-token-operator/internal/testenv"
)

const installer = "dist/install.yaml"

// TestInstallerUpToDate re-renders config/default with the default image, as
// `make build-installer` does, and compares it with the committed dist/install.yaml.
func TestInstallerUpToDate(t *testing.T) {
	generated, err := testenv.RunScript(context.Background(), os.Stderr, "hack/render-default.sh", DefaultImage)
	if err != nil {
		t.Fatalf("hack/render-default.sh: %v", err)
	}
	committed := readFile(t, installer)
	if !bytes.Equal(committed, []byte(generated)) {
		t.Fatalf("%s is stale: run `make build-installer` and commit it. First difference at %s", installer, firstDiff(committed, []byte(generated)))
	}
}

// TestInstallerContents checks the objects a user gets from dist/install.yaml.
func TestInstallerContents(t *testing.T) {
	objs := parseManifests(t, readFile(t, installer))
	for _, want := range []struct{ kind, name string }{
		{"Namespace", "databricks-token-operator-system"},
		{"CustomResourceDefinition", "databrickscredentials.dbtoken.io"},
		{"ServiceAccount", "databricks-token-operator-controller-manager"},
		{"ClusterRole", "databricks-token-operator-manager-role"},
		{"ClusterRoleBinding", "databricks-token-operator-manager-rolebinding"},
		{"Role", "databricks-token-operator-leader-election-role"},
		{"RoleBinding", "databricks-token-operator-leader-election-rolebinding"},
		{"ClusterRole", "databricks-token-operator-metrics-auth-role"},
		{"ClusterRoleBinding", "databricks-token-operator-metrics-auth-rolebinding"},
		{"Service", "databricks-token-operator-controller-manager-metrics-service"},
		{"Deployment", "databricks-token-operator-controller-manager"},
	} {
		if find(objs, want.kind, want.name) == nil {
			t.Errorf("%s has no %s %s; it has %v", installer, want.kind, want.name, names(objs))
		}
	}
	var d appsv1.Deployment
	decode(t, only(t, objs, "Deployment"), &d)
	if got := d.Spec.Template.Spec.Containers[0].Image; got != DefaultImage {
		t.Errorf("manager image = %q, want %q", got, DefaultImage)
	}
}

// TestInstallerAppliesToAPIServer applies dist/install.yaml to a real kube-apiserver with a
// server-side dry run: every object must pass schema validation (strict field validation) and
// admission, and the Deployment must satisfy the restricted Pod Security Standard that its
// Namespace enforces.
func TestInstallerAppliesToAPIServer(t *testing.T) {
	data := readFile(t, installer)
	objs := parseManifests(t, data)
	// The dry run does not create the Namespace, so the namespaced objects need it to exist.
	ensureNamespace(t, only(t, objs, "Namespace").Name)
	r := dryRunApply(t, data)
	wantAllApplied(t, r, objs)
}

// TestPodSecurityWarningsAreReported makes sure the envtest apiserver runs Pod Security
// admission, so that the absence of warnings in the other tests means something.
func TestPodSecurityWarningsAreReported(t *testing.T) {
	ensureNamespace(t, "packaging-psa-check")
	privileged := []byte(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: privileged
  namespace: packaging-psa-check
spec:
  selector:
    matchLabels: {app: privileged}
  template:
    metadata:
      labels: {app: privileged}
    spec:
      containers:
      - name: c
        image: busybox
        securityContext:
          privileged: true
`)
	r := kubectl(t, privileged, "apply", "--dry-run=server", "-f", "-")
	if r.Err != nil {
		t.Fatalf("kubectl apply: %s", r)
	}
	if !bytes.Contains([]byte(r.Stderr), []byte("would violate PodSecurity")) {
		t.Fatalf("want a Pod Security warning for a privileged Deployment, got:\n%s", r)
	}
}
