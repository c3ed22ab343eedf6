package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// resolveInputs reads what the token request needs: the client ID and secret from the referenced
// Secret in the namespace the reference names, and the optional CA bundle likewise, through the
// uncached API reader. Only the operator reads them; nothing of them is written to the selected
// namespaces but the token. A missing object or key is a *token.Error with the Ready reason.
func (r *ClusterDatabricksCredentialReconciler) resolveInputs(ctx context.Context, cc *v1alpha1.ClusterDatabricksCredential) (token.Request, error) {
	spec := cc.Spec.CredentialSpec()
	ref := cc.Spec.ClientSecretRef()
	if ref == nil {
		return token.NewRequest(&spec, "", "", nil) // reports the missing block
	}
	var sec corev1.Secret
	if err := r.references().Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return token.Request{}, &token.Error{Reason: v1alpha1.ReasonSecretNotFound,
				Message: fmt.Sprintf("Secret %q with the client credentials does not exist in namespace %q", ref.Name, ref.Namespace),
				Hint:    "create it (keys " + keyOr(ref.ClientIDKey, "client-id") + " and " + keyOr(ref.ClientSecretKey, "client-secret") + "); the credential is retried as soon as it appears"}
		}
		return token.Request{}, err
	}
	clientID, err := secretValue(&sec, keyOr(ref.ClientIDKey, "client-id"))
	if err != nil {
		return token.Request{}, err
	}
	clientSecret, err := secretValue(&sec, keyOr(ref.ClientSecretKey, "client-secret"))
	if err != nil {
		return token.Request{}, err
	}
	var bundle []byte
	if ca := cc.Spec.CABundleRef; ca != nil {
		if bundle, err = r.caBundle(ctx, ca); err != nil {
			return token.Request{}, err
		}
	}
	return token.NewRequest(&spec, clientID, clientSecret, bundle)
}

func (r *ClusterDatabricksCredentialReconciler) caBundle(ctx context.Context, ref *v1alpha1.ClusterCABundleReference) ([]byte, error) {
	return readCABundle(ctx, r.references(), types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, ref.Key, "")
}
