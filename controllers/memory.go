package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// rememberedToken is a live token of the credential's identity, with the inputs it was issued
// for: the one the shared token cache holds (the newest of any credential with the same
// identity). It lets a pass rewrite the Secret after a change of host or target, a deleted Secret
// or a hand edit without a new exchange. It lives only in memory: after a restart the Secret
// itself is the record, and a change that needs the raw token then costs one exchange.
type rememberedToken struct {
	inputsHash string
	token      token.Token
}

// rememberedFrom looks up the shared cache's token for inputsHash.
func rememberedFrom(shared *token.SharedCache, inputsHash string) *rememberedToken {
	if t, ok := shared.Cached(inputsHash); ok {
		return &rememberedToken{inputsHash: inputsHash, token: t}
	}
	return nil
}

// memoryEntry belongs to one incarnation (UID) of a credential name: a credential deleted and
// recreated under the same name starts afresh.
type memoryEntry struct {
	uid          types.UID
	failedInputs string // inputs hash of the last failed exchange
}

// failureMemory remembers, per failing credential, the inputs its last exchange failed with. It is
// keyed by namespace/name, because a reconcile of a deleted credential knows only its name; that
// is when the entry is dropped, as it is after a success. Safe for concurrent reconciles.
type failureMemory struct {
	mu      sync.Mutex
	entries map[types.NamespacedName]memoryEntry
}

func newFailureMemory() *failureMemory {
	return &failureMemory{entries: map[types.NamespacedName]memoryEntry{}}
}

func (m *failureMemory) entry(key types.NamespacedName, uid types.UID) memoryEntry {
	if e, ok := m.entries[key]; ok && e.uid == uid {
		return e
	}
	return memoryEntry{uid: uid}
}

// failedFor records that an exchange for these inputs failed.
func (m *failureMemory) failedFor(key types.NamespacedName, uid types.UID, inputsHash string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(key, uid)
	e.failedInputs = inputsHash
	m.entries[key] = e
}

// inputsChangedSinceFailure reports whether the inputs differ from those of the last failure this
// process saw: a rotated client secret or a fixed spec is retried at once instead of waiting out
// the backoff. After a restart nothing is known, and the persisted backoff is honoured.
func (m *failureMemory) inputsChangedSinceFailure(key types.NamespacedName, uid types.UID, inputsHash string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(key, uid)
	return e.failedInputs != "" && e.failedInputs != inputsHash
}

func (m *failureMemory) forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, key)
}
