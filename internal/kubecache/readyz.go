package kubecache

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"

	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// Informers names the informers of one cache that a check waits for.
type Informers struct {
	Cache   InformerGetter
	Objects []client.Object
}

// InformerGetter is the part of a cache.Cache the check reads.
type InformerGetter interface {
	GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error)
}

// CachesSynced is the manager's /readyz check: it passes once every informer a leader reads has
// listed its objects, on every replica, so that a ready replica could lead now. The informers
// must have been created before the manager started (StartInformers): the check only looks, it
// never creates one (an informer created from inside a probe starts one probe period later, and a
// new replica was then unready for 40–50 s). Once synced it stays ready: informers do not
// un-sync.
func CachesSynced(sets ...Informers) healthz.Checker {
	var synced atomic.Bool
	return func(req *http.Request) error {
		if synced.Load() {
			return nil
		}
		for _, set := range sets {
			for _, obj := range set.Objects {
				inf, err := set.Cache.GetInformer(req.Context(), obj, cache.BlockUntilSynced(false))
				if err != nil {
					return fmt.Errorf("informer for %s: %w", describe(obj), err)
				}
				if !inf.HasSynced() {
					return fmt.Errorf("the cache of %s has not synced yet", describe(obj))
				}
			}
		}
		synced.Store(true)
		return nil
	}
}
