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
// more (its credential was deleted, or now names another Secret) is dropped at once. U names a
// credential (the credential package uses its kind and key).
//
// The record of what each credential refers to is kept for every credential, so it is small: one
// map entry and a slice of pointers to shared per-object records (~120 B per credential; a map of
// keys per credential was ~930 B, 9 MiB at 10,000 credentials — docs/performance.md).
type ReferenceReader[U comparable] struct {
	api    client.Reader // uncached reads
	meta   client.Reader // the metadata-only reference cache
	scheme *runtime.Scheme

	mu      sync.Mutex
	objects map[referenceKey]*reference // objects a credential refers to, or a pass is reading
	users   map[U][]*reference          // what each credential referred to in its last pass
}

type referenceKey struct {
	gvk schema.GroupVersionKind
	key client.ObjectKey
}

// reference is the one record of an object, shared by the credentials that refer to it.
type reference struct {
	key  referenceKey
	uses int           // credentials whose last pass read the object
	copy client.Object // the last read; nil when none is usable
}

// NewReferenceReader reads through api, consulting meta (the reference cache) for resourceVersions.
func NewReferenceReader[U comparable](api, meta client.Reader, scheme *runtime.Scheme) *ReferenceReader[U] {
	return &ReferenceReader[U]{api: api, meta: meta, scheme: scheme,
		objects: map[referenceKey]*reference{}, users: map[U][]*reference{}}
}

// For returns the reader of one credential's pass (user names it): what it reads is kept, and
// recorded as what the credential refers to when the pass calls Done.
func (r *ReferenceReader[U]) For(user U) *ReferencesOf[U] {
	return &ReferencesOf[U]{r: r, user: user}
}

// ReferencesOf reads the references of one credential's pass.
type ReferencesOf[U comparable] struct {
	r    *ReferenceReader[U]
	user U
	read []referenceKey // a pass reads one to four objects: a slice, not a set
}

// Get fills obj from the last copy when its resourceVersion is current, else from the API server,
// and keeps a copy.
func (v *ReferencesOf[U]) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
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
func (v *ReferencesOf[U]) Done() { v.r.setUses(v.user, v.read) }

// Release forgets what a deleted credential referred to.
func (r *ReferenceReader[U]) Release(user U) { r.setUses(user, nil) }

// setUses replaces what user refers to, and drops the records (and copies) of objects no
// credential refers to any more.
func (r *ReferenceReader[U]) setUses(user U, now []referenceKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	before := r.users[user]
	for _, ref := range before {
		if slices.Contains(now, ref.key) {
			continue
		}
		if ref.uses--; ref.uses <= 0 {
			delete(r.objects, ref.key)
		}
	}
	same := len(before) == len(now)
	for _, rk := range now {
		if slices.ContainsFunc(before, func(ref *reference) bool { return ref.key == rk }) {
			continue
		}
		same = false
		r.objectLocked(rk).uses++
	}
	switch {
	case len(now) == 0:
		delete(r.users, user)
	case !same:
		refs := make([]*reference, len(now)) // exact size: kept for the credential's life
		for i, rk := range now {
			refs[i] = r.objectLocked(rk)
		}
		r.users[user] = refs
	}
}

// objectLocked returns the record of rk, creating it.
func (r *ReferenceReader[U]) objectLocked(rk referenceKey) *reference {
	ref, ok := r.objects[rk]
	if !ok {
		ref = &reference{key: rk}
		r.objects[rk] = ref
	}
	return ref
}

func (r *ReferenceReader[U]) get(ctx context.Context, rk referenceKey, obj client.Object, opts ...client.GetOption) error {
	key := rk.key
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(rk.gvk)
	if r.meta.Get(ctx, key, meta) == nil {
		r.mu.Lock()
		var cached client.Object
		if ref, ok := r.objects[rk]; ok {
			cached = ref.copy
		}
		r.mu.Unlock()
		if cached != nil && cached.GetResourceVersion() == meta.GetResourceVersion() {
			reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(cached.DeepCopyObject()).Elem())
			return nil
		}
	}
	err := r.api.Get(ctx, key, obj, opts...)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if ref, ok := r.objects[rk]; ok {
			ref.copy = nil // deleted, or unreadable: never serve an old copy
		}
		return err
	}
	// The record may be new (uses 0): this pass's Done counts it.
	r.objectLocked(rk).copy = obj.DeepCopyObject().(client.Object)
	return nil
}

// SecretAbsent reports whether the metadata cache has no Secret at key. Only a NotFound counts:
// any other answer (the cache not started, a namespace it does not watch) says nothing.
func (r *ReferenceReader[U]) SecretAbsent(ctx context.Context, key client.ObjectKey) bool {
	return apierrors.IsNotFound(r.meta.Get(ctx, key, CoreMetadata("Secret")))
}

// Copies is the number of objects whose copy the reader holds.
func (r *ReferenceReader[U]) Copies() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ref := range r.objects {
		if ref.copy != nil {
			n++
		}
	}
	return n
}
