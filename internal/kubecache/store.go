package kubecache

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// CredentialStore is the credentials' read and status-write path, for both kinds. Reads come from
// the manager's cache, guarded against a cache that has not yet seen this process's last status
// write: after a status patch it keeps the resourceVersion the patch replaced; a pass that reads exactly
// that version from the cache knows the cache is behind and reads the credential from the API
// server instead. Acting on the older status would repeat the transition (an Event, a new
// lastTransitionTime) the previous pass already wrote. A cache catches up within milliseconds to
// seconds: entries go when a pass sees the newer version, or after statusWriteMemory (swept every
// sweepEvery writes), so that the map does not hold one entry per credential between refreshes.
type CredentialStore struct {
	clock  clock.PassiveClock
	cached client.Reader
	direct client.Reader
	writer client.StatusClient

	mu       sync.Mutex
	replaced map[types.NamespacedName]replacedVersion
	writes   int
}

type replacedVersion struct {
	rv string
	at time.Time
}

const (
	statusWriteMemory = 30 * time.Second
	sweepEvery        = 1024
)

// NewCredentialStore reads from cached (the manager's cache) and, when it is behind, from direct
// (the API server), and writes status through writer.
func NewCredentialStore(clk clock.PassiveClock, cached, direct client.Reader, writer client.StatusClient) *CredentialStore {
	return &CredentialStore{clock: clk, cached: cached, direct: direct, writer: writer, replaced: map[types.NamespacedName]replacedVersion{}}
}

// patched records a status write that moved the object from resourceVersion before to after.
func (s *CredentialStore) patched(key types.NamespacedName, before, after string) {
	if before == after { // nothing changed on the server
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replaced[key] = replacedVersion{rv: before, at: now}
	if s.writes++; s.writes%sweepEvery == 0 {
		for k, v := range s.replaced {
			if now.Sub(v.at) > statusWriteMemory {
				delete(s.replaced, k)
			}
		}
	}
}

// stale reports whether the cached version is the one the last status write replaced.
func (s *CredentialStore) stale(key types.NamespacedName, cachedRV string) bool {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.replaced[key]
	if !ok {
		return false
	}
	if v.rv == cachedRV && now.Sub(v.at) <= statusWriteMemory {
		return true
	}
	delete(s.replaced, key)
	return false
}

// Get reads obj from the cache, or from the API server when the cache still shows the version
// this process's last status write replaced.
func (s *CredentialStore) Get(ctx context.Context, key types.NamespacedName, obj client.Object) error {
	if err := s.cached.Get(ctx, key, obj); err != nil {
		return err
	}
	if !s.stale(key, obj.GetResourceVersion()) {
		return nil
	}
	log.FromContext(ctx).V(1).Info("cache is older than our last status write; reading from the API server")
	return s.direct.Get(ctx, key, obj)
}

// PatchStatus writes after's status with a merge patch from before, once, and only when the pass
// changed it (before and after differ only in status), and records the write for Get. A
// credential deleted meanwhile is not an error.
func (s *CredentialStore) PatchStatus(ctx context.Context, before, after client.Object) error {
	if equality.Semantic.DeepEqual(before, after) {
		return nil
	}
	if err := s.writer.Status().Patch(ctx, after, client.MergeFrom(before)); err != nil {
		return client.IgnoreNotFound(err)
	}
	s.patched(client.ObjectKeyFromObject(after), before.GetResourceVersion(), after.GetResourceVersion())
	return nil
}

// Forget drops what is known of a deleted credential.
func (s *CredentialStore) Forget(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.replaced, key)
}
