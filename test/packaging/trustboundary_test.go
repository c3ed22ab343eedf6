package packaging

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestClusterCredentialLabelPolicyWorks applies the ValidatingAdmissionPolicy that
// docs/cluster-credentials.md offers for the ClusterDatabricksCredential trust boundary, as it is
// written there, and checks that it does what the doc says: only the platform team may set or
// change the selector label on a namespace; other namespace edits pass.
func TestClusterCredentialLabelPolicyWorks(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "cluster-credentials.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(\\s*apiVersion: admissionregistration\\.k8s\\.io/v1\n.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/cluster-credentials.md has no ValidatingAdmissionPolicy block")
	}
	policy := dedent(string(m[1]))
	apiServer(t)
	if r := kubectl(t, []byte(policy), "apply", "--server-side", "-f", "-"); r.Err != nil {
		t.Fatalf("applying the doc's policy: %s", r)
	}
	t.Cleanup(func() { kubectl(t, []byte(policy), "delete", "--ignore-not-found", "-f", "-") })
	// Two users who may edit namespaces: a developer, and a member of platform-team.
	rbac := `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: trust-boundary-namespace-editor}
rules: [{apiGroups: [""], resources: [namespaces], verbs: [get, list, create, patch, update]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: trust-boundary-namespace-editor}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: trust-boundary-namespace-editor}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: dev}
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: platform-team}
`
	if r := kubectl(t, []byte(rbac), "apply", "--server-side", "-f", "-"); r.Err != nil {
		t.Fatalf("applying RBAC: %s", r)
	}
	t.Cleanup(func() { kubectl(t, []byte(rbac), "delete", "--ignore-not-found", "-f", "-") })
	ns := fmt.Sprintf("trust-%d", time.Now().UnixNano()%1_000_000)
	as := func(user string, args ...string) error {
		a := []string{"--as", user}
		if user == "alice" {
			a = append(a, "--as-group", "platform-team")
		}
		return kubectl(t, nil, append(a, args...)...).Err
	}
	// The policy takes effect a moment after it is created: wait until it refuses a developer once.
	probe := ns + "-probe"
	if r := kubectl(t, nil, "create", "namespace", probe); r.Err != nil {
		t.Fatalf("creating %s: %s", probe, r)
	}
	t.Cleanup(func() { kubectl(t, nil, "delete", "namespace", probe, "--wait=false") })
	const refusal = "only the platform team may set the dbtoken.io/databricks label"
	start := time.Now()
	for attempts := 1; ; attempts++ {
		r := kubectl(t, nil, "--as", "dev", "label", "--overwrite", "namespace", probe, "dbtoken.io/databricks=prod")
		if strings.Contains(r.Stdout+r.Stderr, refusal) {
			t.Logf("the policy took effect %v after it was applied (%d attempts)", time.Since(start).Round(time.Millisecond), attempts)
			break
		}
		if r.Err != nil {
			t.Fatalf("probing the policy: %s", r)
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("the doc's policy never refused a developer setting the selector label (%d attempts); policy and binding as the API server has them:\n%s\nits log about policies:\n%s",
				attempts, kubectl(t, nil, "get", "validatingadmissionpolicies,validatingadmissionpolicybindings", "-o", "yaml"),
				strings.Join(apiServerLog.Lines("olic", 40), "\n"))
		}
		kubectl(t, nil, "label", "namespace", probe, "dbtoken.io/databricks-")
		time.Sleep(250 * time.Millisecond)
	}
	if err := as("dev", "create", "namespace", ns); err != nil {
		t.Fatalf("a developer may create an unlabelled namespace: %v", err)
	}
	t.Cleanup(func() { kubectl(t, nil, "delete", "namespace", ns, "--wait=false") })
	if err := as("dev", "label", "namespace", ns, "team=analytics"); err != nil {
		t.Errorf("other labels are the developer's own: %v", err)
	}
	if r := kubectl(t, nil, "--as", "dev", "label", "namespace", ns, "dbtoken.io/databricks=prod"); r.Err == nil ||
		!strings.Contains(r.Stdout+r.Stderr, refusal) {
		t.Fatalf("a developer set the selector label: %s", r)
	}
	if err := as("alice", "label", "namespace", ns, "dbtoken.io/databricks=prod"); err != nil {
		t.Fatalf("the platform team may set it: %v", err)
	}
	if err := as("dev", "label", "namespace", ns, "dbtoken.io/databricks-"); err == nil {
		t.Error("a developer removed the selector label")
	}
	if err := as("dev", "label", "namespace", ns, "owner=team-a"); err != nil {
		t.Errorf("a labelled namespace's other labels stay editable: %v", err)
	}
}

// dedent removes the indentation of the YAML as it stands in the doc's list item.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	indent := len(lines[0]) - len(strings.TrimLeft(lines[0], " "))
	for i, l := range lines {
		if len(l) >= indent && strings.TrimSpace(l[:indent]) == "" {
			lines[i] = l[indent:]
		}
	}
	return strings.Join(lines, "\n")
}
