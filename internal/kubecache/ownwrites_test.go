package kubecache

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

func TestOwnWritesRecognisesOnlyTheVersionWritten(t *testing.T) {
	w := NewOwnWrites()
	s := func(rv string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "t", ResourceVersion: rv}}
	}
	if w.echo(s("1")) {
		t.Fatal("nothing written yet, yet an echo")
	}
	w.Wrote(s("5"))
	if w.echo(s("6")) {
		t.Fatal("a later version (someone else's edit) taken for our echo")
	}
	if !w.echo(s("5")) {
		t.Fatal("our own write not recognised")
	}
	if w.echo(s("5")) {
		t.Fatal("an echo is recognised once; a relist of the same version must pass")
	}
}

// TestEachControllerConsumesOnlyItsOwnKindsEchoes: both controllers watch every Secret with one
// shared tracker, and the informer hands each event to them in no fixed order. Whichever sees the
// echo of a namespaced credential's write first, the namespaced controller must drop it, and the
// cluster controller must not take it away.
func TestEachControllerConsumesOnlyItsOwnKindsEchoes(t *testing.T) {
	owned := func(kind, rv string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "t", ResourceVersion: rv,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "dbtoken.io/v1alpha1", Kind: kind, Name: "c", UID: "u", Controller: ptr.To(true)}}}}
	}
	w := NewOwnWrites()
	namespaced, cluster := w.NotEcho("DatabricksCredential"), w.NotEcho("ClusterDatabricksCredential")

	ours := owned("DatabricksCredential", "5")
	w.Wrote(ours)
	if cluster.Create(event.CreateEvent{Object: ours}) {
		t.Error("the cluster controller let through a Secret of the other kind")
	}
	if namespaced.Create(event.CreateEvent{Object: ours}) {
		t.Error("the echo of our own write came back as a pass: the other controller consumed it")
	}

	theirs := owned("ClusterDatabricksCredential", "7")
	w.Wrote(theirs)
	if namespaced.Update(event.UpdateEvent{ObjectOld: theirs, ObjectNew: theirs}) {
		t.Error("the namespaced controller let through a Secret of the other kind")
	}
	if cluster.Update(event.UpdateEvent{ObjectOld: theirs, ObjectNew: theirs}) {
		t.Error("the cluster controller's echo was not dropped")
	}

	edited := owned("DatabricksCredential", "9")
	if !namespaced.Update(event.UpdateEvent{ObjectOld: ours, ObjectNew: edited}) {
		t.Error("someone else's edit of our Secret was dropped")
	}
	if !namespaced.Update(event.UpdateEvent{ObjectOld: ours, ObjectNew: owned("Other", "10")}) {
		t.Error("a Secret taken from us must reach us, to repair it")
	}
	if !namespaced.Delete(event.DeleteEvent{Object: ours}) || cluster.Delete(event.DeleteEvent{Object: ours}) {
		t.Error("a deletion reaches the owner's controller, and only it")
	}
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "f", ResourceVersion: "3"}}
	if namespaced.Create(event.CreateEvent{Object: foreign}) || cluster.Create(event.CreateEvent{Object: foreign}) {
		t.Error("a Secret no credential controls passed; the owner handler would only drop it")
	}
}

// TestControlledByKindNeedsTheServedVersion: an owner reference to a version the apiserver does
// not serve is not ours (the garbage collector cannot resolve it, so it must not buy full caching).
func TestControlledByKindNeedsTheServedVersion(t *testing.T) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{
		{APIVersion: "dbtoken.io/v9", Kind: "DatabricksCredential", Name: "c", UID: "u", Controller: ptr.To(true)}}}}
	if ControlledByKind(s, "DatabricksCredential") || ownedByCredential(s) {
		t.Fatal("an owner at an unserved version counted as a credential")
	}
	s.OwnerReferences[0].APIVersion = "dbtoken.io/v1alpha1"
	if !ControlledByKind(s, "DatabricksCredential") || !ownedByCredential(s) {
		t.Fatal("the served version not recognised")
	}
}
