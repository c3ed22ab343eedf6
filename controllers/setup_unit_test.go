package controllers

import (
	"testing"

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
