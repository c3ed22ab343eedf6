package kubecache

import (
	"context"
	"reflect"
	"slices"
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
// manager still caches the data of no Secret it was not asked about, and a rotation (a new
// resourceVersion) is read at once.
//
// Copies exist only for objects that a credential refers to now: each pass reads its references
// through For(credential) and reports them with Done, and a copy that no credential refers to any
// more (its credential was deleted, or now names another Secret) is dropped at once.
type ReferenceReader struct {
	api    client.Reader // uncached reads
	meta   client.Reader // the metadata-only reference cache
	scheme *runtime.Scheme

	mu     sync.Mutex
	copies map[referenceKey]client.Object
	users  map[any][]referenceKey // what each credential referred to in its last pass
	uses   map[referenceKey]int   // how many credentials refer to each object
}

type referenceKey struct {
	gvk schema.GroupVersionKind
	key client.ObjectKey
}

// NewReferenceReader reads through api, consulting meta (the reference cache) for resourceVersions.
func NewReferenceReader(api, meta client.Reader, scheme *runtime.Scheme) *ReferenceReader {
	return &ReferenceReader{api: api, meta: meta, scheme: scheme, copies: map[referenceKey]client.Object{},
		users: map[any][]referenceKey{}, uses: map[referenceKey]int{}}
}

// For returns the reader of one credential's pass (user names it): what it reads is kept, and
// recorded as what the credential refers to when the pass calls Done.
func (r *ReferenceReader) For(user any) *ReferencesOf {
	return &ReferencesOf{r: r, user: user}
}

// ReferencesOf reads the references of one credential's pass.
//
// What a credential refers to is a slice, not a set: a credential names one to four objects, and
// the reader keeps this for every credential (at 10,000 credentials a map per credential was
// ~10 MiB of live heap, a slice is a sixth of that; see docs/performance.md).
type ReferencesOf struct {
	r    *ReferenceReader
	user any
	read []referenceKey
}

// Get fills obj from the last copy when its resourceVersion is current, else from the API server,
// and keeps a copy.
func (v *ReferencesOf) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	gvk, err := apiutil.GVKForObject(obj, v.r.scheme)
	if err != nil {
		return v.r.api.Get(ctx, key, obj, opts...)
	}
	rk := referenceKey{gvk: gvk, key: key}
	if !slices.Contains(v.read, rk) {
		v.read = append(v.read, rk)
	}
	return v.r.get(ctx, rk, obj, opts...)
}

// Done records the objects the pass read as everything the credential refers to now.
func (v *ReferencesOf) Done() { v.r.setUses(v.user, v.read) }

// Release forgets what a deleted credential referred to.
func (r *ReferenceReader) Release(user any) { r.setUses(user, nil) }

// setUses replaces what user refers to, and drops the copies no credential refers to any more.
func (r *ReferenceReader) setUses(user any, now []referenceKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	before := r.users[user]
	for _, rk := range before {
		if slices.Contains(now, rk) {
			continue
		}
		if r.uses[rk]--; r.uses[rk] <= 0 {
			delete(r.uses, rk)
			delete(r.copies, rk)
		}
	}
	for _, rk := range now {
		if !slices.Contains(before, rk) {
			r.uses[rk]++
		}
	}
	switch {
	case len(now) == 0:
		delete(r.users, user)
	case !sameSet(before, now):
		r.users[user] = slices.Clip(now) // kept for the credential's life: no spare capacity
	}
}

// sameSet reports whether a and b hold the same keys (each slice holds a key at most once).
func sameSet(a, b []referenceKey) bool {
	if len(a) != len(b) {
		return false
	}
	for _, rk := range b {
		if !slices.Contains(a, rk) {
			return false
		}
	}
	return true
}

func (r *ReferenceReader) get(ctx context.Context, rk referenceKey, obj client.Object, opts ...client.GetOption) error {
	key := rk.key
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(rk.gvk)
	if r.meta.Get(ctx, key, meta) == nil {
		r.mu.Lock()
		cached, ok := r.copies[rk]
		r.mu.Unlock()
		if ok && cached.GetResourceVersion() == meta.GetResourceVersion() {
			reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(cached.DeepCopyObject()).Elem())
			return nil
		}
	}
	err := r.api.Get(ctx, key, obj, opts...)
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
