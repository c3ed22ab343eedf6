package controllers

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/credential"
	"github.com/dbtoken/databricks-token-operator/internal/kubecache"
	"github.com/dbtoken/databricks-token-operator/internal/metrics"
	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// Options are the manager-level settings of the controllers.
type Options struct {
	// Namespaces bounds the namespaces served and watched (the manager's --namespaces, whose cache
	// holds only their objects). Empty: every namespace.
	Namespaces []string
	// MaxConcurrentReconciles bounds parallel passes per kind. Default 1.
	MaxConcurrentReconciles int
	// Provider performs token exchanges. nil: the client-credentials provider built from
	// TokenOptions, reporting to the metrics collector.
	Provider     token.Provider
	TokenOptions token.Options
	// ExchangesPerHost bounds concurrent token exchanges per token endpoint. Default
	// token.DefaultExchangesPerHost.
	ExchangesPerHost int
	// Clock drives every time decision. Default: the real clock.
	Clock clock.PassiveClock
	// Registry receives the metrics collector. Default: controller-runtime's registry, which the
	// manager's metrics endpoint serves.
	Registry prometheus.Registerer
}

// Shared is what both reconcilers share, built once per manager: the refresh pass's dependencies
// (one token cache, one reference reader, one write tracker, one failure memory), the
// credentials' read and status-write path, and the metrics collector.
type Shared struct {
	*credential.Deps
	Store   *kubecache.CredentialStore
	Metrics *metrics.Collector
	// Namespaces bounds the namespaces a cluster credential may serve (Options.Namespaces).
	Namespaces []string
	// exchangesDone carries, per kind, the credentials whose token exchange finished while no
	// pass waited for it, back to their controller's queue.
	exchangesDone map[string]chan event.GenericEvent
}

// exchangeNotifications is the buffer of each kind's channel of finished exchanges. A
// notification that does not fit is dropped: the pass that left the exchange running looks again
// within a minute anyway (credential.pendingRecheck).
const exchangeNotifications = 4096

// NewShared builds what both reconcilers share. c reads credentials and target Secrets (the
// manager's cache in production) and writes; api reads what the caches cannot see; refs is the
// reference cache (metadata only). Tests that call Reconcile directly build it the same way.
func NewShared(c client.Client, api client.Reader, refs client.Reader, scheme *runtime.Scheme, clk clock.PassiveClock,
	provider token.Provider, collector *metrics.Collector, namespaces []string, exchanges token.SharedCacheOptions) *Shared {
	s := &Shared{
		Store:      kubecache.NewCredentialStore(clk, c, api, c),
		Metrics:    collector,
		Namespaces: namespaces,
		exchangesDone: map[string]chan event.GenericEvent{
			credential.KindDatabricksCredential:        make(chan event.GenericEvent, exchangeNotifications),
			credential.KindClusterDatabricksCredential: make(chan event.GenericEvent, exchangeNotifications),
		},
	}
	exchanges.Notify = s.exchangeDone
	s.Deps = &credential.Deps{
		Client:     c,
		APIReader:  api,
		References: kubecache.NewReferenceReader[credential.Waiter](api, refs, scheme),
		Scheme:     scheme,
		Clock:      clk,
		Tokens:     token.NewSharedCache(provider, clk, collector, exchanges),
		Writes:     kubecache.NewOwnWrites(),
		Failures:   credential.NewFailureMemory(),
		Attempts:   collector,
	}
	return s
}

// exchangeDone queues the credential whose exchange finished, without blocking the exchange.
func (s *Shared) exchangeDone(waiter any) {
	w := waiter.(credential.Waiter)
	obj := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: w.Key.Namespace, Name: w.Key.Name}}
	select {
	case s.exchangesDone[w.Kind] <- event.GenericEvent{Object: obj}:
	default:
	}
}

// exchangeSource brings a kind's credentials back when the exchange they wait for finished.
func (s *Shared) exchangeSource(kind string) source.Source {
	return source.Channel(s.exchangesDone[kind], &handler.EnqueueRequestForObject{})
}

// adapter is what each kind's reconciler holds: what both share, and the pass with the kind's
// own event recorder.
type adapter struct {
	shared *Shared
	pass   *credential.Pass
}

func newAdapter(shared *Shared, recorder events.EventRecorder) adapter {
	return adapter{shared: shared, pass: &credential.Pass{Deps: shared.Deps, Recorder: recorder}}
}

// NewDatabricksCredentialReconciler returns the namespaced kind's reconciler over shared.
func NewDatabricksCredentialReconciler(shared *Shared, recorder events.EventRecorder) *DatabricksCredentialReconciler {
	return &DatabricksCredentialReconciler{newAdapter(shared, recorder)}
}

// NewClusterDatabricksCredentialReconciler returns the cluster kind's reconciler over shared.
func NewClusterDatabricksCredentialReconciler(shared *Shared, recorder events.EventRecorder) *ClusterDatabricksCredentialReconciler {
	return &ClusterDatabricksCredentialReconciler{newAdapter(shared, recorder)}
}

// RBAC markers (here and in both controllers) generate config/rbac/role.yaml. A new permission
// must also reach dist/chart/templates/manager-rbac.yaml: the ClusterRole without watchNamespaces,
// and with it the ClusterRole (cluster-scoped resources) or the per-namespace Role (namespaced
// ones); TestChartRBACMatchesConfig fails until it does. docs/rbac.md says why each exists.
//
// Both credential kinds: read and watch them, write their status.
// +kubebuilder:rbac:groups=dbtoken.io,resources=databrickscredentials;clusterdatabrickscredentials,verbs=get;list;watch
// +kubebuilder:rbac:groups=dbtoken.io,resources=databrickscredentials/status;clusterdatabrickscredentials/status,verbs=get;update;patch
// finalizers/update lets the owner references of the token Secrets set blockOwnerDeletion where
// the OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift).
// +kubebuilder:rbac:groups=dbtoken.io,resources=databrickscredentials/finalizers;clusterdatabrickscredentials/finalizers,verbs=update

// Setup wires both controllers into mgr: it builds what they share once (the reference cache and
// reader, the token cache, the write trackers, the metrics collector, registered in
// Options.Registry while the manager runs), registers the two controllers and their watches,
// starts every informer a leader reads on every replica, and adds the "caches" /readyz check.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	clk := opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	registry := opts.Registry
	if registry == nil {
		registry = ctrlmetrics.Registry
	}
	refCache, err := kubecache.NewReferenceCache(mgr.GetConfig(), mgr.GetScheme(), mgr.GetHTTPClient(), mgr.GetRESTMapper(), opts.Namespaces)
	if err != nil {
		return err
	}
	if err := kubecache.AddCache(mgr, refCache); err != nil {
		return err
	}
	collector := metrics.New(mgr.GetCache())
	if err := registry.Register(collector); err != nil {
		return fmt.Errorf("registering the metrics collector: %w", err)
	}
	if err := mgr.Add(onStop(func() { registry.Unregister(collector) })); err != nil {
		return err
	}
	provider := opts.Provider
	if provider == nil {
		tokenOpts := opts.TokenOptions
		tokenOpts.Clock, tokenOpts.Observer = clk, collector
		provider = token.NewClientCredentials(tokenOpts)
	}
	shared := NewShared(mgr.GetClient(), mgr.GetAPIReader(), refCache, mgr.GetScheme(), clk, provider, collector, opts.Namespaces,
		token.SharedCacheOptions{ExchangesPerHost: opts.ExchangesPerHost, Context: ctx})
	maxConcurrent := max(opts.MaxConcurrentReconciles, 1)
	if err := NewDatabricksCredentialReconciler(shared, mgr.GetEventRecorder(ControllerName)).setupWithManager(ctx, mgr, refCache, maxConcurrent); err != nil {
		return fmt.Errorf("setting up the DatabricksCredential controller: %w", err)
	}
	if err := NewClusterDatabricksCredentialReconciler(shared, mgr.GetEventRecorder(ClusterControllerName)).setupWithManager(ctx, mgr, refCache, maxConcurrent); err != nil {
		return fmt.Errorf("setting up the ClusterDatabricksCredential controller: %w", err)
	}
	managerInformers := []client.Object{&v1alpha1.DatabricksCredential{}, &v1alpha1.ClusterDatabricksCredential{},
		&corev1.Secret{}, kubecache.CoreMetadata("Namespace")}
	var refInformers []client.Object
	for _, kind := range kubecache.ReferenceKinds {
		refInformers = append(refInformers, kubecache.CoreMetadata(kind))
	}
	if err := kubecache.StartInformers(ctx, mgr.GetCache(), managerInformers...); err != nil {
		return err
	}
	if err := kubecache.StartInformers(ctx, refCache, refInformers...); err != nil {
		return err
	}
	return mgr.AddReadyzCheck("caches", kubecache.CachesSynced(
		kubecache.Informers{Cache: mgr.GetCache(), Objects: managerInformers},
		kubecache.Informers{Cache: refCache, Objects: refInformers}))
}

// reconcile is the part of a pass both kinds share: read the credential (gone: forget it; being
// deleted: nothing to do, its Secrets go with their owner references), run the pass on it, and
// write its status once, only if the pass changed it.
func (s *Shared) reconcile(ctx context.Context, key types.NamespacedName, obj client.Object, pass *credential.Pass, run func(context.Context) (ctrl.Result, error)) (res ctrl.Result, retErr error) {
	if err := s.Store.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			pass.Forget(kindOf(obj), key)
			s.Store.Forget(key)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, nil
	}
	before := obj.DeepCopyObject().(client.Object)
	defer func() {
		if err := s.Store.PatchStatus(ctx, before, obj); err != nil {
			res, retErr = ctrl.Result{}, kerrors.NewAggregate([]error{retErr, err})
		}
	}()
	return run(ctx)
}

func kindOf(obj client.Object) string {
	if _, ok := obj.(*v1alpha1.ClusterDatabricksCredential); ok {
		return credential.KindClusterDatabricksCredential
	}
	return credential.KindDatabricksCredential
}

// Field indexes, so that a change to a referenced object finds the credentials that use it
// without listing them all. Namespaced credentials index the name (references are in their own
// namespace); cluster credentials index "<namespace>/<name>".
const (
	// indexClientSecret names the Secret with the identity's credentials: the client-credentials
	// Secret or the client-certificate Secret.
	indexClientSecret   = "spec.clientSecretRef.name"
	indexCABundle       = "spec.caBundleRef.name"
	indexServiceAccount = "spec.serviceAccountName"
)

// setupWithManager registers the DatabricksCredential controller. Besides the credentials and
// their owned target Secrets, it watches the referenced client-credentials (or client-certificate)
// Secrets, CA ConfigMaps and ServiceAccounts by metadata in the reference cache: a rotated client
// secret changes the Secret's resourceVersion, which triggers a pass at once.
func (r *DatabricksCredentialReconciler) setupWithManager(ctx context.Context, mgr ctrl.Manager, refCache cache.Cache, maxConcurrent int) error {
	indexes := map[string]func(*v1alpha1.DatabricksCredential) string{
		indexClientSecret:   func(c *v1alpha1.DatabricksCredential) string { return c.Spec.CredentialsSecretName() },
		indexServiceAccount: func(c *v1alpha1.DatabricksCredential) string { return c.Spec.ServiceAccountName() },
		indexCABundle: func(c *v1alpha1.DatabricksCredential) string {
			if ref := c.Spec.CABundleRef; ref != nil {
				return ref.Name
			}
			return ""
		},
	}
	for name, value := range indexes {
		if err := indexField(ctx, mgr, &v1alpha1.DatabricksCredential{}, name, value); err != nil {
			return err
		}
	}
	referencing := func(index string) handler.TypedEventHandler[*metav1.PartialObjectMetadata, reconcile.Request] {
		return handler.TypedEnqueueRequestsFromMapFunc(func(ctx context.Context, obj *metav1.PartialObjectMetadata) []reconcile.Request {
			return r.shared.referencing(ctx, &v1alpha1.DatabricksCredentialList{}, index, obj.GetName(), client.InNamespace(obj.GetNamespace()))
		})
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		// Status writes do not change the generation; reconciling on them would only repeat work.
		For(&v1alpha1.DatabricksCredential{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Our own Secret writes need no pass; deletions and others' edits do (drift repair).
		Owns(&corev1.Secret{}, builder.WithPredicates(r.shared.Writes.NotEcho(credential.KindDatabricksCredential))).
		WatchesRawSource(referenceSource(refCache, "Secret", referencing(indexClientSecret))).
		WatchesRawSource(referenceSource(refCache, "ConfigMap", referencing(indexCABundle))).
		// A ServiceAccount that a federation or workloadIdentity block names and that appears (or
		// is re-created) is used within seconds.
		WatchesRawSource(referenceSource(refCache, "ServiceAccount", referencing(indexServiceAccount))).
		// A token exchange that outlasted its pass brings the credential back when it finishes.
		WatchesRawSource(r.shared.exchangeSource(credential.KindDatabricksCredential)).
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrent}).
		Complete(r)
}

// Field indexes over ClusterDatabricksCredentials: "<namespace>/<name>" of the referenced Secret
// and ConfigMap.
const (
	indexClusterClientSecret = "spec.clientSecretRef.namespacedName"
	indexClusterCABundle     = "spec.caBundleRef.namespacedName"
)

// setupWithManager registers the ClusterDatabricksCredential controller. Besides the cluster
// credentials and the Secrets they own, it watches Namespaces by metadata, so that a namespace
// that is created, deleted or relabelled is served or cleaned up at once, and the referenced
// client-credentials Secrets and CA ConfigMaps through the reference cache.
func (r *ClusterDatabricksCredentialReconciler) setupWithManager(ctx context.Context, mgr ctrl.Manager, refCache cache.Cache, maxConcurrent int) error {
	indexes := map[string]func(*v1alpha1.ClusterDatabricksCredential) string{
		indexClusterClientSecret: func(c *v1alpha1.ClusterDatabricksCredential) string {
			if ref := c.Spec.ClientSecretRef(); ref != nil {
				return ref.Namespace + "/" + ref.Name
			}
			return ""
		},
		indexClusterCABundle: func(c *v1alpha1.ClusterDatabricksCredential) string {
			if ref := c.Spec.CABundleRef; ref != nil {
				return ref.Namespace + "/" + ref.Name
			}
			return ""
		},
	}
	for name, value := range indexes {
		if err := indexField(ctx, mgr, &v1alpha1.ClusterDatabricksCredential{}, name, value); err != nil {
			return err
		}
	}
	referencing := func(index string) handler.TypedEventHandler[*metav1.PartialObjectMetadata, reconcile.Request] {
		return handler.TypedEnqueueRequestsFromMapFunc(func(ctx context.Context, obj *metav1.PartialObjectMetadata) []reconcile.Request {
			return r.shared.referencing(ctx, &v1alpha1.ClusterDatabricksCredentialList{}, index, obj.GetNamespace()+"/"+obj.GetName())
		})
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(ClusterControllerName).
		// Status writes do not change the generation; reconciling on them would only repeat work.
		For(&v1alpha1.ClusterDatabricksCredential{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.Secret{}, builder.WithPredicates(r.shared.Writes.NotEcho(credential.KindClusterDatabricksCredential))).
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.selecting),
			builder.WithPredicates(namespaceMembershipChanged())).
		WatchesRawSource(referenceSource(refCache, "Secret", referencing(indexClusterClientSecret))).
		WatchesRawSource(referenceSource(refCache, "ConfigMap", referencing(indexClusterCABundle))).
		WatchesRawSource(r.shared.exchangeSource(credential.KindClusterDatabricksCredential)).
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrent}).
		Complete(r)
}

// indexField registers one field index over credentials of obj's type; an empty value indexes
// nothing.
func indexField[T client.Object](ctx context.Context, mgr ctrl.Manager, obj T, name string, value func(T) string) error {
	return mgr.GetFieldIndexer().IndexField(ctx, obj, name, func(o client.Object) []string {
		if v := value(o.(T)); v != "" {
			return []string{v}
		}
		return nil
	})
}

// referenceSource watches one kind in the reference cache by metadata, on resourceVersion changes.
func referenceSource(refCache cache.Cache, kind string, h handler.TypedEventHandler[*metav1.PartialObjectMetadata, reconcile.Request]) source.Source {
	return source.Kind(refCache, kubecache.CoreMetadata(kind), h,
		predicate.TypedResourceVersionChangedPredicate[*metav1.PartialObjectMetadata]{})
}

// referencing lists the credentials (into list, a DatabricksCredentialList or
// ClusterDatabricksCredentialList) whose field index has value, as reconcile requests.
func (s *Shared) referencing(ctx context.Context, list client.ObjectList, index, value string, opts ...client.ListOption) []reconcile.Request {
	if err := s.Client.List(ctx, list, append(opts, client.MatchingFields{index: value})...); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing credentials that reference an object", "index", index, "name", value)
		return nil
	}
	var reqs []reconcile.Request
	_ = apimeta.EachListItem(list, func(o runtime.Object) error {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o.(client.Object))})
		return nil
	})
	return reqs
}

// onStop runs f when the manager stops, on every replica (leader or not).
type onStop func()

func (f onStop) Start(ctx context.Context) error {
	<-ctx.Done()
	f()
	return nil
}

func (onStop) NeedLeaderElection() bool { return false }
