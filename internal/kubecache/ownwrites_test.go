package kubecache

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
