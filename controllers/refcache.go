package controllers

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// sharedReferenceCache returns the manager's reference cache, creating it on first use, so that
// the DatabricksCredential and ClusterDatabricksCredential controllers share one metadata informer
// per kind instead of each holding every Secret's metadata. The first caller's namespaces apply
// (both controllers get the manager's --namespaces). The first call also feeds the status metrics
// collector from the manager's cache (both kinds' gauges come from it). The entry is dropped when
// the manager stops.
func sharedReferenceCache(mgr ctrl.Manager, namespaces []string) (cache.Cache, error) {
	refCachesMu.Lock()
	defer refCachesMu.Unlock()
	if c, ok := refCaches[mgr]; ok {
		return c, nil
	}
	c, err := newReferenceCache(mgr, namespaces)
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(collectFrom{cache: mgr.GetCache()}); err != nil {
		return nil, err
	}
	refCaches[mgr] = c
	return c, mgr.Add(forgetOnStop(func() {
		refCachesMu.Lock()
		defer refCachesMu.Unlock()
		delete(refCaches, mgr)
	}))
}

// referenceCacheOf returns the manager's reference cache, if a controller created one.
func referenceCacheOf(mgr ctrl.Manager) (cache.Cache, bool) {
	refCachesMu.Lock()
	defer refCachesMu.Unlock()
	c, ok := refCaches[mgr]
	return c, ok
}

var (
	refCachesMu sync.Mutex
	refCaches   = map[ctrl.Manager]cache.Cache{}
)

// forgetOnStop runs f when the manager stops, on every replica (leader or not).
type forgetOnStop func()

func (f forgetOnStop) Start(ctx context.Context) error {
	<-ctx.Done()
	f()
	return nil
}

func (forgetOnStop) NeedLeaderElection() bool { return false }

// coreMetadata is an empty metadata-only object of a core/v1 kind, for metadata caches and watches.
func coreMetadata(kind string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
	return m
}
