package packaging

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/testenv"
	"github.com/dbtoken/databricks-token-operator/test/idp"
)

// permission is one thing an RBAC rule grants: a verb on a resource (with its subresource) of an
// API group, optionally limited to resourceNames.
type permission struct{ group, resource, verb, names string }

func (p permission) String() string {
	s := p.verb + " " + p.resource
	if p.group != "" {
		s += "." + p.group
	}
	if p.names != "" {
		s += " [" + p.names + "]"
	}
	return s
}

// permissions expands rules into the single permissions they grant, so that two roles can be
// compared however their rules are grouped. The manager's roles have no nonResourceURLs.
func permissions(t *testing.T, rules []rbacv1.PolicyRule) map[permission]bool {
	t.Helper()
	out := map[permission]bool{}
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("unexpected nonResourceURLs %v in a manager role", r.NonResourceURLs)
		}
		names := strings.Join(slices.Sorted(slices.Values(r.ResourceNames)), ",")
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out[permission{group: g, resource: res, verb: v, names: names}] = true
				}
			}
		}
	}
	return out
}

// union adds the permissions of every set.
func union(sets ...map[permission]bool) map[permission]bool {
	out := map[permission]bool{}
	for _, s := range sets {
		maps.Copy(out, s)
	}
	return out
}

// diff lists what a has and b lacks.
func diff(a, b map[permission]bool) []string {
	var out []string
	for p := range a {
		if !b[p] {
			out = append(out, p.String())
		}
	}
	slices.Sort(out)
	return out
}

// resourceScopes asks the API server's discovery which resources are namespaced:
// "resource.group" ("resource" for the core group) → namespaced.
func resourceScopes(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, namespaced := range []bool{true, false} {
		r := kubectl(t, nil, "api-resources", fmt.Sprintf("--namespaced=%t", namespaced), "-o", "name")
		if r.Err != nil {
			t.Fatalf("kubectl api-resources: %s", r)
		}
		for _, name := range strings.Fields(r.Stdout) {
			out[name] = namespaced
		}
	}
	return out
}

// namespacedResource reports whether p's resource (its subresource aside) is namespaced.
func namespacedResource(t *testing.T, scopes map[string]bool, p permission) bool {
	t.Helper()
	name, _, _ := strings.Cut(p.resource, "/")
	if p.group != "" {
		name += "." + p.group
	}
	namespaced, ok := scopes[name]
	if !ok {
		t.Fatalf("the API server does not know the resource %s (of %s)", name, p)
	}
	return namespaced
}

// managerRBAC is the manager's RBAC as the chart renders it with watchNamespaces.
type managerRBAC struct {
	cluster map[permission]bool            // the ClusterRole
	roles   map[string]map[permission]bool // namespace → the manager Role there
	events  map[permission]bool            // the Role for cluster-scoped objects' Events in "default", nil if none
}

// splitManagerRBAC reads the manager's ClusterRole and Roles from objs (release rendered as
// <release>-databricks-token-operator in chartNamespace) and checks that each is bound to the
// manager's ServiceAccount.
func splitManagerRBAC(t *testing.T, objs []manifest, full, serviceAccount string) managerRBAC {
	t.Helper()
	rolesOf := func(kind, name string) map[string]map[permission]bool {
		out := map[string]map[permission]bool{}
		for _, m := range objs {
			if m.Kind == kind && m.Name == name {
				var r rbacv1.ClusterRole // Role has the same shape
				decode(t, m, &r)
				out[m.Namespace] = permissions(t, r.Rules)
			}
		}
		return out
	}
	bound := func(kind, name, namespace, roleKind, roleName string) {
		t.Helper()
		for _, m := range objs {
			if m.Kind != kind || m.Name != name || m.Namespace != namespace {
				continue
			}
			var b rbacv1.RoleBinding // ClusterRoleBinding has the same shape
			decode(t, m, &b)
			want := rbacv1.Subject{Kind: "ServiceAccount", Name: serviceAccount, Namespace: chartNamespace}
			if b.RoleRef.Kind != roleKind || b.RoleRef.Name != roleName || len(b.Subjects) != 1 || b.Subjects[0] != want {
				t.Errorf("%s %s/%s binds %+v to %+v, want %s %s to %+v", kind, namespace, name, b.RoleRef, b.Subjects, roleKind, roleName, want)
			}
			return
		}
		t.Errorf("no %s %s in namespace %q binds the %s %s", kind, name, namespace, roleKind, roleName)
	}
	clusterRoles := rolesOf("ClusterRole", full+"-manager-role")
	if len(clusterRoles) != 1 {
		t.Fatalf("want one ClusterRole %s-manager-role, got %d", full, len(clusterRoles))
	}
	bound("ClusterRoleBinding", full+"-manager-rolebinding", "", "ClusterRole", full+"-manager-role")
	rbac := managerRBAC{cluster: clusterRoles[""], roles: rolesOf("Role", full+"-manager-role")}
	for ns := range rbac.roles {
		bound("RoleBinding", full+"-manager-rolebinding", ns, "Role", full+"-manager-role")
	}
	if events := rolesOf("Role", full+"-manager-events-role"); len(events) > 0 {
		if len(events) != 1 || events["default"] == nil {
			t.Errorf("the events Role is rendered in %v, want only in default", slices.Collect(maps.Keys(events)))
		}
		rbac.events = events["default"]
		bound("RoleBinding", full+"-manager-events-rolebinding", "default", "Role", full+"-manager-events-role")
	}
	return rbac
}

// namespacedRBACMatchesConfig (part of TestChartRBACMatchesConfig): with watchNamespaces the
// chart splits config/rbac/role.yaml, losing and adding nothing. The ClusterRole holds exactly
// role.yaml's permissions on cluster-scoped resources, a Role in each watched namespace exactly
// those on namespaced resources (scopes as the API server's discovery reports them), and a Role
// in "default" only the Events permission, for the Events of cluster-scoped objects, unless
// "default" is watched anyway.
func namespacedRBACMatchesConfig(t *testing.T) {
	var configRole rbacv1.ClusterRole
	decode(t, only(t, parseManifests(t, readFile(t, "config/rbac/role.yaml")), "ClusterRole"), &configRole)
	want := permissions(t, configRole.Rules)
	scopes := resourceScopes(t)
	eventsRule := map[permission]bool{
		{group: "events.k8s.io", resource: "events", verb: "create"}: true,
		{group: "events.k8s.io", resource: "events", verb: "patch"}:  true,
	}
	for _, watched := range [][]string{{"team-a", "team-b"}, {"default", "team-a"}} {
		t.Run(strings.Join(watched, " and "), func(t *testing.T) { // no comma: helm splits --values at commas
			values := "watchNamespaces: [" + strings.Join(watched, ", ") + "]\n"
			objs := parseManifests(t, mustTemplate(t, "databricks-token-operator", values))
			rbac := splitManagerRBAC(t, objs, "databricks-token-operator", "databricks-token-operator")

			if got := slices.Sorted(maps.Keys(rbac.roles)); !slices.Equal(got, slices.Sorted(slices.Values(watched))) {
				t.Fatalf("manager Roles in namespaces %v, want one in each of %v", got, watched)
			}
			var namespaced map[permission]bool
			for ns, perms := range rbac.roles {
				if namespaced == nil {
					namespaced = perms
				}
				if d1, d2 := diff(perms, namespaced), diff(namespaced, perms); len(d1)+len(d2) > 0 {
					t.Errorf("the Role in %s differs from the others: +%v -%v", ns, d1, d2)
				}
			}
			for p := range rbac.cluster {
				if namespacedResource(t, scopes, p) {
					t.Errorf("the ClusterRole grants %s on a namespaced resource: that is cluster-wide again", p)
				}
			}
			for p := range namespaced {
				if !namespacedResource(t, scopes, p) {
					t.Errorf("the Role grants %s on a cluster-scoped resource, which a Role cannot grant", p)
				}
			}
			if slices.Contains(watched, "default") {
				if rbac.events != nil {
					t.Error("default is watched, yet an extra events Role is rendered there")
				}
			} else if d1, d2 := diff(rbac.events, eventsRule), diff(eventsRule, rbac.events); len(d1)+len(d2) > 0 {
				t.Errorf("the Role in default for cluster-scoped objects' Events grants +%v -%v, want only create/patch events.events.k8s.io", d1, d2)
			}
			got := union(rbac.cluster, namespaced, rbac.events)
			if lost := diff(want, got); len(lost) > 0 {
				t.Errorf("with watchNamespaces the manager lacks %v, which config/rbac/role.yaml grants", lost)
			}
			if gained := diff(got, want); len(gained) > 0 {
				t.Errorf("with watchNamespaces the manager gains %v, which config/rbac/role.yaml does not grant", gained)
			}
		})
	}
}

// TestChartNamespacedRBACRunsManager proves the chart's watchNamespaces RBAC is enough for the
// manager and no more. It applies the chart's RBAC (watchNamespaces: rbac-a, rbac-b) to envtest,
// runs the manager binary authenticated as the chart's ServiceAccount (a TokenRequest token) with
// the --namespaces the chart renders, and checks that:
//   - a DatabricksCredential in rbac-a becomes Ready with a token the identity provider accepts;
//   - a ClusterDatabricksCredential selecting rbac-a, rbac-b and rbac-c serves rbac-a and rbac-b,
//     its Events reach "default", and a namespace it stops selecting loses the Secret (delete);
//   - the manager logs no Forbidden error meanwhile;
//   - the ServiceAccount may not read or list Secrets, mint ServiceAccount tokens or read
//     ConfigMaps in rbac-c, in kube-system or across all namespaces (SubjectAccessReviews, and
//     requests made with its own token);
//   - a ClusterDatabricksCredential whose client secret is in rbac-c is refused by the API server
//     and says so: Ready=False, Unauthorized.
func TestChartNamespacedRBACRunsManager(t *testing.T) {
	cp := apiServer(t)
	c := adminClient(t, cp)
	ctx := context.Background()
	const (
		release = "rbac-run"
		nsA     = "rbac-a"
		nsB     = "rbac-b"
		nsC     = "rbac-c"
	)
	for _, ns := range []string{chartNamespace, nsA, nsB, nsC} {
		ensureNamespace(t, ns)
	}

	// The chart's RBAC and ServiceAccount, applied for real; its Deployment's --namespaces.
	out := mustTemplate(t, release, "watchNamespaces: ["+nsA+", "+nsB+"]\n")
	objs := parseManifests(t, out)
	var rbacDocs [][]byte
	for _, m := range objs {
		switch m.Kind {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			doc, err := yaml.JSONToYAML(m.JSON)
			if err != nil {
				t.Fatal(err)
			}
			rbacDocs = append(rbacDocs, doc)
		}
	}
	rbacYAML := bytes.Join(rbacDocs, []byte("---\n"))
	if r := kubectl(t, rbacYAML, "apply", "-f", "-"); r.Err != nil {
		t.Fatalf("applying the chart's RBAC: %s", r)
	}
	t.Cleanup(func() {
		if r := kubectl(t, rbacYAML, "delete", "--ignore-not-found", "-f", "-"); r.Err != nil {
			t.Errorf("deleting the chart's RBAC: %s", r)
		}
	})
	var deploy appsv1.Deployment
	decode(t, only(t, objs, "Deployment"), &deploy)
	namespacesArg := ""
	for _, a := range deploy.Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(a, "--namespaces=") {
			namespacesArg = a
		}
	}
	if namespacesArg != "--namespaces="+nsA+","+nsB {
		t.Fatalf("the chart renders %q, want --namespaces=%s,%s", namespacesArg, nsA, nsB)
	}
	sa := deploy.Spec.Template.Spec.ServiceAccountName
	user := "system:serviceaccount:" + chartNamespace + ":" + sa
	saConfig := serviceAccountKubeconfig(t, cp, c, chartNamespace, sa)

	// What the ServiceAccount may do, as the authorizer sees it.
	t.Run("SubjectAccessReviews", func(t *testing.T) {
		type check struct {
			ns, verb, group, resource, sub string
			allowed                        bool
		}
		var checks []check
		for _, ns := range []string{nsA, nsB} {
			for _, v := range []string{"get", "list", "watch", "create", "update", "patch", "delete"} {
				checks = append(checks, check{ns, v, "", "secrets", "", true})
			}
			checks = append(checks,
				check{ns, "create", "", "serviceaccounts", "token", true},
				check{ns, "list", "", "configmaps", "", true},
				check{ns, "watch", "", "serviceaccounts", "", true},
				check{ns, "patch", "dbtoken.io", "databrickscredentials", "status", true},
				check{ns, "create", "events.k8s.io", "events", "", true})
		}
		checks = append(checks,
			check{"default", "create", "events.k8s.io", "events", "", true},
			check{"", "list", "", "namespaces", "", true},
			check{"", "create", "authentication.k8s.io", "tokenreviews", "", true},
			check{"", "watch", "dbtoken.io", "clusterdatabrickscredentials", "", true},
			check{"", "update", "dbtoken.io", "clusterdatabrickscredentials", "status", true})
		for _, ns := range []string{nsC, "kube-system", "default", ""} { // "": all namespaces
			checks = append(checks,
				check{ns, "get", "", "secrets", "", false},
				check{ns, "list", "", "secrets", "", false},
				check{ns, "create", "", "secrets", "", false},
				check{ns, "delete", "", "secrets", "", false},
				check{ns, "create", "", "serviceaccounts", "token", false},
				check{ns, "get", "", "configmaps", "", false},
				check{ns, "list", "", "serviceaccounts", "", false},
				check{ns, "list", "dbtoken.io", "databrickscredentials", "", false})
		}
		checks = append(checks, check{nsC, "create", "events.k8s.io", "events", "", false})
		for _, ck := range checks {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   user,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + chartNamespace, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ck.ns, Verb: ck.verb, Group: ck.group,
					Resource: ck.resource, Subresource: ck.sub},
			}}
			if err := c.Create(ctx, sar); err != nil {
				t.Fatalf("SubjectAccessReview: %v", err)
			}
			if sar.Status.Allowed != ck.allowed {
				where := "namespace " + ck.ns
				if ck.ns == "" {
					where = "all namespaces"
				}
				t.Errorf("%s %s/%s (group %q) in %s: allowed=%t, want %t", ck.verb, ck.resource, ck.sub, ck.group, where, sar.Status.Allowed, ck.allowed)
			}
		}
	})

	// The same, asked with the ServiceAccount's own token. Stdout is never printed: had a
	// token been minted, it would be there.
	t.Run("requests with the ServiceAccount's token", func(t *testing.T) {
		asSA := func(args ...string) testenv.Result {
			return run(t, nil, "kubectl", append([]string{"--kubeconfig", saConfig}, args...)...)
		}
		if r := asSA("get", "secrets", "-n", nsC); r.Err == nil || !strings.Contains(r.Stderr, "forbidden") {
			t.Errorf("listing Secrets in %s as %s: error %v, stderr %q; want Forbidden", nsC, user, r.Err, r.Stderr)
		}
		if r := asSA("create", "token", "default", "-n", nsC); r.Err == nil || !strings.Contains(r.Stderr, "forbidden") {
			t.Errorf("minting a token for %s/default as %s: error %v, stderr %q; want Forbidden", nsC, user, r.Err, r.Stderr)
		}
		if r := asSA("get", "secrets", "-n", nsA); r.Err != nil {
			t.Errorf("listing Secrets in watched %s as %s: %v, stderr %q", nsA, user, r.Err, r.Stderr)
		}
	})

	// An identity provider, and credentials whose inputs are all in the watched namespace rbac-a,
	// plus a namespaced one in the unwatched rbac-c that must stay untouched.
	s, err := idp.Start(idp.Options{})
	if err != nil {
		t.Fatalf("starting the identity provider: %v", err)
	}
	t.Cleanup(s.Close)
	for _, ns := range []string{nsA, nsC} {
		clientID := "rbac-" + rand.String(8)
		secret := "s3cr3t-" + rand.String(32)
		s.AddDatabricksClient(clientID, secret)
		create(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sp"},
			Data: map[string][]byte{"client-id": []byte(clientID), "client-secret": []byte(secret)}})
		create(t, c, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "idp-ca"},
			Data: map[string]string{"ca.crt": string(s.CACertPEM())}})
		create(t, c, &v1alpha1.DatabricksCredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cred"},
			Spec: v1alpha1.DatabricksCredentialSpec{Host: s.URL(),
				Databricks:  &v1alpha1.DatabricksIdentity{ClientSecretRef: v1alpha1.ClientSecretReference{Name: "sp"}},
				CABundleRef: &v1alpha1.CABundleReference{Name: "idp-ca"}}})
	}
	clusterCred := func(name, secretNamespace string, namespaces ...string) *v1alpha1.ClusterDatabricksCredential {
		cc := &v1alpha1.ClusterDatabricksCredential{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.ClusterDatabricksCredentialSpec{Host: s.URL(),
				Databricks: &v1alpha1.ClusterDatabricksIdentity{ClientSecretRef: v1alpha1.ClusterClientSecretReference{
					Namespace: secretNamespace, Name: "sp"}},
				CABundleRef: &v1alpha1.ClusterCABundleReference{Namespace: secretNamespace, Name: "idp-ca"},
				Namespaces:  namespaces}}
		create(t, c, cc)
		t.Cleanup(func() {
			if err := client.IgnoreNotFound(c.Delete(ctx, cc)); err != nil {
				t.Errorf("deleting ClusterDatabricksCredential %s: %v", name, err)
			}
		})
		return cc
	}
	shared := clusterCred("rbac-run-shared", nsA, nsA, nsB, nsC)

	logs := &testenv.LogBuffer{}
	m, err := cp.StartManager(ctx, testenv.ManagerOptions{
		Name: "namespaced-rbac",
		// The later --kubeconfig wins over the admin one StartManager passes first.
		Args: []string{"--kubeconfig=" + saConfig, namespacesArg, "--leader-elect", "--leader-election-namespace=" + chartNamespace,
			"--token-timeout=5s"},
		Output: func(int) (io.Writer, error) { return logs, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("manager logs, last 6000 bytes:\n%s", m.Tail(6000))
		}
	})

	cred := &v1alpha1.DatabricksCredential{}
	waitFor(t, 45*time.Second, nsA+"/cred Ready=True/TokenIssued", func() (bool, string) {
		if err := c.Get(ctx, types.NamespacedName{Namespace: nsA, Name: "cred"}, cred); err != nil {
			return false, err.Error()
		}
		return readyIs(cred.Status.Conditions, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued)
	})
	var target corev1.Secret
	if err := c.Get(ctx, types.NamespacedName{Namespace: nsA, Name: "cred"}, &target); err != nil {
		t.Fatalf("Ready, but the token Secret: %v", err)
	}
	if _, err := s.ValidateToken(string(target.Data[v1alpha1.DefaultTokenKey])); err != nil {
		t.Errorf("the token Secret in %s holds a token the identity provider rejects: %v", nsA, err)
	}

	waitFor(t, 45*time.Second, "the cluster credential Ready=True in 2 namespaces", func() (bool, string) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(shared), shared); err != nil {
			return false, err.Error()
		}
		if ok, why := readyIs(shared.Status.Conditions, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued); !ok {
			return false, why
		}
		return shared.Status.NamespaceCount == 2, fmt.Sprintf("namespaceCount %d", shared.Status.NamespaceCount)
	})
	for ns, want := range map[string]bool{nsA: true, nsB: true, nsC: false} {
		err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: shared.Name}, &corev1.Secret{})
		if got := err == nil; got != want {
			t.Errorf("the cluster credential's Secret in %s exists: %t, want %t (%v)", ns, got, want, err)
		}
	}
	waitFor(t, 15*time.Second, "the cluster credential's Event in default", func() (bool, string) {
		var events eventsv1.EventList
		if err := c.List(ctx, &events, client.InNamespace("default")); err != nil {
			return false, err.Error()
		}
		for _, e := range events.Items {
			if e.Regarding.Kind == "ClusterDatabricksCredential" && e.Regarding.Name == shared.Name && e.Reason == v1alpha1.ReasonTokenRefreshed {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d Events in default, none TokenRefreshed for %s", len(events.Items), shared.Name)
	})

	// rbac-b leaves the selection: the Secret written there is deleted.
	before := shared.DeepCopy()
	shared.Spec.Namespaces = []string{nsA, nsC}
	if err := c.Patch(ctx, shared, client.MergeFrom(before)); err != nil {
		t.Fatalf("updating the cluster credential: %v", err)
	}
	waitFor(t, 30*time.Second, "the cluster credential's Secret in "+nsB+" deleted", func() (bool, string) {
		err := c.Get(ctx, types.NamespacedName{Namespace: nsB, Name: shared.Name}, &corev1.Secret{})
		return client.IgnoreNotFound(err) == nil && err != nil, fmt.Sprintf("get: %v", err)
	})

	if n := strings.Count(strings.ToLower(logs.String()), "forbidden"); n > 0 {
		t.Errorf("the manager logged %d Forbidden errors with the chart's RBAC:\n%s", n, m.Tail(6000))
	}
	unwatched := &v1alpha1.DatabricksCredential{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: nsC, Name: "cred"}, unwatched); err != nil {
		t.Fatal(err)
	}
	if len(unwatched.Status.Conditions) > 0 {
		t.Errorf("the credential in the unwatched %s was reconciled: %+v", nsC, unwatched.Status.Conditions)
	}

	// A client secret outside the watched namespaces: the API server refuses the read, and the
	// status says why.
	outside := clusterCred("rbac-run-outside", nsC, nsA)
	waitFor(t, 30*time.Second, "the cluster credential with its secret in "+nsC+" Ready=False/Unauthorized", func() (bool, string) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(outside), outside); err != nil {
			return false, err.Error()
		}
		ok, why := readyIs(outside.Status.Conditions, metav1.ConditionFalse, v1alpha1.ReasonUnauthorized)
		if ok {
			cond := meta.FindStatusCondition(outside.Status.Conditions, v1alpha1.ConditionReady)
			if want := `may not read Secret "sp" in namespace "` + nsC + `"`; !strings.Contains(cond.Message, want) {
				return false, fmt.Sprintf("message %q lacks %q", cond.Message, want)
			}
		}
		return ok, why
	})
}

// readyIs reports whether the Ready condition has status and reason, and what it is otherwise.
func readyIs(conds []metav1.Condition, status metav1.ConditionStatus, reason string) (bool, string) {
	cond := meta.FindStatusCondition(conds, v1alpha1.ConditionReady)
	if cond == nil {
		return false, "no Ready condition"
	}
	return cond.Status == status && cond.Reason == reason, fmt.Sprintf("Ready is %s/%s: %s", cond.Status, cond.Reason, cond.Message)
}

// waitFor polls cond every 100 ms until it holds, failing the test with its last message after
// timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	if err := testenv.Eventually(timeout, 100*time.Millisecond, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// adminClient is a client of the envtest apiserver as system:masters, knowing the operator's kinds.
func adminClient(t *testing.T, cp *testenv.ControlPlane) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func create(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
}

// serviceAccountKubeconfig writes a kubeconfig for the envtest apiserver that authenticates as
// the ServiceAccount namespace/name with a one-hour TokenRequest token, and returns its path.
// The token is written to that file only (mode 0600), never logged.
func serviceAccountKubeconfig(t *testing.T, cp *testenv.ControlPlane, c client.Client, namespace, name string) string {
	t.Helper()
	hour := int64(3600)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &hour}}
	owner := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := c.SubResource("token").Create(context.Background(), owner, tr); err != nil {
		t.Fatalf("requesting a token for ServiceAccount %s/%s: %v", namespace, name, err)
	}
	cfg, err := clientcmd.LoadFromFile(cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		t.Fatalf("the envtest kubeconfig has no current context %q", cfg.CurrentContext)
	}
	out := clientcmdapi.NewConfig()
	out.Clusters["envtest"] = cfg.Clusters[kctx.Cluster]
	out.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	out.Contexts["sa"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: name, Namespace: namespace}
	out.CurrentContext = "sa"
	path := filepath.Join(t.TempDir(), "kubeconfig-"+name)
	if err := clientcmd.WriteToFile(*out, path); err != nil {
		t.Fatal(err)
	}
	return path
}
