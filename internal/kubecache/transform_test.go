package kubecache

import (
	"bytes"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

func TestStripForCacheDropsWhatIsNeverRead(t *testing.T) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: "sp",
		Annotations: map[string]string{
			corev1.LastAppliedConfigAnnotation: `{"data":{"client-secret":"c2VjcmV0"}}`,
			"team":                             "analytics",
		},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}}
	out, err := stripForCache(s)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Secret)
	if _, ok := got.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
		t.Error("last-applied-configuration kept: a full copy of the object, Secret data included")
	}
	if got.Annotations["team"] != "analytics" {
		t.Error("other annotations must stay")
	}
	if got.ManagedFields != nil {
		t.Error("managedFields kept")
	}
}

func TestCachedTargetSecretsShareTheirToken(t *testing.T) {
	transform := ManagerCacheOptions(nil).DefaultTransform
	if transform == nil {
		t.Fatal("no cache transform")
	}
	target := func(name string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"dbtoken.io/expires-at": "2026-11-29T01:55:17Z"},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "manager"}},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "DatabricksCredential",
					Name: name, UID: types.UID("uid-" + name), Controller: ptr.To(true)}}},
			Data: map[string][]byte{"DATABRICKS_TOKEN": []byte("eyJ.shared.token"), "DATABRICKS_HOST": []byte("https://adb-" + name)},
		}
	}
	a, err := transform(target("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := transform(target("b"))
	sa, sb := a.(*corev1.Secret), b.(*corev1.Secret)
	if string(sb.Data["DATABRICKS_TOKEN"]) != "eyJ.shared.token" || string(sb.Data["DATABRICKS_HOST"]) != "https://adb-b" {
		t.Fatalf("values changed: %q", sb.Data)
	}
	if unsafe.SliceData(sa.Data["DATABRICKS_TOKEN"]) != unsafe.SliceData(sb.Data["DATABRICKS_TOKEN"]) {
		t.Error("the same token is held twice")
	}
	if unsafe.StringData(sa.Annotations["dbtoken.io/expires-at"]) != unsafe.StringData(sb.Annotations["dbtoken.io/expires-at"]) {
		t.Error("the same annotation value is held twice")
	}
	if sa.ManagedFields != nil {
		t.Error("managedFields kept")
	}
	for k := range sa.Annotations {
		for k2 := range sb.Annotations {
			if k == k2 && unsafe.StringData(k) != unsafe.StringData(k2) {
				t.Error("annotation keys are held twice")
			}
		}
	}

	cred := func() *v1alpha1.DatabricksCredential {
		return &v1alpha1.DatabricksCredential{
			ObjectMeta: metav1.ObjectMeta{Namespace: "analytics"},
			Spec:       v1alpha1.DatabricksCredentialSpec{Host: "https://adb-1.azuredatabricks.net"},
			Status: v1alpha1.DatabricksCredentialStatus{Conditions: []metav1.Condition{
				{Type: "Ready", Status: metav1.ConditionTrue, Reason: "TokenIssued", Message: "valid"}}},
		}
	}
	c1, _ := transform(cred())
	c2, _ := transform(cred())
	x, y := c1.(*v1alpha1.DatabricksCredential), c2.(*v1alpha1.DatabricksCredential)
	if unsafe.StringData(x.Spec.Host) != unsafe.StringData(y.Spec.Host) ||
		unsafe.StringData(x.Namespace) != unsafe.StringData(y.Namespace) ||
		unsafe.StringData(x.Status.Conditions[0].Reason) != unsafe.StringData(y.Status.Conditions[0].Reason) {
		t.Error("credentials do not share their host, namespace and condition vocabulary")
	}
	if x.Status.Conditions[0].Message != "valid" || x.Spec.Host != "https://adb-1.azuredatabricks.net" {
		t.Error("values changed")
	}
}

// TestLabelledSecretsNotOwnedByACredentialAreCachedAsStubs is the bound on what tenants can make
// the manager hold: anyone can label a Secret dbtoken.io/credential, but only Secrets whose
// controller owner is a credential are cached with their data.
func TestLabelledSecretsNotOwnedByACredentialAreCachedAsStubs(t *testing.T) {
	transform := ManagerCacheOptions(nil).DefaultTransform
	big := bytes.Repeat([]byte("x"), 900<<10)
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: "dbt-prod", UID: "u1", ResourceVersion: "7",
			Labels:      map[string]string{v1alpha1.LabelCredential: "dbt-prod", "padding": string(big[:60])},
			Annotations: map[string]string{"padding": string(big[:200<<10])},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "x", UID: "c1", Controller: ptr.To(true)},
				{APIVersion: "v1", Kind: "Pod", Name: "y", UID: "p1"}}},
		Data: map[string][]byte{"blob": big},
	}
	out, err := transform(foreign)
	if err != nil {
		t.Fatal(err)
	}
	stub := out.(*corev1.Secret)
	if len(stub.Data) != 0 || len(stub.Annotations) != 0 || len(stub.Labels) != 1 || len(stub.OwnerReferences) != 1 {
		t.Fatalf("the stub keeps data %d, annotations %d, labels %v, owners %d", len(stub.Data), len(stub.Annotations), stub.Labels, len(stub.OwnerReferences))
	}
	if stub.Name != "dbt-prod" || stub.Namespace != "tenant" || stub.UID != "u1" || stub.ResourceVersion != "7" || metav1.GetControllerOf(stub).Kind != "ConfigMap" {
		t.Fatalf("the stub must still say which Secret it is and who owns it: %+v", stub.ObjectMeta)
	}

	owned := foreign.DeepCopy()
	owned.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "DatabricksCredential", Name: "dbt-prod", UID: "d1", Controller: ptr.To(true)}}
	out, err = transform(owned)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.(*corev1.Secret); len(got.Data["blob"]) != len(big) {
		t.Fatal("a Secret owned by a credential is cached with its data")
	}
}
