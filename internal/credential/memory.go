package credential

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/dbtoken/databricks-token-operator/internal/refresh"
)

// memoryEntry belongs to one incarnation (UID) of a credential name: a credential deleted and
// recreated under the same name starts afresh.
type memoryEntry struct {
	uid          types.UID
	failedInputs string // inputs hash of the last failed exchange
	// bypasses counts retries before the backoff ran out because the inputs or the spec changed,
	// and nextBypass is when the next one is allowed.
	bypasses   int32
	nextBypass time.Time
}

// FailureMemory remembers, per failing credential, the inputs its last exchange failed with. It is
// keyed by namespace/name, because a reconcile of a deleted credential knows only its name; that
// is when the entry is dropped, as it is after a success. Safe for concurrent reconciles.
type FailureMemory struct {
	mu      sync.Mutex
	entries map[types.NamespacedName]memoryEntry
}

// NewFailureMemory returns an empty memory.
func NewFailureMemory() *FailureMemory {
	return &FailureMemory{entries: map[types.NamespacedName]memoryEntry{}}
}

func (m *FailureMemory) entry(key types.NamespacedName, uid types.UID) memoryEntry {
	if e, ok := m.entries[key]; ok && e.uid == uid {
		return e
	}
	return memoryEntry{uid: uid}
}

// failedFor records that an exchange for these inputs failed.
func (m *FailureMemory) failedFor(key types.NamespacedName, uid types.UID, inputsHash string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(key, uid)
	e.failedInputs = inputsHash
	m.entries[key] = e
}

// inputsChangedSinceFailure reports whether the inputs differ from those of the last failure this
// process saw: a rotated client secret or a fixed spec is retried at once instead of waiting out
// the backoff. After a restart nothing is known, and the persisted backoff is honoured.
func (m *FailureMemory) inputsChangedSinceFailure(key types.NamespacedName, uid types.UID, inputsHash string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(key, uid)
	return e.failedInputs != "" && e.failedInputs != inputsHash
}

func (m *FailureMemory) forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, key)
}

// bypass reports whether a failing credential whose inputs or spec changed may retry before its
// backoff ran out, and otherwise how long until it may. A fix (a rotated secret, an edited spec)
// is tried at once; further changes while failing wait 5 s, doubling to 5 minutes, until an
// exchange succeeds. Without the limit, editing the spec in a loop would send an exchange to the
// identity provider for every edit.
func (m *FailureMemory) bypass(key types.NamespacedName, uid types.UID, now time.Time) (time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(key, uid)
	if now.Before(e.nextBypass) {
		return e.nextBypass.Sub(now), false
	}
	e.bypasses++
	e.nextBypass = now.Add(refresh.RetryDelay(e.bypasses, true, 0, 0))
	m.entries[key] = e
	return 0, true
}
