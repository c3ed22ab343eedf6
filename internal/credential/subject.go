// Package credential is the refresh pass that both credential kinds share. Given a credential (a
// Subject), what its token request is built from (an Identity) and the Secrets it must keep (its
// Destinations), the pass resolves the request, decides whether the Secrets' token can stay,
// obtains one token when it cannot, writes every Secret and records the outcome in the
// credential's status, Events and metrics. The reconcilers in controllers/ are thin adapters
// around it — the way cert-manager's Issuer and ClusterIssuer share one IssuerSpec behind
// GenericIssuer, and External Secrets' SecretStore and ClusterSecretStore share one reconcile.
package credential

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/secret"
)

// The kinds, as owner references and messages name them.
const (
	KindDatabricksCredential        = "DatabricksCredential"
	KindClusterDatabricksCredential = "ClusterDatabricksCredential"
)

// Subject is one credential, of either kind, as the refresh pass sees it: the few fields that the
// decision, the Secrets and the status are made of. Adapters build it from their object; no kind
// pretends to be the other.
type Subject struct {
	// Object is the credential: the controller owner of its Secrets, the object its Events are about.
	Object client.Object
	// Kind is KindDatabricksCredential or KindClusterDatabricksCredential.
	Kind string
	// Identity is the identity block's kind (azure, databricks, oauth2, federation), for metrics.
	Identity string
	// Host is spec.host: DATABRICKS_HOST and the templates' .Host and .Hostname.
	Host        string
	RenewBefore *metav1.Duration
	Target      v1alpha1.TargetSecret
	// TargetName is the name of the Secret in every destination namespace.
	TargetName string
	// OwnerLabel is the label that names the credential on its Secrets: a Secret carrying it for
	// this name whose controller owner is an earlier credential of the same kind and name (a
	// GitOps delete and re-create) is adopted.
	OwnerLabel string
	// Labels are the labels every Secret gets: target.labels and the operator's own.
	Labels map[string]string
	// Status is the credential's status, which the pass updates in place.
	Status *v1alpha1.DatabricksCredentialStatus
	// PerNamespace is set for a kind that writes one Secret per selected namespace: the pass
	// records there how many namespaces hold a valid token and which do not, words Ready per
	// namespace, and reports a failed Secret write as that namespace's failure (WriteFailed).
	// nil for a kind with one Secret, whose failed writes are only retried.
	PerNamespace *v1alpha1.ClusterDatabricksCredentialStatus
}

// NewSubject is the subject of obj, a credential of kind whose spec, in the namespaced kind's
// shape (the cluster kind's CredentialSpec), is spec. The Secrets it writes carry
// dbtoken.io/credential (which the manager's Secret cache selects on) and, for the cluster kind,
// dbtoken.io/cluster-credential (which tells them apart and finds them for removal), both naming
// the credential; the first for the namespaced kind, the second for the cluster kind, is the
// owner label by which an earlier incarnation's Secret is adopted.
func NewSubject(obj client.Object, kind string, spec *v1alpha1.DatabricksCredentialSpec, targetName string, status *v1alpha1.DatabricksCredentialStatus) *Subject {
	s := &Subject{
		Object:      obj,
		Kind:        kind,
		Identity:    spec.IdentityKind(),
		Host:        spec.Host,
		RenewBefore: spec.RenewBefore,
		Target:      spec.Target,
		TargetName:  targetName,
		OwnerLabel:  v1alpha1.LabelCredential,
		Labels:      secret.Labels(obj.GetName(), spec.Target),
		Status:      status,
	}
	if kind == KindClusterDatabricksCredential {
		s.OwnerLabel = v1alpha1.LabelClusterCredential
		s.Labels[v1alpha1.LabelClusterCredential] = obj.GetName()
	}
	return s
}

// Destination is one Secret the token goes to: its namespace and the Secret at the target name
// there now (nil when there is none).
type Destination struct {
	Namespace string
	Secret    *corev1.Secret
}

// Key names the credential; Namespace is empty for the cluster kind.
func (s *Subject) Key() types.NamespacedName { return client.ObjectKeyFromObject(s.Object) }

func (s *Subject) uid() types.UID { return s.Object.GetUID() }

func (s *Subject) generation() int64 { return s.Object.GetGeneration() }

func (s *Subject) targetKey(namespace string) types.NamespacedName {
	return types.NamespacedName{Namespace: namespace, Name: s.TargetName}
}
