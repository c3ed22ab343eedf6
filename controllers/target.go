package controllers

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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
	// owned: the Secret's controller ownerReference has this credential's UID.
	owned
	// adoptable: the Secret carries our label for this credential's name and its controller owner
	// is a DatabricksCredential of the same name with another UID: an earlier incarnation that no
	// longer exists (names are unique), as after a GitOps delete and re-create.
	adoptable
	// foreign: anything else. It is never touched (reason SecretConflict).
	foreign
)

func ownershipOf(s *corev1.Secret, cred *v1alpha1.DatabricksCredential) ownership {
	if s == nil {
		return absent
	}
	ref := metav1.GetControllerOf(s)
	if ref == nil {
		return foreign
	}
	if ref.UID == cred.UID {
		return owned
	}
	if s.Labels[v1alpha1.LabelCredential] == cred.Name && ref.Kind == "DatabricksCredential" &&
		ref.APIVersion == v1alpha1.GroupVersion.String() && ref.Name == cred.Name {
		return adoptable
	}
	return foreign
}

// errSecretConflict reports a Secret at the target name that is not ours.
type errSecretConflict struct{ name string }

func (e errSecretConflict) Error() string {
	return fmt.Sprintf("Secret %q exists and is not owned by this DatabricksCredential; it is left untouched", e.name)
}

// getTarget reads the target Secret. The cache holds only Secrets with our label, so a miss is
// confirmed: a pre-existing Secret without the label must be seen (and left alone) before a token
// is requested for it, and one whose label was removed by hand is repaired.
func (r *DatabricksCredentialReconciler) getTarget(ctx context.Context, cred *v1alpha1.DatabricksCredential) (*corev1.Secret, error) {
	return readTarget(ctx, r.Client, r.refs, r.APIReader, types.NamespacedName{Namespace: cred.Namespace, Name: cred.TargetName()})
}

// readTarget reads a target Secret from the cache, which holds the Secrets with our label. A miss
// is confirmed by the reference cache, which holds the metadata of all the others: when it has
// none at key either, the Secret is absent and no API call is made (a new credential's first
// pass, 10,000 times in a burst); when it has one (a Secret without our label, a target whose
// label was removed by hand), or there is no reference cache (direct tests), the Secret is read
// from the API server.
// It returns nil when the Secret does not exist.
//
// The reference cache may lag behind a Secret created a moment ago; the create that follows then
// fails with AlreadyExists, and secretWriter reads the Secret and leaves it alone if it is not ours.
func readTarget(ctx context.Context, cached client.Reader, refs *referenceReader, direct client.Reader, key types.NamespacedName) (*corev1.Secret, error) {
	var s corev1.Secret
	err := cached.Get(ctx, key, &s)
	if apierrors.IsNotFound(err) {
		if refs != nil && refs.secretAbsent(ctx, key) {
			return nil, nil
		}
		err = direct.Get(ctx, key, &s)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// applySecret makes the target Secret hold desired, writing only when something differs. It
// creates the Secret when current is nil; if one exists that the cache could not see (no label),
// it is read directly and written only if it is ours.
func (r *DatabricksCredentialReconciler) applySecret(ctx context.Context, cred *v1alpha1.DatabricksCredential, current *corev1.Secret, desired secret.Desired) (bool, error) {
	w := secretWriter{Client: r.Client, APIReader: r.APIReader, Scheme: r.Scheme, Owner: cred,
		Ownership: func(s *corev1.Secret) ownership { return ownershipOf(s, cred) }, Writes: r.secretWrites}
	return w.apply(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: cred.TargetName()}, current, desired)
}

// secretWriter writes target Secrets for one owner: a DatabricksCredential, or a
// ClusterDatabricksCredential (which owns one Secret in each selected namespace).
type secretWriter struct {
	Client    client.Client
	APIReader client.Reader
	Scheme    *runtime.Scheme
	// Owner becomes the Secret's controller owner.
	Owner client.Object
	// Ownership says whether a Secret is the owner's, adoptable, or foreign.
	Ownership func(*corev1.Secret) ownership
	// Writes, when set, records each write so that its watch event can be recognised.
	Writes *ownWrites
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
		err := w.Client.Create(ctx, s)
		if err == nil {
			w.Writes.wrote(s)
			return true, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return false, err
		}
		current = &corev1.Secret{}
		if err := w.APIReader.Get(ctx, client.ObjectKeyFromObject(s), current); err != nil {
			return false, err
		}
	}
	if w.Ownership(current) == foreign {
		return false, errSecretConflict{name: current.Name}
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
	if err := w.Client.Patch(ctx, updated, client.MergeFromWithOptions(current, client.MergeFromWithOptimisticLock{})); err != nil {
		return false, err
	}
	w.Writes.wrote(updated)
	return true, nil
}

// mutate puts desired onto s: our labels and annotations over any others (which are kept),
// exactly the desired data keys, and the owner as controller owner.
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
	if w.Ownership(s) == adoptable {
		refs := s.OwnerReferences[:0:0]
		for _, ref := range s.OwnerReferences {
			if ref.Controller == nil || !*ref.Controller {
				refs = append(refs, ref)
			}
		}
		s.OwnerReferences = refs
	}
	return controllerutil.SetControllerReference(w.Owner, s, w.Scheme)
}
