package token

import (
	"context"
	"sync"

	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"
)

// SharedCache lets credentials that use the same identity — token endpoint, client ID, client
// secret bytes, scopes, auth style and CA bundle, i.e. the same Request.Hash — share one exchange
// and one token. Entra ID tokens are valid in every workspace the service principal belongs to, so
// one dbt project per workspace and environment needs one exchange, not one per credential.
// Concurrent requests for the same identity are collapsed into one exchange.
//
// The cache is keyed by the hash, never by the secret, holds only the newest token per identity,
// and drops tokens once expired. It is deliberately the only token cache besides the target
// Secrets (see STYLE.md: no x/oauth2 ReuseTokenSource, whose double caching made tokens refresh
// seconds before expiry in the Databricks SDK).
type SharedCache struct {
	provider Provider
	clock    clock.PassiveClock
	observer Observer

	group singleflight.Group

	mu      sync.Mutex
	entries map[string]Token
}

// NewSharedCache wraps provider; observer (may be nil) counts hits and misses.
func NewSharedCache(provider Provider, clk clock.PassiveClock, observer Observer) *SharedCache {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if observer == nil {
		observer = noObserver{}
	}
	return &SharedCache{provider: provider, clock: clk, observer: observer, entries: map[string]Token{}}
}

// Token returns the cached token for req's identity when usable accepts it (the caller decides:
// typically "not yet due for refresh under my renewBefore"), and otherwise performs one exchange,
// shared with every concurrent caller for the same identity. shared reports whether the token came
// from the cache or from another caller's exchange.
func (c *SharedCache) Token(ctx context.Context, req Request, usable func(Token) bool) (Token, bool, error) {
	key := req.Hash()
	if t, ok := c.lookup(key); ok && usable(t) {
		c.observer.ObserveCacheLookup(req.Kind, true)
		return t, true, nil
	}
	v, err, dup := c.group.Do(key, func() (any, error) {
		// A caller that waited for the lock may find a token another caller just stored.
		if t, ok := c.lookup(key); ok && usable(t) {
			return t, nil
		}
		t, err := c.provider.Token(ctx, req)
		if err != nil {
			return Token{}, err
		}
		c.store(key, t)
		return t, nil
	})
	c.observer.ObserveCacheLookup(req.Kind, dup)
	if err != nil {
		return Token{}, false, err
	}
	return v.(Token), dup, nil
}

// Cached returns the live token of the identity whose Request.Hash is key, without an exchange.
func (c *SharedCache) Cached(key string) (Token, bool) {
	return c.lookup(key)
}

// Len is the number of identities with a live token, for tests and metrics.
func (c *SharedCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked()
	return len(c.entries)
}

func (c *SharedCache) lookup(key string) (Token, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.entries[key]
	if ok && !c.clock.Now().Before(t.ExpiresAt) {
		delete(c.entries, key)
		return Token{}, false
	}
	return t, ok
}

func (c *SharedCache) store(key string, t Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[key]; !ok || t.ExpiresAt.After(old.ExpiresAt) {
		c.entries[key] = t
	}
	// Entries number the distinct identities in use (tens to hundreds), so a sweep on every
	// store is cheap and keeps expired tokens out of memory.
	c.pruneLocked()
}

func (c *SharedCache) pruneLocked() {
	now := c.clock.Now()
	for k, t := range c.entries {
		if !now.Before(t.ExpiresAt) {
			delete(c.entries, k)
		}
	}
}
