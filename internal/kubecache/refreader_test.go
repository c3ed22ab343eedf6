package kubecache

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// stillReader answers every read with the same resourceVersion, so that the reader serves its
// copies: what remains is the bookkeeping of what each credential refers to.
type stillReader struct{ client.Reader }

func (stillReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	obj.SetNamespace(key.Namespace)
	obj.SetName(key.Name)
	obj.SetResourceVersion("1")
	return nil
}

// BenchmarkReferenceBookkeeping reports the live heap the reader keeps per credential that refers
// to a client Secret and a CA ConfigMap (the scale benchmark's shape: 100 credentials per
// identity), and the cost of one pass's reads once the copies are held.
func BenchmarkReferenceBookkeeping(b *testing.B) {
	const credentials = 10_000
	ctx := context.Background()
	r := NewReferenceReader[types.NamespacedName](stillReader{}, stillReader{}, clientgoscheme.Scheme)
	pass := func(i int) {
		ns := fmt.Sprintf("ns-%d", i%4)
		refs := r.For(types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("cred-%05d", i)})
		_ = refs.Get(ctx, types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("sp-%02d", i%100)}, &corev1.Secret{})
		_ = refs.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ca"}, &corev1.ConfigMap{})
		refs.Done()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range credentials {
		pass(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	kept := float64(after.HeapAlloc-before.HeapAlloc) / credentials
	if r.Copies() != 104 {
		b.Fatalf("copies = %d, want 100 Secrets and 4 ConfigMaps", r.Copies())
	}
	b.ResetTimer()
	for i := range b.N {
		pass(i % credentials)
	}
	b.StopTimer()
	b.ReportMetric(kept, "kept-B/credential") // after the loop: ResetTimer deletes reported metrics
}

// TestReferenceRecordsGoWithTheirLastUser: the per-object records, not only the copies, go when no
// credential refers to the object, also when a pass is reading the object while its last other
// user lets go of it.
func TestReferenceRecordsGoWithTheirLastUser(t *testing.T) {
	ctx := context.Background()
	r := NewReferenceReader[string](stillReader{}, stillReader{}, clientgoscheme.Scheme)
	read := func(refs *ReferencesOf[string], names ...string) {
		for _, n := range names {
			if err := refs.Get(ctx, types.NamespacedName{Namespace: "ns", Name: n}, &corev1.Secret{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	a := r.For("a")
	read(a, "x", "y", "x")
	a.Done()
	b := r.For("b")
	read(b, "x")
	b.Done()
	if len(r.objects) != 2 || r.objects[secretKey("x")].uses != 2 || r.objects[secretKey("y")].uses != 1 {
		t.Fatalf("after a and b: %d records, want x used twice and y once", len(r.objects))
	}

	c := r.For("c")
	read(c, "z")
	c.Done()
	d := r.For("d")
	read(d, "z")   // d's pass is reading z …
	r.Release("c") // … when z's only counted user goes
	d.Done()
	if ref := r.objects[secretKey("z")]; ref == nil || ref.uses != 1 {
		t.Fatalf("z after d's pass: %+v, want one use", ref)
	}

	a = r.For("a")
	read(a, "y") // a no longer refers to x
	a.Done()
	if r.objects[secretKey("x")].uses != 1 {
		t.Fatalf("x uses = %d, want 1 (b)", r.objects[secretKey("x")].uses)
	}
	for _, u := range []string{"a", "b", "d"} {
		r.Release(u)
	}
	if len(r.objects) != 0 || len(r.users) != 0 || r.Copies() != 0 {
		t.Fatalf("after every release: %d records, %d users, %d copies", len(r.objects), len(r.users), r.Copies())
	}
}

func secretKey(name string) referenceKey {
	return referenceKey{gvk: corev1.SchemeGroupVersion.WithKind("Secret"), key: types.NamespacedName{Namespace: "ns", Name: name}}
}
