package kubecache

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// fakeInformers hands out informers whose HasSynced reads one flag.
type fakeInformers struct{ synced *bool }

func (f fakeInformers) GetInformer(context.Context, client.Object, ...cache.InformerGetOption) (cache.Informer, error) {
	return fakeInformer{synced: f.synced}, nil
}

type fakeInformer struct {
	cache.Informer
	synced *bool
}

func (f fakeInformer) HasSynced() bool { return *f.synced }

func TestCachesSyncedWaitsForEveryInformerThenStaysReady(t *testing.T) {
	synced := false
	check := CachesSynced(Informers{Cache: fakeInformers{&synced}, Objects: []client.Object{&corev1.Secret{}, CoreMetadata("ConfigMap")}})
	req := httptest.NewRequest("GET", "/readyz", nil)
	if err := check(req); err == nil || !strings.Contains(err.Error(), "has not synced yet") {
		t.Fatalf("before the caches synced: %v, want an error naming the cache", err)
	}
	synced = true
	if err := check(req); err != nil {
		t.Fatalf("after the caches synced: %v", err)
	}
	synced = false
	if err := check(req); err != nil {
		t.Fatalf("once synced it stays ready, got %v", err)
	}
}
