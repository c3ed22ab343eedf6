// Package kubecache holds the operator's Kubernetes read and write plumbing, with no knowledge of
// tokens: the manager's cache settings and transform, the metadata-only reference cache and the
// reader that reads referenced objects only when they change, the tracker that recognises the
// watch echoes of the operator's own Secret writes, the credentials' read and status-patch path,
// and the /readyz check that the caches have synced.
package kubecache

import (
	"context"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// ReferenceKinds are the core kinds credentials refer to, watched by metadata in the reference
// cache: client-credentials and certificate Secrets, CA ConfigMaps, ServiceAccounts.
var ReferenceKinds = []string{"Secret", "ConfigMap", "ServiceAccount"}

// NewReferenceCache is a metadata-only cache of the Secrets, ConfigMaps and ServiceAccounts that
// credentials may refer to. A rotated client secret changes its Secret's resourceVersion, which the
// watches see at once, while no Secret's data is cached: caching every Secret in the cluster is
// what the manager's label-restricted Secret cache avoids. managedFields are stripped: they are
// most of an object's metadata. Secrets with our label are left out: they are our targets, which
// the manager's cache already holds in full, so the two caches together know every Secret once
// (see credential.ReadTarget). httpClient and mapper may be nil (built from cfg).
func NewReferenceCache(cfg *rest.Config, scheme *runtime.Scheme, httpClient *http.Client, mapper meta.RESTMapper, namespaces []string) (cache.Cache, error) {
	notOurs, err := labels.NewRequirement(v1alpha1.LabelCredential, selection.DoesNotExist, nil)
	if err != nil {
		return nil, err
	}
	opts := cache.Options{
		HTTPClient:        httpClient,
		Scheme:            scheme,
		Mapper:            mapper,
		DefaultTransform:  stripForCache,
		DefaultNamespaces: namespaceConfigs(namespaces),
		ByObject: map[client.Object]cache.ByObject{
			CoreMetadata("Secret"): {Label: labels.NewSelector().Add(*notOurs)},
		},
	}
	c, err := cache.New(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("creating the reference cache: %w", err)
	}
	return c, nil
}

// AddCache makes mgr start c with its own cache, on every replica and before the controllers: a
// plain runnable would start only on the leader, leaving a standby's informers cold and its
// /readyz failing.
func AddCache(mgr manager.Manager, c cache.Cache) error {
	return mgr.Add(cacheRunnable{c})
}

// cacheRunnable makes the manager treat a cache.Cache as one of its caches.
type cacheRunnable struct{ cache.Cache }

func (c cacheRunnable) GetCache() cache.Cache { return c.Cache }

// StartInformers creates c's informers for objs now, so that the cache starts them when it starts,
// on every replica: informers created by a controller's watches start only on the leader, and a
// standby would then find them cold when it takes over (and fail /readyz until then).
func StartInformers(ctx context.Context, c cache.Cache, objs ...client.Object) error {
	for _, obj := range objs {
		if _, err := c.GetInformer(ctx, obj, cache.BlockUntilSynced(false)); err != nil {
			return fmt.Errorf("informer for %s: %w", describe(obj), err)
		}
	}
	return nil
}

// CoreMetadata is an empty metadata-only object of a core/v1 kind, for metadata caches and watches.
func CoreMetadata(kind string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
	return m
}

func namespaceConfigs(namespaces []string) map[string]cache.Config {
	if len(namespaces) == 0 {
		return nil
	}
	out := make(map[string]cache.Config, len(namespaces))
	for _, ns := range namespaces {
		out[ns] = cache.Config{}
	}
	return out
}

func describe(obj client.Object) string {
	if kind := obj.GetObjectKind().GroupVersionKind().Kind; kind != "" {
		return kind + " metadata"
	}
	return fmt.Sprintf("%T", obj)
}
