// Package intern lets cached objects share one copy of equal values. Every target Secret of an
// identity holds the same token and the same expiry and inputs-hash annotations; the informer
// decodes each Secret into fresh allocations, so 10,000 Secrets over 100 identities held 10,000
// copies of 100 tokens (~8 MiB; see docs/performance.md).
//
// The table holds its values weakly: a value no cached object uses any more is freed by the
// garbage collector like any other, and its entry is swept. So the table keeps no old versions —
// a tenant who rewrites a large value in a loop does not grow it — and its own size is a few
// words per value in use.
//
// Values are handed out for reading only: the cache's objects are never modified in place
// (controller-runtime returns deep copies), which is what makes sharing them safe.
//
// Why not the standard library's unique.Make: its canonical values live only as long as a
// unique.Handle does, and cached objects hold plain strings and byte slices, not handles, so every
// garbage collection would end the sharing (a new copy per decoded object after it).
package intern

import (
	"hash/maphash"
	"strings"
	"sync"
	"unsafe"
	"weak"
)

// Table maps content to its one shared copy, weakly.
type Table struct {
	seed maphash.Seed

	mu    sync.Mutex
	m     map[uint64]entry // by the content's hash; a collision only ends one value's sharing
	calls int
}

// entry points weakly at the shared copy's bytes.
type entry struct {
	p weak.Pointer[byte]
	n int
}

// sweepEvery is how many lookups pass between sweeps of entries whose value was freed.
const sweepEvery = 1024

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{seed: maphash.MakeSeed(), m: map[uint64]entry{}}
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
// allocation.
func (t *Table) share(s string, b []byte) string {
	var h uint64
	n := len(s)
	if b != nil {
		h, n = maphash.Bytes(t.seed, b), len(b)
	} else {
		h = maphash.String(t.seed, s)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepLocked()
	if e, ok := t.m[h]; ok && e.n == n {
		if p := e.p.Value(); p != nil {
			held := unsafe.String(p, n)
			if (b != nil && string(b) == held) || (b == nil && s == held) {
				return held
			}
		}
	}
	// A fresh heap copy: the weak pointer must point at memory the collector owns, and the
	// caller's own allocation may be larger than the value.
	var c string
	if b != nil {
		c = string(b)
	} else {
		c = strings.Clone(s)
	}
	t.m[h] = entry{p: weak.Make(unsafe.StringData(c)), n: n}
	return c
}

// Len is the number of values held and still in use, for tests.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range t.m {
		if e.p.Value() != nil {
			n++
		}
	}
	return n
}

// Entries is the number of entries, swept or not, for tests.
func (t *Table) Entries() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

func (t *Table) sweepLocked() {
	if t.calls++; t.calls%sweepEvery != 0 {
		return
	}
	for k, e := range t.m {
		if e.p.Value() == nil {
			delete(t.m, k)
		}
	}
}
