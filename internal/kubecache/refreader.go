package kubecache

import (
	"context"
	"reflect"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// ReferenceReader reads the objects credentials refer to (client-credentials and certificate
// Secrets, CA ConfigMaps, ServiceAccounts) from the API server, but only when they changed: it
// keeps the copy it last read and reuses it while the metadata-only reference cache reports the
// same resourceVersion. A reconcile pass then costs no read for unchanged inputs, while the
// manager still caches the data of no Secret it was not asked about: copies exist only for
// objects a credential referenced, and a rotation (a new resourceVersion) is read at once.
type ReferenceReader struct {
	api    client.Reader // uncached reads
	meta   client.Reader // the metadata-only reference cache
	scheme *runtime.Scheme

	mu     sync.Mutex
	copies map[referenceKey]client.Object
}

type referenceKey struct {
	gvk schema.GroupVersionKind
	key client.ObjectKey
}

// NewReferenceReader reads through api, consulting meta (the reference cache) for resourceVersions.
func NewReferenceReader(api, meta client.Reader, scheme *runtime.Scheme) *ReferenceReader {
	return &ReferenceReader{api: api, meta: meta, scheme: scheme, copies: map[referenceKey]client.Object{}}
}

// Get fills obj from the last copy when its resourceVersion is current, else from the API server.
func (r *ReferenceReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	gvk, err := apiutil.GVKForObject(obj, r.scheme)
	if err != nil {
		return r.api.Get(ctx, key, obj, opts...)
	}
	rk := referenceKey{gvk: gvk, key: key}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(gvk)
	if r.meta.Get(ctx, key, meta) == nil {
		r.mu.Lock()
		cached, ok := r.copies[rk]
		r.mu.Unlock()
		if ok && cached.GetResourceVersion() == meta.GetResourceVersion() {
			reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(cached.DeepCopyObject()).Elem())
			return nil
		}
	}
	err = r.api.Get(ctx, key, obj, opts...)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		delete(r.copies, rk) // deleted, or unreadable: never serve an old copy
		return err
	}
	r.copies[rk] = obj.DeepCopyObject().(client.Object)
	return nil
}

// SecretAbsent reports whether the metadata cache has no Secret at key. Only a NotFound counts:
// any other answer (the cache not started, a namespace it does not watch) says nothing.
func (r *ReferenceReader) SecretAbsent(ctx context.Context, key client.ObjectKey) bool {
	return apierrors.IsNotFound(r.meta.Get(ctx, key, CoreMetadata("Secret")))
}

// Copies is the number of objects whose copy the reader holds.
func (r *ReferenceReader) Copies() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.copies)
}

// List is not cached: nothing lists references.
func (r *ReferenceReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return r.api.List(ctx, list, opts...)
}
