package controllers

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// ownWrites remembers the resourceVersion of each target Secret this process last wrote, so that
// the watch can drop the echo of its own write. Without it, every Secret a pass creates or updates
// queues the credential again at once; that second pass usually finds the credential's status in
// the cache older than the status the first pass just wrote, and repeats its Event (test/bench
// counted +18 % Events and extra status writes at N=1000). An entry lives from the write until
// its watch event arrives. An echo that arrives before the write is recorded passes through; the
// stale-cache guard (statusWrites) makes that extra pass harmless.
type ownWrites struct {
	mu sync.Mutex
	rv map[types.NamespacedName]string
}

func newOwnWrites() *ownWrites { return &ownWrites{rv: map[types.NamespacedName]string{}} }

// wrote records obj as written by this process, at its current resourceVersion.
func (w *ownWrites) wrote(obj client.Object) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rv[client.ObjectKeyFromObject(obj)] = obj.GetResourceVersion()
}

// echo reports whether obj is exactly the version this process wrote last, and forgets it.
func (w *ownWrites) echo(obj client.Object) bool {
	key := client.ObjectKeyFromObject(obj)
	w.mu.Lock()
	defer w.mu.Unlock()
	rv, ok := w.rv[key]
	if !ok || rv != obj.GetResourceVersion() {
		return false
	}
	delete(w.rv, key)
	return true
}

// notEcho lets through every Secret event except the creates and updates this process made.
// Deletions and anyone else's changes (hand edits, a removed label) always pass.
func (w *ownWrites) notEcho() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return !w.echo(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool { return !w.echo(e.ObjectNew) },
	}
}

// statusWrites guards against a cache that has not yet seen this process's last status write.
// After a status patch it keeps the resourceVersion the patch replaced; a pass that reads exactly
// that version from the cache knows the cache is behind and reads the credential from the API
// server instead. Acting on the older status would repeat the transition (an Event, a new
// lastTransitionTime) the previous pass already wrote. A cache catches up within milliseconds to
// seconds: entries go when a pass sees the newer version, or after statusWriteMemory (swept every
// sweepEvery writes), so that the map does not hold one entry per credential between refreshes.
type statusWrites struct {
	clock clock.PassiveClock

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

func newStatusWrites(clk clock.PassiveClock) *statusWrites {
	return &statusWrites{clock: clk, replaced: map[types.NamespacedName]replacedVersion{}}
}

// patched records a status write that moved the object from resourceVersion before to after.
func (s *statusWrites) patched(key types.NamespacedName, before, after string) {
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
func (s *statusWrites) stale(key types.NamespacedName, cachedRV string) bool {
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

// get reads obj from the cache, or from the API server when the cache still shows the version
// this process's last status write replaced.
func (s *statusWrites) get(ctx context.Context, cached, direct client.Reader, key types.NamespacedName, obj client.Object) error {
	if err := cached.Get(ctx, key, obj); err != nil {
		return err
	}
	if !s.stale(key, obj.GetResourceVersion()) {
		return nil
	}
	log.FromContext(ctx).V(1).Info("cache is older than our last status write; reading from the API server")
	return direct.Get(ctx, key, obj)
}

// patch writes after's status with a merge patch from before when statusChanged, and records the
// write for get. A credential deleted meanwhile is not an error.
func (s *statusWrites) patch(ctx context.Context, c client.Client, before, after client.Object, statusChanged bool) error {
	if !statusChanged {
		return nil
	}
	if err := c.Status().Patch(ctx, after, client.MergeFrom(before)); err != nil {
		return client.IgnoreNotFound(err)
	}
	s.patched(client.ObjectKeyFromObject(after), before.GetResourceVersion(), after.GetResourceVersion())
	return nil
}

func (s *statusWrites) forget(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.replaced, key)
}
