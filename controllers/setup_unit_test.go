package controllers

import (
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	var transform func(any) (any, error)
	for obj, by := range CacheOptions(nil).ByObject {
		if _, ok := obj.(*corev1.Secret); ok {
			transform = by.Transform
		}
	}
	if transform == nil {
		t.Fatal("no transform for target Secrets")
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
}
