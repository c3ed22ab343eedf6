package controllers

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// Field indexes over ClusterDatabricksCredentials: "<namespace>/<name>" of the referenced Secret
// and ConfigMap, so that a change to one finds the cluster credentials that use it.
const (
	indexClusterClientSecret = "spec.clientSecretRef.namespacedName"
	indexClusterCABundle     = "spec.caBundleRef.namespacedName"
)

// SetupWithManager registers the ClusterDatabricksCredential controller. Besides the cluster
// credentials and the Secrets they own (cached by the dbtoken.io/credential label, like every
// target Secret), it watches Namespaces by metadata only, so that a namespace that is created,
// deleted or relabelled is served or cleaned up at once, and the referenced client-credentials
// Secrets and CA ConfigMaps through the reference cache it shares with the DatabricksCredential
// controller.
func (r *ClusterDatabricksCredentialReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts SetupOptions) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder(ClusterControllerName)
	}
	if r.Namespaces == nil {
		r.Namespaces = opts.Namespaces
	}
	if r.Provider == nil {
		return fmt.Errorf("ClusterDatabricksCredentialReconciler needs a token Provider")
	}
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(ctx, &v1alpha1.ClusterDatabricksCredential{}, indexClusterClientSecret, func(o client.Object) []string {
		if ref := o.(*v1alpha1.ClusterDatabricksCredential).Spec.ClientSecretRef(); ref != nil {
			return []string{ref.Namespace + "/" + ref.Name}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &v1alpha1.ClusterDatabricksCredential{}, indexClusterCABundle, func(o client.Object) []string {
		if ref := o.(*v1alpha1.ClusterDatabricksCredential).Spec.CABundleRef; ref != nil {
			return []string{ref.Namespace + "/" + ref.Name}
		}
		return nil
	}); err != nil {
		return err
	}

	r.secretWrites = newOwnWrites()
	refCache, err := sharedReferenceCache(mgr, opts.Namespaces)
	if err != nil {
		return err
	}
	r.refs = newReferenceReader(r.APIReader, refCache, mgr.GetScheme())

	maxConcurrent := opts.MaxConcurrentReconciles
	if maxConcurrent <= 0 {
		maxConcurrent = 1
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(ClusterControllerName).
		// Status writes do not change the generation; reconciling on them would only repeat work.
		For(&v1alpha1.ClusterDatabricksCredential{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.Secret{}, builder.WithPredicates(r.secretWrites.notEcho())).
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.selecting),
			builder.WithPredicates(namespaceMembershipChanged())).
		WatchesRawSource(source.Kind(refCache, coreMetadata("Secret"),
			handler.TypedEnqueueRequestsFromMapFunc(r.referencing(indexClusterClientSecret)),
			predicate.TypedResourceVersionChangedPredicate[*metav1.PartialObjectMetadata]{})).
		WatchesRawSource(source.Kind(refCache, coreMetadata("ConfigMap"),
			handler.TypedEnqueueRequestsFromMapFunc(r.referencing(indexClusterCABundle)),
			predicate.TypedResourceVersionChangedPredicate[*metav1.PartialObjectMetadata]{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrent}).
		Complete(r)
}

// selecting maps a Namespace to the cluster credentials that select it. On an update the handler
// maps the old and the new object, so a namespace that stops matching reaches the credentials it
// left, and one that starts matching those it joined.
func (r *ClusterDatabricksCredentialReconciler) selecting(ctx context.Context, ns client.Object) []reconcile.Request {
	var creds v1alpha1.ClusterDatabricksCredentialList
	if err := r.List(ctx, &creds); err != nil {
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

// referencing maps a Secret or ConfigMap to the cluster credentials that name it.
func (r *ClusterDatabricksCredentialReconciler) referencing(index string) handler.TypedMapFunc[*metav1.PartialObjectMetadata, reconcile.Request] {
	return func(ctx context.Context, obj *metav1.PartialObjectMetadata) []reconcile.Request {
		var creds v1alpha1.ClusterDatabricksCredentialList
		if err := r.List(ctx, &creds, client.MatchingFields{index: obj.GetNamespace() + "/" + obj.GetName()}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing cluster credentials that reference an object", "index", index, "name", obj.GetName())
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(creds.Items))
		for _, c := range creds.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&c)})
		}
		return reqs
	}
}
