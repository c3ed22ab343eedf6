package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/secret"
	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// tokenSource says where a cluster credential's pass gets the token it writes.
type tokenSource int

const (
	// tokenKept: every namespace keeps the token it holds; only metadata drift is repaired.
	tokenKept tokenSource = iota
	// tokenRemembered: some namespace needs the Secret (re-)rendered, and the token this process
	// last wrote is good for it.
	tokenRemembered
	// tokenNeeded: a new token is needed (from the shared cache or an exchange).
	tokenNeeded
)

func (s tokenSource) String() string {
	return [...]string{"kept", "remembered", "needed"}[s]
}

// namespaceTarget is a selected namespace whose target Secret the cluster credential may write:
// absent, ours, or adoptable.
type namespaceTarget struct {
	namespace string
	secret    *corev1.Secret
}

// clusterPass is what one pass over a cluster credential knows: the selected namespaces split into
// those it may write and those it may not, and what the policy chain needs.
type clusterPass struct {
	ccred *v1alpha1.ClusterDatabricksCredential
	// view is ccred as a DatabricksCredential, for the policy chain and the refresh time.
	view       *v1alpha1.DatabricksCredential
	key        types.NamespacedName
	now        time.Time
	inputsHash string
	remembered *rememberedToken
	// selected is the number of selected namespaces: len(targets) + len(failures).
	selected int
	targets  []namespaceTarget
	failures []v1alpha1.NamespaceFailure
	// exchanged reports that this pass made a token exchange (not a shared token).
	exchanged bool
}

// selectedNamespaces returns the names of the existing, not terminating namespaces that the
// cluster credential selects (by label or by name), within the manager's --namespaces, sorted.
func (r *ClusterDatabricksCredentialReconciler) selectedNamespaces(ctx context.Context, cc *v1alpha1.ClusterDatabricksCredential) ([]string, error) {
	matches, err := namespaceMatcher(cc)
	if err != nil {
		return nil, err
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := r.List(ctx, list); err != nil {
		return nil, err
	}
	var out []string
	for _, ns := range list.Items {
		if ns.DeletionTimestamp != nil || (len(r.Namespaces) > 0 && !slices.Contains(r.Namespaces, ns.Name)) {
			continue // no Secret can be created in a terminating namespace
		}
		if matches(ns.Name, ns.Labels) {
			out = append(out, ns.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// namespaceMatcher returns whether a namespace (name and labels) is selected by cc: listed in
// spec.namespaces or matched by spec.namespaceSelector. A selector the API server accepted but
// labels cannot parse (an unknown operator) is InvalidSpec.
func namespaceMatcher(cc *v1alpha1.ClusterDatabricksCredential) (func(name string, l map[string]string) bool, error) {
	sel := labels.Nothing()
	if cc.Spec.NamespaceSelector != nil {
		var err error
		if sel, err = metav1.LabelSelectorAsSelector(cc.Spec.NamespaceSelector); err != nil {
			return nil, &token.Error{Reason: v1alpha1.ReasonInvalidSpec, Message: fmt.Sprintf("spec.namespaceSelector is not a valid label selector: %v", err),
				Hint: "use the operators In, NotIn, Exists and DoesNotExist, with values only for In and NotIn"}
		}
	}
	return func(name string, l map[string]string) bool {
		return slices.Contains(cc.Spec.Namespaces, name) || sel.Matches(labels.Set(l))
	}, nil
}

// observe splits the selected namespaces into writable targets (with their current Secret, nil
// when absent) and conflicts, and finds the stale Secrets: ours (by controller UID), labelled for
// this cluster credential, in a namespace that is no longer selected or under a target name no
// longer used. Our Secrets are listed from the cache by label; a selected namespace without one is
// checked with a direct read, so a foreign Secret without our label is seen before anything is
// written.
func (r *ClusterDatabricksCredentialReconciler) observe(ctx context.Context, p *clusterPass, selected []string) ([]corev1.Secret, error) {
	cc := p.ccred
	var ours corev1.SecretList
	if err := r.List(ctx, &ours, client.MatchingLabels{v1alpha1.LabelClusterCredential: cc.Name}); err != nil {
		return nil, err
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
	for _, ns := range selected {
		s, ok := current[ns]
		if !ok {
			var err error
			if s, err = readTarget(ctx, r.Client, r.refs, r.APIReader, types.NamespacedName{Namespace: ns, Name: cc.TargetName()}); err != nil {
				return nil, err
			}
		}
		if clusterOwnershipOf(s, cc) == foreign {
			p.failures = append(p.failures, conflictFailure(ns, cc.TargetName()))
			continue
		}
		p.targets = append(p.targets, namespaceTarget{namespace: ns, secret: s})
	}
	return stale, nil
}

// clusterOwnershipOf is ownershipOf for a cluster credential's Secrets: ours when the controller
// owner has its UID; adoptable when it is labelled for a ClusterDatabricksCredential of the same
// name whose controller owner is one of that name with another UID (deleted and re-created).
func clusterOwnershipOf(s *corev1.Secret, cc *v1alpha1.ClusterDatabricksCredential) ownership {
	if s == nil {
		return absent
	}
	ref := metav1.GetControllerOf(s)
	if ref == nil {
		return foreign
	}
	if ref.UID == cc.UID {
		return owned
	}
	if s.Labels[v1alpha1.LabelClusterCredential] == cc.Name && ref.Kind == "ClusterDatabricksCredential" &&
		ref.APIVersion == v1alpha1.GroupVersion.String() && ref.Name == cc.Name {
		return adoptable
	}
	return foreign
}

// observedFor is what the DatabricksCredential policy chain sees for one namespace.
func (p *clusterPass) observedFor(t namespaceTarget) observed {
	return observed{key: p.key, cred: p.view, now: p.now, inputsHash: p.inputsHash, target: t.secret, remembered: p.remembered}
}

// decide runs the policy chain for every writable namespace. One namespace that needs a new
// token gets it for all; otherwise the remembered token re-renders the namespaces that need it.
// why is the first namespace's reason, for the logs.
func (p *clusterPass) decide() (tok token.Token, src tokenSource, why string) {
	why = "every namespace holds a fresh token for the current inputs"
	for _, t := range p.targets {
		d := decide(p.observedFor(t))
		switch {
		case d.action == exchange:
			return token.Token{}, tokenNeeded, t.namespace + ": " + d.why
		case d.action == rerender && src == tokenKept:
			src, why = tokenRemembered, t.namespace+": "+d.why
		}
	}
	if src == tokenRemembered {
		return p.remembered.token, src, why
	}
	return token.Token{}, src, why
}

// currentToken returns the times of the token in t's Secret when it was issued for the current
// inputs.
func (p *clusterPass) currentToken(t namespaceTarget) (issuedAt, expiresAt time.Time, ok bool) {
	if t.secret == nil || t.secret.Annotations[v1alpha1.AnnotationInputsHash] != p.inputsHash {
		return time.Time{}, time.Time{}, false
	}
	return secret.ParseTimes(t.secret.Annotations)
}

// validUntil is when the first writable namespace's token expires, when every one of them holds
// a token for the current inputs; zero otherwise.
func (p *clusterPass) validUntil() time.Time {
	var first time.Time
	for _, t := range p.targets {
		_, expiresAt, ok := p.currentToken(t)
		if !ok {
			return time.Time{}
		}
		if first.IsZero() || expiresAt.Before(first) {
			first = expiresAt
		}
	}
	return first
}

// earliestRefresh returns the token times of the namespace due for refresh first.
func (p *clusterPass) earliestRefresh() (issuedAt, expiresAt, next time.Time) {
	for _, t := range p.targets {
		i, e, ok := secret.ParseTimes(t.secret.Annotations)
		if !ok {
			continue
		}
		if n := refreshTimeFor(p.view, i, e); next.IsZero() || n.Before(next) {
			issuedAt, expiresAt, next = i, e, n
		}
	}
	return issuedAt, expiresAt, next
}

// recordServed records, when no token was written in this pass, how many namespaces hold a valid
// token for the current inputs, and the namespaces that failed. It returns the count.
func (p *clusterPass) recordServed() int {
	served := 0
	for _, t := range p.targets {
		if _, expiresAt, ok := p.currentToken(t); ok && p.now.Before(expiresAt) {
			served++
		}
	}
	setNamespaces(&p.ccred.Status, served, p.failures)
	return served
}
