// Package intern lets cached objects share one copy of equal values. Every target Secret of an
// identity holds the same token and the same expiry and inputs-hash annotations; the informer
// decodes each Secret into fresh allocations, so 10,000 Secrets over 100 identities held 10,000
// copies of 100 tokens (~8 MiB; see docs/performance.md).
//
// Values are handed out for reading only: the cache's objects are never modified in place
// (controller-runtime returns deep copies), which is what makes sharing them safe.
package intern

import (
	"sync"
	"time"
	"unsafe"

	"k8s.io/utils/clock"
)

// Table maps content to its one shared copy. Entries unused for keep are dropped, so a table
// whose values rotate (tokens are replaced every hour) does not grow; dropping an entry only ends
// the sharing of that value, never frees memory an object still uses.
type Table struct {
	clock clock.PassiveClock
	keep  time.Duration

	mu    sync.Mutex
	m     map[string]entry
	calls int
}

type entry struct {
	shared   string // the copy handed out; the map key is the same string
	lastUsed time.Time
}

// sweepEvery is how many lookups pass between sweeps of unused entries.
const sweepEvery = 1024

// NewTable returns a table that forgets values not handed out for keep.
func NewTable(clk clock.PassiveClock, keep time.Duration) *Table {
	return &Table{clock: clk, keep: keep, m: map[string]entry{}}
}

// String returns the shared copy of s.
func (t *Table) String(s string) string {
	if s == "" {
		return s
	}
	return t.share(s, nil)
}

// Bytes returns a shared, read-only copy of b. The result aliases a string's memory: writing to
// it is a bug.
func (t *Table) Bytes(b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	s := t.share("", b)
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// share returns the shared copy of s, or of b when b is not nil. A value already held costs no
// allocation: the map lookup with string(b) does not copy b.
func (t *Table) share(s string, b []byte) string {
	now := t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepLocked(now)
	var e entry
	var ok bool
	if b != nil {
		e, ok = t.m[string(b)]
	} else {
		e, ok = t.m[s]
	}
	if !ok {
		if b != nil {
			s = string(b)
		}
		e.shared = s
	}
	e.lastUsed = now
	t.m[e.shared] = e
	return e.shared
}

// Len is the number of values held, for tests.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

func (t *Table) sweepLocked(now time.Time) {
	if t.calls++; t.calls%sweepEvery != 0 {
		return
	}
	for k, e := range t.m {
		if now.Sub(e.lastUsed) > t.keep {
			delete(t.m, k)
		}
	}
}
