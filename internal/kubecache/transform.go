package kubecache

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/intern"
)

// ManagerCacheOptions are the manager cache settings the controllers rely on: Secrets are cached
// only with our label (the targets we write), so the manager's memory does not grow with the
// cluster's unrelated Secrets, and only the watched namespaces are cached when --namespaces is
// set. Cached objects are slimmed and share their repeated values (cacheTransform).
func ManagerCacheOptions(namespaces []string) cache.Options {
	managed, err := labels.NewRequirement(v1alpha1.LabelCredential, selection.Exists, nil)
	utilruntime.Must(err)
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.NewSelector().Add(*managed)},
		},
		DefaultTransform:  cacheTransform(intern.NewTable()),
		DefaultNamespaces: namespaceConfigs(namespaces),
	}
}

// The manager's memory is its caches: at 10,000 credentials, the credentials and their target
// Secrets are most of the live heap (test/bench, docs/performance.md). The transforms below run
// once per object as the informer stores it.

// cacheTransform is the manager cache's transform for every kind: drop what is never read, then
// let objects share the values they repeat — namespaces, label and annotation keys, owner kinds,
// the condition vocabulary, and for target Secrets the token and its annotations, which all
// Secrets of one identity hold alike. Sharing is safe because cached objects are never modified
// in place (reads return deep copies).
func cacheTransform(t *intern.Table) toolscache.TransformFunc {
	return func(obj any) (any, error) {
		obj, err := stripForCache(obj)
		if err != nil {
			return obj, err
		}
		if m, ok := obj.(metav1.Object); ok {
			shareMeta(t, m)
		}
		switch o := obj.(type) {
		case *corev1.Secret:
			if !ownedByCredential(o) {
				return foreignStub(o), nil
			}
			shareValues(t, o)
		case *v1alpha1.DatabricksCredential:
			o.Spec.Host = t.String(o.Spec.Host)
			shareConditions(t, o.Status.Conditions)
		case *v1alpha1.ClusterDatabricksCredential:
			shareConditions(t, o.Status.Conditions)
		}
		return obj, nil
	}
}

// ownedByCredential reports whether a Secret's controller owner is a credential of either kind:
// the only Secrets the manager writes, and so the only ones whose data it reads from the cache.
func ownedByCredential(s *corev1.Secret) bool {
	return ControlledByKind(s, "DatabricksCredential") || ControlledByKind(s, "ClusterDatabricksCredential")
}

// foreignStub is what the cache keeps of a Secret that carries our label but is not owned by a
// credential: anyone who may create Secrets can label one, so its data, annotations and other
// labels are dropped, and the manager's memory is bounded by what it owns. What remains is enough
// to see that a Secret is there and is not ours (SecretConflict) — the controllers never write
// such a Secret, so they never need its content.
func foreignStub(s *corev1.Secret) *corev1.Secret {
	stub := &corev1.Secret{TypeMeta: s.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion,
		Generation: s.Generation, CreationTimestamp: s.CreationTimestamp, DeletionTimestamp: s.DeletionTimestamp,
	}}
	for _, key := range []string{v1alpha1.LabelCredential, v1alpha1.LabelClusterCredential} {
		if v, ok := s.Labels[key]; ok {
			if stub.Labels == nil {
				stub.Labels = map[string]string{}
			}
			stub.Labels[key] = v
		}
	}
	if ref := metav1.GetControllerOf(s); ref != nil {
		stub.OwnerReferences = []metav1.OwnerReference{*ref}
	}
	return stub
}

// stripForCache drops from cached objects what the controllers never read and what can be most
// of an object's size: managedFields, and the last-applied-configuration annotation that
// `kubectl apply` (and Argo CD's client-side apply) stores, a full JSON copy of the object. Safe
// because the controllers write only with patches computed between two cached copies, never
// with an update of a cached object, so the stripped fields are never sent back.
func stripForCache(obj any) (any, error) {
	obj, err := cache.TransformStripManagedFields()(obj)
	if err != nil {
		return obj, err
	}
	if m, ok := obj.(metav1.Object); ok {
		if a := m.GetAnnotations(); a != nil {
			delete(a, corev1.LastAppliedConfigAnnotation)
		}
	}
	return obj, nil
}

// shareMeta shares the metadata strings many objects repeat.
func shareMeta(t *intern.Table, m metav1.Object) {
	m.SetNamespace(t.String(m.GetNamespace()))
	m.SetLabels(sharedKeys(t, m.GetLabels()))
	m.SetAnnotations(sharedKeys(t, m.GetAnnotations()))
	refs := m.GetOwnerReferences()
	for i := range refs {
		refs[i].APIVersion = t.String(refs[i].APIVersion)
		refs[i].Kind = t.String(refs[i].Kind)
	}
}

// sharedKeys rebuilds a map with shared keys (a key cannot be replaced in place).
func sharedKeys(t *intern.Table, m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[t.String(k)] = v
	}
	return out
}

// shareValues makes a cached target Secret share its token and annotation values with the other
// Secrets of the same identity, which hold the same ones.
func shareValues(t *intern.Table, s *corev1.Secret) {
	s.Type = corev1.SecretType(t.String(string(s.Type)))
	for k, v := range s.Data {
		s.Data[k] = t.Bytes(v)
	}
	for k, v := range s.Annotations {
		s.Annotations[k] = t.String(v)
	}
}

func shareConditions(t *intern.Table, conds []metav1.Condition) {
	for i := range conds {
		conds[i].Type = t.String(conds[i].Type)
		conds[i].Status = metav1.ConditionStatus(t.String(string(conds[i].Status)))
		conds[i].Reason = t.String(conds[i].Reason)
	}
}
