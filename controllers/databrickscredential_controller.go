// Package controllers holds the two credential reconcilers. Each is a thin adapter around the
// refresh pass in internal/credential, which both kinds share: it reads its object, says what the
// pass needs to know of it (the subject, its identity, where the token goes) and runs the pass.
// Setup builds what both share once per manager and registers them.
package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/credential"
)

// ControllerName names the DatabricksCredential controller, its event recorder and its field
// manager.
const ControllerName = "databrickscredential"

// DatabricksCredentialReconciler keeps each DatabricksCredential's target Secret holding a token
// that is valid for the current spec and client secret, and replaces it at expiresAt −
// renewBefore. It never removes a token from the Secret: a failed refresh leaves the last good
// token in place until it expires, and status says why.
type DatabricksCredentialReconciler struct{ adapter }

// The credential kinds' own permissions are in setup.go, for both kinds.
// Secrets: get/list/watch for the client credentials (metadata watch, direct reads) and the
// target Secrets (cached by label); create/update/patch to write target Secrets. No delete: the
// garbage collector removes a target Secret through its owner reference.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// ConfigMaps: caBundleRef is read directly and watched by metadata.
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// ServiceAccounts of federation and azure.workloadIdentity blocks: get to report a missing one
// before any exchange, list/watch by metadata to retry as soon as it appears, and create on
// serviceaccounts/token (the TokenRequest API) to mint the short-lived token that is exchanged.
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=serviceaccounts/token,verbs=create
// TokenReviews prove that a minted ServiceAccount token is not accepted by the Kubernetes API
// before it is sent anywhere.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// Events record refreshes and failures.
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one credential's Secret and status up to date and returns when to look again
// (see credential.Pass.Run). Exactly one status write per pass, skipped when nothing changed.
func (r *DatabricksCredentialReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cred := &v1alpha1.DatabricksCredential{}
	return r.shared.reconcile(ctx, req.NamespacedName, cred, r.pass, func(ctx context.Context) (ctrl.Result, error) {
		subject := credential.NewSubject(cred, credential.KindDatabricksCredential, &cred.Spec, cred.TargetName(), &cred.Status)
		return r.pass.Run(ctx, subject, identityOf(cred), func(ctx context.Context) ([]credential.Destination, error) {
			target, err := r.pass.ReadTarget(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: cred.TargetName()})
			if err != nil {
				return nil, err
			}
			return []credential.Destination{{Namespace: cred.Namespace, Secret: target}}, nil
		})
	})
}

// identityOf names the objects a DatabricksCredential refers to: all in its own namespace.
func identityOf(cred *v1alpha1.DatabricksCredential) credential.Identity {
	ns := cred.Namespace
	id := credential.Identity{Spec: &cred.Spec, Home: ns}
	if ref := cred.Spec.ClientSecretRef(); ref != nil {
		id.ClientSecret = &credential.SecretKeys{NamespacedName: types.NamespacedName{Namespace: ns, Name: ref.Name},
			ClientIDKey: ref.ClientIDKey, ClientSecretKey: ref.ClientSecretKey}
	}
	if az := cred.Spec.Azure; az != nil && az.ClientCertificateRef != nil {
		id.Certificate = &types.NamespacedName{Namespace: ns, Name: az.ClientCertificateRef.Name}
	}
	if name := cred.Spec.ServiceAccountName(); name != "" {
		id.ServiceAccount = &types.NamespacedName{Namespace: ns, Name: name}
	}
	if ca := cred.Spec.CABundleRef; ca != nil {
		id.CABundle = &credential.ConfigMapKey{NamespacedName: types.NamespacedName{Namespace: ns, Name: ca.Name}, Key: ca.Key}
	}
	return id
}
