package credential

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// Identity is what a credential's token request is built from: the identity block, scopes and
// endpoints in the namespaced kind's shape (the cluster kind's CredentialSpec), and where each
// object it refers to lives. The namespaced kind names objects of its own namespace; the cluster
// kind names each with its namespace.
type Identity struct {
	Spec *v1alpha1.DatabricksCredentialSpec
	// ClientSecret is the client-credentials Secret and its keys (nil for secretless identities).
	ClientSecret *SecretKeys
	// Certificate is the kubernetes.io/tls Secret of azure.clientCertificateRef.
	Certificate *types.NamespacedName
	// ServiceAccount is the ServiceAccount of federation and azure.workloadIdentity.
	ServiceAccount *types.NamespacedName
	// CABundle is the ConfigMap of caBundleRef and its key.
	CABundle *ConfigMapKey
	// Home is the credential's own namespace ("" for the cluster kind): messages name a
	// ConfigMap's namespace only where it is not this one.
	Home string
}

// SecretKeys names a Secret and the keys of the client ID and secret in it ("" for the defaults).
type SecretKeys struct {
	types.NamespacedName
	ClientIDKey, ClientSecretKey string
}

// ConfigMapKey names a ConfigMap and the key of the PEM bundle in it ("" for ca.crt).
type ConfigMapKey struct {
	types.NamespacedName
	Key string
}

// resolve reads what the token request needs from the cluster: the client ID and secret from the
// client-credentials Secret, or the certificate and key of a client-certificate Secret, that a
// named ServiceAccount exists, and the optional CA bundle. Secrets and ConfigMaps are read through
// the reference reader, which reads them from the API server only when their resourceVersion
// changed: the manager caches only the operator's own target Secrets, never every Secret in the
// cluster. A missing object or key is a *ConditionError with the documented Ready reason. A
// ServiceAccount's token is not requested here but by the provider, and only when it performs an
// exchange.
func (d *Deps) resolve(ctx context.Context, user Waiter, id Identity) (token.Request, error) {
	refs := d.References.For(user)
	defer refs.Done() // what the credential refers to now; copies of anything else go
	in := token.Inputs{}
	if ref := id.ClientSecret; ref != nil {
		var err error
		if in.ClientID, in.ClientSecret, err = d.clientCredentials(ctx, refs, ref); err != nil {
			return token.Request{}, err
		}
	}
	if id.Certificate != nil {
		var err error
		if in.CertificatePEM, in.PrivateKeyPEM, err = d.clientCertificate(ctx, refs, *id.Certificate); err != nil {
			return token.Request{}, err
		}
	}
	if sa := id.ServiceAccount; sa != nil {
		if err := d.serviceAccountExists(ctx, refs, *sa); err != nil {
			return token.Request{}, err
		}
		in.Namespace = sa.Namespace
		in.SubjectToken = ServiceAccountTokens(d.Client)
	}
	if ca := id.CABundle; ca != nil {
		var err error
		if in.CABundle, err = d.caBundle(ctx, refs, *ca, id.Home); err != nil {
			return token.Request{}, err
		}
	}
	return token.NewRequestFromInputs(id.Spec, in) // also reports a missing identity block
}

func (d *Deps) clientCredentials(ctx context.Context, refs referenceReader, ref *SecretKeys) (clientID, clientSecret string, err error) {
	idKey, secretKey := keyOr(ref.ClientIDKey, "client-id"), keyOr(ref.ClientSecretKey, "client-secret")
	var sec corev1.Secret
	if err := refs.Get(ctx, ref.NamespacedName, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return "", "", &ConditionError{Reason: v1alpha1.ReasonSecretNotFound,
				Message: fmt.Sprintf("Secret %q with the client credentials does not exist in namespace %q", ref.Name, ref.Namespace),
				Hint:    "create it (keys " + idKey + " and " + secretKey + "); the credential is retried as soon as it appears"}
		}
		if apierrors.IsForbidden(err) {
			return "", "", errReadForbidden("Secret", ref.NamespacedName)
		}
		return "", "", err
	}
	if clientID, err = secretValue(&sec, idKey); err != nil {
		return "", "", err
	}
	if clientSecret, err = secretValue(&sec, secretKey); err != nil {
		return "", "", err
	}
	return clientID, clientSecret, nil
}

// clientCertificate reads tls.crt and tls.key of a client-certificate Secret. Their content is
// checked by token.NewRequestFromInputs.
func (d *Deps) clientCertificate(ctx context.Context, refs referenceReader, key types.NamespacedName) (certPEM, keyPEM []byte, err error) {
	var sec corev1.Secret
	if err := refs.Get(ctx, key, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, &ConditionError{Reason: v1alpha1.ReasonSecretNotFound,
				Message: fmt.Sprintf("Secret %q with the client certificate does not exist in namespace %q", key.Name, key.Namespace),
				Hint:    "create it as a kubernetes.io/tls Secret (keys tls.crt and tls.key), e.g. with a cert-manager Certificate; the credential is retried as soon as it appears"}
		}
		if apierrors.IsForbidden(err) {
			return nil, nil, errReadForbidden("Secret", key)
		}
		return nil, nil, err
	}
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
		if len(bytes.TrimSpace(sec.Data[k])) == 0 {
			return nil, nil, &ConditionError{Reason: v1alpha1.ReasonSecretKeyMissing,
				Message: fmt.Sprintf("Secret %q has no key %q, or it is empty", key.Name, k),
				Hint:    "a client-certificate Secret holds tls.crt (the PEM certificate uploaded to the app registration) and tls.key (its PEM RSA private key)"}
		}
	}
	return sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey], nil
}

// serviceAccountExists reports a missing ServiceAccount before any exchange, with the reason of
// every other missing input; the ServiceAccount watch brings the credential back when it appears.
func (d *Deps) serviceAccountExists(ctx context.Context, refs referenceReader, key types.NamespacedName) error {
	var sa corev1.ServiceAccount
	if err := refs.Get(ctx, key, &sa); err != nil {
		if apierrors.IsNotFound(err) {
			return errServiceAccountNotFound(key.Namespace, key.Name)
		}
		if apierrors.IsForbidden(err) {
			return errReadForbidden("ServiceAccount", key)
		}
		return err
	}
	return nil
}

// errReadForbidden reports a referenced object the manager may not read: its RBAC does not reach
// the object's namespace. With the Helm chart's watchNamespaces the manager holds Roles in the
// watched namespaces only, so this is what a ClusterDatabricksCredential whose clientSecretRef or
// caBundleRef names another namespace gets (docs/rbac.md). Only a person can fix it, so it is a
// condition rather than a retry. The API's message is not quoted: it adds only the manager's user name.
func errReadForbidden(kind string, key types.NamespacedName) *ConditionError {
	return &ConditionError{Reason: v1alpha1.ReasonUnauthorized,
		Message: fmt.Sprintf("the operator may not read %s %q in namespace %q (Forbidden)", kind, key.Name, key.Namespace),
		Hint: "its RBAC does not reach that namespace: with --namespaces (Helm: watchNamespaces) it holds Roles only in the watched namespaces; " +
			"keep the object in one of them, or add its namespace to watchNamespaces"}
}

func errServiceAccountNotFound(namespace, name string) *ConditionError {
	return &ConditionError{Reason: v1alpha1.ReasonSecretNotFound,
		Message: fmt.Sprintf("ServiceAccount %q does not exist in namespace %q", name, namespace),
		Hint:    "create it in the credential's namespace (a credential can only use its own namespace's ServiceAccounts); the credential is retried as soon as it appears"}
}

// ServiceAccountTokens returns the token.SubjectTokenFunc of federation and workloadIdentity
// blocks: it requests a token for a ServiceAccount through the TokenRequest API
// (serviceaccounts/token), for one audience and the requested lifetime, and proves that the
// Kubernetes API does not accept it before handing it out. The provider calls it only when it
// performs an exchange. The token is never logged, stored or put in an error.
func ServiceAccountTokens(c client.Client) token.SubjectTokenFunc {
	return func(ctx context.Context, sa token.ServiceAccountToken) (string, error) {
		return serviceAccountToken(ctx, c, sa)
	}
}

func serviceAccountToken(ctx context.Context, c client.Client, sa token.ServiceAccountToken) (string, error) {
	seconds := sa.ExpirationSeconds
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:         []string{sa.Audience},
		ExpirationSeconds: &seconds,
	}}
	owner := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: sa.Namespace, Name: sa.Name}}
	if err := c.SubResource("token").Create(ctx, owner, tr); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			// Deleted since the pass checked: this exchange fails with the same reason.
			gone := errServiceAccountNotFound(sa.Namespace, sa.Name)
			return "", &token.Error{Reason: gone.Reason, Message: gone.Message, Hint: gone.Hint}
		case apierrors.IsForbidden(err):
			return "", &token.Error{Reason: v1alpha1.ReasonUnauthorized, Code: "Forbidden",
				Message: fmt.Sprintf("the operator may not request tokens for ServiceAccount %q in namespace %q", sa.Name, sa.Namespace),
				Hint:    "its ClusterRole (with the Helm chart's watchNamespaces: its Role in this namespace) needs create on serviceaccounts/token (config/rbac/role.yaml, dist/install.yaml or the Helm chart of this version)"}
		}
		return "", err // the provider reports it as a transient failure, without its text
	}
	if tr.Status.Token == "" {
		return "", fmt.Errorf("the TokenRequest for ServiceAccount %s/%s returned no token", sa.Namespace, sa.Name)
	}
	if err := refuseAPIValidToken(ctx, c, sa, tr.Status.Token); err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

// refuseAPIValidToken proves, before a minted ServiceAccount token leaves the process, that the
// Kubernetes API itself does not accept it: a TokenReview without audiences is judged against the
// API server's own audiences, whatever they are on this cluster (https://kubernetes.default.svc,
// a managed cluster's issuer URL, envtest's https://127.0.0.1:<port>/). A token it accepts would
// let whoever receives it act as the ServiceAccount against the cluster, so it is never sent and
// the credential reports InvalidSpec. If the review itself cannot be made, nothing is sent either.
func refuseAPIValidToken(ctx context.Context, c client.Client, sa token.ServiceAccountToken, tok string) error {
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: tok}}
	if err := c.Create(ctx, review); err != nil {
		if apierrors.IsForbidden(err) {
			return &token.Error{Reason: v1alpha1.ReasonUnauthorized, Code: "Forbidden",
				Message: "the operator may not create TokenReviews, which prove a ServiceAccount token is not valid against this cluster before it is sent",
				Hint:    "its ClusterRole needs create on tokenreviews.authentication.k8s.io (config/rbac/role.yaml, dist/install.yaml or the Helm chart of this version)"}
		}
		// The API error's text is not quoted: nothing about the token may reach status or logs.
		return &token.Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "TokenReview",
			Message: fmt.Sprintf("could not check that the token of ServiceAccount %s/%s is not valid against the Kubernetes API, so it was not sent", sa.Namespace, sa.Name),
			Hint:    "retrying with backoff; check the API server"}
	}
	if review.Status.Authenticated {
		return &token.Error{Reason: v1alpha1.ReasonInvalidSpec, Code: "APIAudience",
			Message: fmt.Sprintf("a token of ServiceAccount %s/%s for audience %q is accepted by this cluster's Kubernetes API, so it is never sent to an identity provider", sa.Namespace, sa.Name, sa.Audience),
			Hint:    "use an audience the Kubernetes API does not accept: for spec.federation.audience, the audience of the Databricks federation policy such as the account ID; for workloadIdentity, remove api://AzureADTokenExchange from the API server's --api-audiences"}
	}
	return nil
}

// caBundle reads the PEM bundle under its key (default ca.crt) of a ConfigMap, for a credential
// whose own namespace is home ("" for a cluster credential); messages name the ConfigMap's
// namespace where it is not the credential's own.
func (d *Deps) caBundle(ctx context.Context, refs referenceReader, ref ConfigMapKey, home string) ([]byte, error) {
	var cm corev1.ConfigMap
	if err := refs.Get(ctx, ref.NamespacedName, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &ConditionError{Reason: v1alpha1.ReasonSecretNotFound,
				Message: fmt.Sprintf("ConfigMap %q named by caBundleRef does not exist in namespace %q", ref.Name, ref.Namespace),
				Hint:    "create it with the PEM CA certificates, or remove spec.caBundleRef"}
		}
		if apierrors.IsForbidden(err) {
			return nil, errReadForbidden("ConfigMap", ref.NamespacedName)
		}
		return nil, err
	}
	dataKey := keyOr(ref.Key, "ca.crt")
	if v := cm.Data[dataKey]; strings.TrimSpace(v) != "" {
		return []byte(v), nil
	}
	if v := cm.BinaryData[dataKey]; len(v) > 0 {
		return v, nil
	}
	where := ""
	if ref.Namespace != home {
		where = fmt.Sprintf(" in namespace %q", ref.Namespace)
	}
	return nil, &ConditionError{Reason: v1alpha1.ReasonSecretKeyMissing,
		Message: fmt.Sprintf("ConfigMap %q%s has no key %q, or it is empty", ref.Name, where, dataKey),
		Hint:    "add the PEM bundle under that key, or set spec.caBundleRef.key"}
}

// secretValue returns a key's value with surrounding whitespace removed: a trailing newline from
// `kubectl create secret --from-file` or a vault sync is never part of a client ID or secret.
func secretValue(sec *corev1.Secret, key string) (string, error) {
	v := strings.TrimSpace(string(sec.Data[key]))
	if v == "" {
		return "", &ConditionError{Reason: v1alpha1.ReasonSecretKeyMissing,
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

// referenceReader reads the objects one pass refers to (kubecache.ReferencesOf).
type referenceReader interface {
	Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error
}
