package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// rememberedToken is the last token this process wrote for a credential, with the inputs it was
// issued for. It lets a pass rewrite the Secret after a change of host or target, a deleted
// Secret or a hand edit without a new exchange. It lives only in memory: after a restart the
// Secret itself is the record, and a change that needs the raw token then costs one exchange.
type rememberedToken struct {
	inputsHash string
	token      token.Token
}

// memoryEntry belongs to one incarnation (UID) of a credential name: a credential deleted and
// recreated under the same name starts afresh.
type memoryEntry struct {
	uid          types.UID
	token        *rememberedToken
	failedInputs string // inputs hash of the last failed exchange, "" when the last one succeeded
}

// tokenMemory is keyed by namespace/name, because a reconcile of a deleted credential knows only
// its name; that is when the entry is dropped. Safe for concurrent reconciles.
type tokenMemory struct {
	mu      sync.Mutex
	entries map[types.NamespacedName]memoryEntry
}

func newTokenMemory() *tokenMemory {
	return &tokenMemory{entries: map[types.NamespacedName]memoryEntry{}}
}

func (m *tokenMemory) entry(key types.NamespacedName, uid types.UID) memoryEntry {
	if e, ok := m.entries[key]; ok && e.uid == uid {
		return e
	}
	return memoryEntry{uid: uid}
}

func (m *tokenMemory) get(key types.NamespacedName, uid types.UID) *rememberedToken {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.entry(key, uid).token
}

func (m *tokenMemory) put(key types.NamespacedName, uid types.UID, inputsHash string, t token.Token) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[key] = memoryEntry{uid: uid, token: &rememberedToken{inputsHash: inputsHash, token: t}}
}

// failedFor records that an exchange for these inputs failed.
func (m *tokenMemory) failedFor(key types.NamespacedName, uid types.UID, inputsHash string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(key, uid)
	e.failedInputs = inputsHash
	m.entries[key] = e
}

// inputsChangedSinceFailure reports whether the inputs differ from those of the last failure this
// process saw: a rotated client secret or a fixed spec is retried at once instead of waiting out
// the backoff. After a restart nothing is known, and the persisted backoff is honoured.
func (m *tokenMemory) inputsChangedSinceFailure(key types.NamespacedName, uid types.UID, inputsHash string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(key, uid)
	return e.failedInputs != "" && e.failedInputs != inputsHash
}

func (m *tokenMemory) forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, key)
}
