package controllers

import (
	"context"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/internal/kubecache"
)

// countingReader counts the reads that reach the API server.
type countingReader struct {
	client.Reader
	gets atomic.Int32
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets.Add(1)
	return c.Reader.Get(ctx, key, obj, opts...)
}

var _ = Describe("The reference reader", func() {
	It("reads a referenced Secret again only when its resourceVersion changed", func() {
		ns := newNamespace()
		newClientSecret(ns, "sp", "client-1")
		api := &countingReader{Reader: k8sClient}
		// The apiserver itself answers the metadata reads here; in the manager it is the
		// metadata-only informer cache.
		reader := kubecache.NewReferenceReader[string](api, k8sClient, scheme)
		refs := reader.For("credential-a")
		key := types.NamespacedName{Namespace: ns, Name: "sp"}

		var first corev1.Secret
		Expect(refs.Get(suiteCtx, key, &first)).To(Succeed())
		Expect(api.gets.Load()).To(Equal(int32(1)))

		var second corev1.Secret
		Expect(refs.Get(suiteCtx, key, &second)).To(Succeed())
		Expect(api.gets.Load()).To(Equal(int32(1)), "unchanged: served from the copy")
		Expect(second.Data).To(Equal(first.Data))
		second.Data["client-id"] = []byte("mutated")
		var third corev1.Secret
		Expect(refs.Get(suiteCtx, key, &third)).To(Succeed())
		Expect(string(third.Data["client-id"])).To(Equal("client-1"), "callers get their own copy")

		rotated := rotateClientSecret(ns, "sp")
		var fourth corev1.Secret
		Expect(refs.Get(suiteCtx, key, &fourth)).To(Succeed())
		Expect(api.gets.Load()).To(Equal(int32(2)), "a new resourceVersion is read at once")
		Expect(string(fourth.Data["client-secret"])).To(Equal(rotated))

		Expect(k8sClient.Delete(suiteCtx, &fourth)).To(Succeed())
		var gone corev1.Secret
		Expect(apierrors.IsNotFound(refs.Get(suiteCtx, key, &gone))).To(BeTrue())
		Expect(reader.Copies()).To(BeZero(), "no copy outlives its object")
	})

	It("keeps a copy only while a credential refers to the object", func() {
		ns := newNamespace()
		newClientSecret(ns, "sp", "client-1")
		newClientSecret(ns, "other", "client-2")
		reader := kubecache.NewReferenceReader[string](k8sClient, k8sClient, scheme)
		read := func(user, name string) {
			refs := reader.For(user)
			var s corev1.Secret
			Expect(refs.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, &s)).To(Succeed())
			refs.Done()
		}
		read("a", "sp")
		read("b", "sp")
		Expect(reader.Copies()).To(Equal(1), "one copy for the two credentials that refer to it")
		read("a", "other")
		Expect(reader.Copies()).To(Equal(2), "b still refers to sp")
		reader.Release("b")
		Expect(reader.Copies()).To(Equal(1), "nobody refers to sp any more")
		reader.Release("a")
		Expect(reader.Copies()).To(BeZero(), "the copies of deleted credentials' references go with them")

		// A pass that reads one object twice, and passes that repeat, count it once: otherwise a
		// release would leave a count behind and keep the copy for ever.
		refs := reader.For("c")
		for _, name := range []string{"sp", "sp", "other"} {
			var s corev1.Secret
			Expect(refs.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, &s)).To(Succeed())
		}
		refs.Done()
		Expect(reader.Copies()).To(Equal(2))
		read("c", "sp")
		read("c", "sp")
		Expect(reader.Copies()).To(Equal(1), "c no longer refers to other")
		reader.Release("c")
		Expect(reader.Copies()).To(BeZero(), "sp counted once however often c read it")
	})
})
