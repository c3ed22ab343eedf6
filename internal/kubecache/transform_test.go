package kubecache

import (
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "manager"}}},
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
