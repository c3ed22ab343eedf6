package credential

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/secret"
)

// ownership is the relation between a credential and the Secret at its target name.
type ownership int

const (
	absent ownership = iota
	// owned: the Secret's controller ownerReference has the credential's UID.
	owned
	// adoptable: the Secret carries the credential's owner label for its name and its controller
	// owner is a credential of the same kind and name with another UID: an earlier incarnation
	// that no longer exists (names are unique), as after a GitOps delete and re-create.
	adoptable
	// foreign: anything else. It is never touched (reason SecretConflict).
	foreign
)

func (s *Subject) ownershipOf(sec *corev1.Secret) ownership {
	if sec == nil {
		return absent
	}
	ref := metav1.GetControllerOf(sec)
	if ref == nil {
		return foreign
	}
	if ref.UID == s.uid() {
		return owned
	}
	if sec.Labels[s.OwnerLabel] == s.Key().Name && ref.Kind == s.Kind &&
		ref.APIVersion == v1alpha1.GroupVersion.String() && ref.Name == s.Key().Name {
		return adoptable
	}
	return foreign
}

// errSecretConflict reports a Secret at the target name that is not ours.
type errSecretConflict struct{ namespace string }

func (e errSecretConflict) Error() string {
	return fmt.Sprintf("the Secret in namespace %q is not ours", e.namespace)
}

// ReadTarget reads a target Secret from the cache, which holds the Secrets with our label. A miss
// is confirmed by the reference cache, which holds the metadata of all the others: when it has
// none at key either, the Secret is absent and no API call is made (a new credential's first
// pass, 10,000 times in a burst); when it has one (a Secret without our label, a target whose
// label was removed by hand), the Secret is read from the API server. It returns nil when the
// Secret does not exist.
//
// The reference cache may lag behind a Secret created a moment ago; the create that follows then
// fails with AlreadyExists, and the writer reads the Secret and leaves it alone if it is not ours.
func (d *Deps) ReadTarget(ctx context.Context, key types.NamespacedName) (*corev1.Secret, error) {
	var s corev1.Secret
	err := d.Client.Get(ctx, key, &s)
	if apierrors.IsNotFound(err) {
		if d.References.SecretAbsent(ctx, key) {
			return nil, nil
		}
		err = d.APIReader.Get(ctx, key, &s)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// secretWriter writes the target Secrets of one subject.
//
// It is not controllerutil.CreateOrPatch, deliberately. CreateOrPatch starts with its own Get: an
// extra read per Secret where the pass already holds the Secret from the cache, and, for a
// Secret the label-restricted cache cannot see (a pre-existing one without our label), a miss
// followed by a Create that fails with AlreadyExists, an error instead of a SecretConflict. It
// patches without the optimistic lock, so a concurrent hand edit would be merged into a half-old
// Secret instead of failing the pass. And its mutate function cannot refuse a Secret that turns
// out to be someone else's. apply starts from the Secret the pass read, creates when there is
// none, treats AlreadyExists as "read it and leave it alone unless it is ours", and patches with
// the optimistic lock.
type secretWriter struct {
	deps    *Deps
	subject *Subject
}

// apply makes the Secret at key hold desired, writing only when something differs. It creates the
// Secret when current is nil; if one exists that the cache could not see (no label), it is read
// directly and written only if it is ours.
func (w secretWriter) apply(ctx context.Context, key types.NamespacedName, current *corev1.Secret, desired secret.Desired) (bool, error) {
	if current == nil {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace},
			Type:       corev1.SecretTypeOpaque,
		}
		if err := w.mutate(s, desired); err != nil {
			return false, err
		}
		err := w.deps.Client.Create(ctx, s)
		if err == nil {
			w.deps.Writes.Wrote(s)
			return true, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return false, err
		}
		current = &corev1.Secret{}
		if err := w.deps.APIReader.Get(ctx, client.ObjectKeyFromObject(s), current); err != nil {
			return false, err
		}
	}
	if w.subject.ownershipOf(current) == foreign {
		return false, errSecretConflict{namespace: key.Namespace}
	}
	updated := current.DeepCopy()
	if err := w.mutate(updated, desired); err != nil {
		return false, err
	}
	if equality.Semantic.DeepEqual(current, updated) {
		return false, nil
	}
	// The optimistic lock makes a concurrent edit fail this patch (and the pass retry) instead of
	// being silently overwritten or merged with a half-old Secret.
	if err := w.deps.Client.Patch(ctx, updated, client.MergeFromWithOptions(current, client.MergeFromWithOptimisticLock{})); err != nil {
		return false, err
	}
	w.deps.Writes.Wrote(updated)
	return true, nil
}

// mutate puts desired onto s: our labels and annotations over any others (which are kept),
// exactly the desired data keys, and the subject as controller owner.
func (w secretWriter) mutate(s *corev1.Secret, desired secret.Desired) error {
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	maps.Copy(s.Labels, desired.Labels)
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	maps.Copy(s.Annotations, desired.Annotations)
	s.Data = desired.Data
	s.StringData = nil
	if w.subject.ownershipOf(s) == adoptable {
		refs := s.OwnerReferences[:0:0]
		for _, ref := range s.OwnerReferences {
			if ref.Controller == nil || !*ref.Controller {
				refs = append(refs, ref)
			}
		}
		s.OwnerReferences = refs
	}
	return controllerutil.SetControllerReference(w.subject.Object, s, w.deps.Scheme)
}
