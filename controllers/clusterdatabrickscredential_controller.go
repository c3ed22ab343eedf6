package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/credential"
)

// ClusterControllerName names the ClusterDatabricksCredential controller, its event recorder and
// its field manager.
const ClusterControllerName = "clusterdatabrickscredential"

// noNamespacesMessage is the Ready message when a cluster credential selects no namespace.
const noNamespacesMessage = "no existing namespace matches spec.namespaceSelector or spec.namespaces; " +
	"no token is requested until one does"

// ClusterDatabricksCredentialReconciler keeps the token Secret of each ClusterDatabricksCredential
// in every namespace it selects. One token serves all of them: it is obtained once per refresh
// (expiresAt − renewBefore, the same rule as DatabricksCredential) and written everywhere, so a
// cluster credential costs one exchange per refresh however many namespaces it serves. Namespaces
// that stop matching lose the Secret, and only the Secrets this controller wrote are ever deleted.
// The client secret is read from its own namespace and never written anywhere.
type ClusterDatabricksCredentialReconciler struct{ adapter }

// The credential kinds' own permissions are in setup.go, for both kinds.
// Namespaces: spec.namespaceSelector is matched against namespace labels (metadata-only watch).
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// Secrets: delete exists for this controller alone. When a namespace stops matching a
// ClusterDatabricksCredential (relabelled, or the selector changed) while the credential still
// exists, garbage collection cannot remove the token Secret written there, so the controller
// deletes it: only Secrets labelled for this cluster credential whose controller owner is it (by
// UID), with a UID and resourceVersion precondition. DatabricksCredential never deletes.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete

// Reconcile brings one cluster credential's Secrets and status up to date: the pass resolves the
// client credentials, then asks for the destinations — the selected namespaces, after our Secrets
// were deleted where they no longer belong — obtains at most one token and writes it to every
// selected namespace it may write. Exactly one status write per pass, skipped when nothing
// changed.
func (r *ClusterDatabricksCredentialReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cc := &v1alpha1.ClusterDatabricksCredential{}
	return r.shared.reconcile(ctx, req.NamespacedName, cc, r.pass, func(ctx context.Context) (ctrl.Result, error) {
		spec := cc.Spec.CredentialSpec()
		// One Secret per selected namespace, reported per namespace.
		subject := credential.NewSubject(cc, credential.KindClusterDatabricksCredential, &spec, cc.TargetName(), &cc.Status.DatabricksCredentialStatus)
		subject.PerNamespace = &cc.Status
		return r.pass.Run(ctx, subject, clusterIdentityOf(cc, &spec), func(ctx context.Context) ([]credential.Destination, error) {
			return r.destinations(ctx, cc)
		})
	})
}

// destinations are the selected namespaces with the Secret at the target name in each. Before
// returning them it deletes our Secrets in namespaces no longer selected (or under a target name
// no longer used); with no namespace selected it reports NoMatchingNamespaces.
func (r *ClusterDatabricksCredentialReconciler) destinations(ctx context.Context, cc *v1alpha1.ClusterDatabricksCredential) ([]credential.Destination, error) {
	selected, err := r.selectedNamespaces(ctx, cc)
	if err != nil {
		return nil, err
	}
	current, stale, err := r.ourSecrets(ctx, cc, selected)
	if err != nil {
		return nil, err
	}
	if err := r.removeStale(ctx, stale); err != nil {
		return nil, err
	}
	if len(selected) == 0 {
		cc.Status.NamespaceCount, cc.Status.FailedNamespaces = 0, nil
		return nil, &credential.ConditionError{Reason: v1alpha1.ReasonNoMatchingNamespaces, Message: noNamespacesMessage,
			Hint: "label a namespace, or check the selector with `kubectl get ns -l ...`"}
	}
	dests := make([]credential.Destination, 0, len(selected))
	for _, ns := range selected {
		s, ok := current[ns]
		if !ok {
			// Not in the cache of labelled Secrets: absent, or a Secret without our label, which
			// must be seen (and left alone) before anything is written.
			if s, err = r.pass.ReadTarget(ctx, types.NamespacedName{Namespace: ns, Name: cc.TargetName()}); err != nil {
				return nil, err
			}
		}
		dests = append(dests, credential.Destination{Namespace: ns, Secret: s})
	}
	return dests, nil
}

// ourSecrets lists the Secrets labelled for the cluster credential (from the cache) and splits
// them into the current one of each selected namespace and the stale ones: ours (by controller
// UID) in a namespace that is no longer selected, or under a target name no longer used.
func (r *ClusterDatabricksCredentialReconciler) ourSecrets(ctx context.Context, cc *v1alpha1.ClusterDatabricksCredential, selected []string) (map[string]*corev1.Secret, []corev1.Secret, error) {
	var ours corev1.SecretList
	if err := r.shared.Client.List(ctx, &ours, client.MatchingLabels{v1alpha1.LabelClusterCredential: cc.Name}); err != nil {
		return nil, nil, err
	}
	isSelected := make(map[string]bool, len(selected))
	for _, ns := range selected {
		isSelected[ns] = true
	}
	current := map[string]*corev1.Secret{}
	var stale []corev1.Secret
	for i := range ours.Items {
		s := &ours.Items[i]
		if s.Name == cc.TargetName() && isSelected[s.Namespace] {
			current[s.Namespace] = s
			continue
		}
		if ref := metav1.GetControllerOf(s); ref != nil && ref.UID == cc.UID {
			stale = append(stale, *s)
		}
	}
	return current, stale, nil
}

// removeStale deletes Secrets this cluster credential wrote in namespaces it no longer selects
// (or under a target name it no longer uses). The preconditions make sure that exactly the Secret
// judged ours is deleted, not one re-created or changed in between.
func (r *ClusterDatabricksCredentialReconciler) removeStale(ctx context.Context, stale []corev1.Secret) error {
	var errs []error
	for i := range stale {
		s := &stale[i]
		err := r.shared.Client.Delete(ctx, s, client.Preconditions{UID: &s.UID, ResourceVersion: &s.ResourceVersion})
		if client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting Secret %s/%s: %w", s.Namespace, s.Name, err))
			continue
		}
		log.FromContext(ctx).Info("removed the token Secret from a namespace that is no longer selected", "namespace", s.Namespace, "secret", s.Name)
	}
	return kerrors.NewAggregate(errs)
}

// clusterIdentityOf names the objects a cluster credential refers to, each in the namespace its
// reference names; spec is cc's CredentialSpec.
func clusterIdentityOf(cc *v1alpha1.ClusterDatabricksCredential, spec *v1alpha1.DatabricksCredentialSpec) credential.Identity {
	id := credential.Identity{Spec: spec}
	if ref := cc.Spec.ClientSecretRef(); ref != nil {
		id.ClientSecret = &credential.SecretKeys{NamespacedName: types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name},
			ClientIDKey: ref.ClientIDKey, ClientSecretKey: ref.ClientSecretKey}
	}
	if ca := cc.Spec.CABundleRef; ca != nil {
		id.CABundle = &credential.ConfigMapKey{NamespacedName: types.NamespacedName{Namespace: ca.Namespace, Name: ca.Name}, Key: ca.Key}
	}
	return id
}
