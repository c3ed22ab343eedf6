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
	r := NewReferenceReader(stillReader{}, stillReader{}, clientgoscheme.Scheme)
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
