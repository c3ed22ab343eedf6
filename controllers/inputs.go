package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// resolveInputs reads what the token request needs from the cluster: the client ID and secret
// from the referenced Secret and the optional CA bundle. Both are read through the uncached API
// reader: the manager caches only the operator's own target Secrets, never every Secret in the
// cluster. A missing object or key is a *token.Error with the documented Ready reason.
func (r *DatabricksCredentialReconciler) resolveInputs(ctx context.Context, cred *v1alpha1.DatabricksCredential) (token.Request, error) {
	ref := cred.Spec.ClientSecretRef()
	if ref == nil {
		return token.NewRequest(&cred.Spec, "", "", nil) // reports the missing block
	}
	var sec corev1.Secret
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: ref.Name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return token.Request{}, &token.Error{Reason: v1alpha1.ReasonSecretNotFound,
				Message: fmt.Sprintf("Secret %q with the client credentials does not exist in namespace %q", ref.Name, cred.Namespace),
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
	if ca := cred.Spec.CABundleRef; ca != nil {
		if bundle, err = r.caBundle(ctx, cred.Namespace, ca); err != nil {
			return token.Request{}, err
		}
	}
	return token.NewRequest(&cred.Spec, clientID, clientSecret, bundle)
}

func (r *DatabricksCredentialReconciler) caBundle(ctx context.Context, namespace string, ref *v1alpha1.CABundleReference) ([]byte, error) {
	var cm corev1.ConfigMap
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &token.Error{Reason: v1alpha1.ReasonSecretNotFound,
				Message: fmt.Sprintf("ConfigMap %q named by caBundleRef does not exist in namespace %q", ref.Name, namespace),
				Hint:    "create it with the PEM CA certificates, or remove spec.caBundleRef"}
		}
		return nil, err
	}
	key := keyOr(ref.Key, "ca.crt")
	if v := cm.Data[key]; strings.TrimSpace(v) != "" {
		return []byte(v), nil
	}
	if v := cm.BinaryData[key]; len(v) > 0 {
		return v, nil
	}
	return nil, &token.Error{Reason: v1alpha1.ReasonSecretKeyMissing,
		Message: fmt.Sprintf("ConfigMap %q has no key %q, or it is empty", ref.Name, key),
		Hint:    "add the PEM bundle under that key, or set spec.caBundleRef.key"}
}

// secretValue returns a key's value with surrounding whitespace removed: a trailing newline from
// `kubectl create secret --from-file` or a vault sync is never part of a client ID or secret.
func secretValue(sec *corev1.Secret, key string) (string, error) {
	v := strings.TrimSpace(string(sec.Data[key]))
	if v == "" {
		return "", &token.Error{Reason: v1alpha1.ReasonSecretKeyMissing,
			Message: fmt.Sprintf("Secret %q has no key %q, or it is empty", sec.Name, key),
			Hint:    "add the key, or point clientIDKey/clientSecretKey at the keys the Secret has"}
	}
	return v, nil
}

func keyOr(key, def string) string {
	if key == "" {
		return def
	}
	return key
}
