package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/credential"
)

// selectedNamespaces returns the names of the existing, not terminating namespaces that the
// cluster credential selects (by label or by name), within the manager's --namespaces, sorted.
func (r *ClusterDatabricksCredentialReconciler) selectedNamespaces(ctx context.Context, cc *v1alpha1.ClusterDatabricksCredential) ([]string, error) {
	matches, err := namespaceMatcher(cc)
	if err != nil {
		return nil, err
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := r.shared.Client.List(ctx, list); err != nil {
		return nil, err
	}
	var out []string
	for _, ns := range list.Items {
		if ns.DeletionTimestamp != nil || (len(r.shared.Namespaces) > 0 && !slices.Contains(r.shared.Namespaces, ns.Name)) {
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
			return nil, &credential.ConditionError{Reason: v1alpha1.ReasonInvalidSpec, Message: fmt.Sprintf("spec.namespaceSelector is not a valid label selector: %v", err),
				Hint: "use the operators In, NotIn, Exists and DoesNotExist, with values only for In and NotIn"}
		}
	}
	return func(name string, l map[string]string) bool {
		return slices.Contains(cc.Spec.Namespaces, name) || sel.Matches(labels.Set(l))
	}, nil
}

// selecting maps a Namespace to the cluster credentials that select it. On an update the handler
// maps the old and the new object, so a namespace that stops matching reaches the credentials it
// left, and one that starts matching those it joined.
func (r *ClusterDatabricksCredentialReconciler) selecting(ctx context.Context, ns client.Object) []reconcile.Request {
	var creds v1alpha1.ClusterDatabricksCredentialList
	if err := r.shared.Client.List(ctx, &creds); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing cluster credentials for a namespace", "namespace", ns.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for i := range creds.Items {
		matches, err := namespaceMatcher(&creds.Items[i])
		if err != nil || matches(ns.GetName(), ns.GetLabels()) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&creds.Items[i])})
		}
	}
	return reqs
}

// namespaceMembershipChanged passes the Namespace events that can change which namespaces a
// selector matches: creation, deletion, a label change, and the start of termination.
func namespaceMembershipChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()) ||
				e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero()
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}
