package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/intern"
)

// Field indexes over DatabricksCredentials, so that a change to a referenced Secret or ConfigMap
// finds the credentials that use it without listing them all.
const (
	// indexClientSecret names the Secret with the identity's credentials: the client-credentials
	// Secret or the client-certificate Secret.
	indexClientSecret   = "spec.clientSecretRef.name"
	indexCABundle       = "spec.caBundleRef.name"
	indexServiceAccount = "spec.serviceAccountName"
)

// SetupOptions are the manager-level settings the controller needs.
type SetupOptions struct {
	// Namespaces restricts the metadata watches of referenced Secrets and ConfigMaps, matching
	// the manager's cache. Empty means all namespaces.
	Namespaces []string
	// MaxConcurrentReconciles bounds parallel passes. Default 1.
	MaxConcurrentReconciles int
}

// SetupWithManager registers the controller. Besides the credentials and their owned target
// Secrets, it watches the referenced client-credentials (or client-certificate) Secrets, CA
// ConfigMaps and ServiceAccounts by metadata only (name, labels, resourceVersion) in a cache of its own: the manager's Secret cache is
// restricted to our label, and caching every Secret's data in the cluster is what we avoid.
// A rotated client secret changes the Secret's resourceVersion, which triggers a pass at once.
func (r *DatabricksCredentialReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts SetupOptions) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder(ControllerName)
	}
	if r.Provider == nil {
		return fmt.Errorf("DatabricksCredentialReconciler needs a token Provider")
	}
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(ctx, &v1alpha1.DatabricksCredential{}, indexClientSecret, func(o client.Object) []string {
		if name := o.(*v1alpha1.DatabricksCredential).Spec.CredentialsSecretName(); name != "" {
			return []string{name}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &v1alpha1.DatabricksCredential{}, indexServiceAccount, func(o client.Object) []string {
		if name := o.(*v1alpha1.DatabricksCredential).Spec.ServiceAccountName(); name != "" {
			return []string{name}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &v1alpha1.DatabricksCredential{}, indexCABundle, func(o client.Object) []string {
		if ref := o.(*v1alpha1.DatabricksCredential).Spec.CABundleRef; ref != nil {
			return []string{ref.Name}
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
		Named(ControllerName).
		// Status writes do not change the generation; reconciling on them would only repeat work.
		For(&v1alpha1.DatabricksCredential{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Our own Secret writes need no pass; deletions and others' edits do (drift repair).
		Owns(&corev1.Secret{}, builder.WithPredicates(r.secretWrites.notEcho())).
		WatchesRawSource(source.Kind(refCache, coreMetadata("Secret"),
			handler.TypedEnqueueRequestsFromMapFunc(r.referencing(indexClientSecret)),
			predicate.TypedResourceVersionChangedPredicate[*metav1.PartialObjectMetadata]{})).
		WatchesRawSource(source.Kind(refCache, coreMetadata("ConfigMap"),
			handler.TypedEnqueueRequestsFromMapFunc(r.referencing(indexCABundle)),
			predicate.TypedResourceVersionChangedPredicate[*metav1.PartialObjectMetadata]{})).
		// A ServiceAccount that a federation or workloadIdentity block names and that appears (or
		// is re-created) is used within seconds.
		WatchesRawSource(source.Kind(refCache, coreMetadata("ServiceAccount"),
			handler.TypedEnqueueRequestsFromMapFunc(r.referencing(indexServiceAccount)),
			predicate.TypedResourceVersionChangedPredicate[*metav1.PartialObjectMetadata]{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrent}).
		Complete(r)
}

// referencing maps a Secret or ConfigMap to the credentials in its namespace that name it.
func (r *DatabricksCredentialReconciler) referencing(index string) handler.TypedMapFunc[*metav1.PartialObjectMetadata, reconcile.Request] {
	return func(ctx context.Context, obj *metav1.PartialObjectMetadata) []reconcile.Request {
		var creds v1alpha1.DatabricksCredentialList
		if err := r.List(ctx, &creds, client.InNamespace(obj.GetNamespace()), client.MatchingFields{index: obj.GetName()}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing credentials that reference an object", "index", index, "name", obj.GetName())
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(creds.Items))
		for _, c := range creds.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&c)})
		}
		return reqs
	}
}

// newReferenceCache is a metadata-only cache for the Secrets and ConfigMaps credentials refer to,
// started with the manager. managedFields are stripped: they are most of an object's metadata.
// Secrets with our label are left out: they are our targets, which the manager's cache already
// holds in full, so the two caches together know every Secret once (see readTarget).
func newReferenceCache(mgr ctrl.Manager, namespaces []string) (cache.Cache, error) {
	notOurs, err := labels.NewRequirement(v1alpha1.LabelCredential, selection.DoesNotExist, nil)
	if err != nil {
		return nil, err
	}
	opts := cache.Options{
		HTTPClient:       mgr.GetHTTPClient(),
		Scheme:           mgr.GetScheme(),
		Mapper:           mgr.GetRESTMapper(),
		DefaultTransform: stripForCache,
		ByObject: map[client.Object]cache.ByObject{
			coreMetadata("Secret"): {Label: labels.NewSelector().Add(*notOurs)},
		},
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	c, err := cache.New(mgr.GetConfig(), opts)
	if err != nil {
		return nil, fmt.Errorf("creating the reference cache: %w", err)
	}
	// Registered as a cache (GetCache), the manager starts it on every replica, with its own
	// cache, before the controllers: a plain runnable would start only on the leader, leaving a
	// standby's informers cold and its /readyz (CachesSynced) failing.
	return c, mgr.Add(cacheRunnable{c})
}

// cacheRunnable makes the manager treat a cache.Cache as one of its caches.
type cacheRunnable struct{ cache.Cache }

func (c cacheRunnable) GetCache() cache.Cache { return c.Cache }

// CacheOptions are the manager cache settings this controller relies on: Secrets are cached only
// with our label (the targets we write), so the manager's memory does not grow with the cluster's
// unrelated Secrets, and only the watched namespaces are cached when --namespaces is set. Cached
// objects are slimmed and share their repeated values (cacheTransform).
func CacheOptions(namespaces []string) cache.Options {
	managed, err := labels.NewRequirement(v1alpha1.LabelCredential, selection.Exists, nil)
	utilruntime.Must(err)
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.NewSelector().Add(*managed)},
		},
		DefaultTransform: cacheTransform(intern.NewTable(clock.RealClock{}, time.Hour)),
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}
