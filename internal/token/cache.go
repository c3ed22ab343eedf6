package token

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// ErrPending is returned by SharedCache.Obtain while the exchange for the request is still
// running (or waiting for a slot at its token endpoint). The caller's notify function is called
// with its waiter once the result can be collected by calling Obtain again.
var ErrPending = errors.New("a token exchange for this identity is in progress")

// Default limits of a SharedCache.
const (
	// DefaultExchangesPerHost bounds concurrent exchanges per token endpoint (scheme, host and
	// port): a slow or hanging endpoint holds at most this many, whatever its credentials do.
	DefaultExchangesPerHost = 8
	// DefaultExchangeWait is how long Obtain waits for an exchange that has just started, so that
	// a quick answer (nearly all of them) completes the caller's pass; after that the caller is
	// told ErrPending and notified later, and its goroutine is free for other credentials.
	DefaultExchangeWait = time.Second
)

// SharedCache is where every token exchange happens, off the callers' goroutines, and where the
// tokens of each identity are shared.
//
// Credentials that use the same identity — token endpoint, client ID, client secret bytes,
// scopes, auth style and CA bundle, i.e. the same Request.Hash — share one exchange and one token.
// Entra ID tokens are valid in every workspace the service principal belongs to, so one dbt
// project per workspace and environment needs one exchange, not one per credential. The cache is
// keyed by the hash, never by the secret, holds only the newest token per identity, and drops
// tokens once expired. It is deliberately the only token cache besides the target Secrets (no
// x/oauth2 ReuseTokenSource, whose double caching made tokens refresh seconds before expiry in the
// Databricks SDK).
//
// Exchanges run in goroutines of their own, at most one per identity and at most
// ExchangesPerHost per token endpoint, so that a slow or hanging endpoint never holds the
// reconcile workers that keep other credentials fresh: a caller waits at most Wait for a new
// exchange, and is then told ErrPending and notified when its result is ready.
type SharedCache struct {
	provider Provider
	clock    clock.PassiveClock
	observer Observer
	opts     SharedCacheOptions

	mu      sync.Mutex
	entries map[string]Token
	flights map[string]*flight       // by Request.Hash, while an exchange runs or waits for a slot
	results map[any]result           // per waiter, until it collects it
	slots   map[string]chan struct{} // per token endpoint
}

// SharedCacheOptions bound the exchanges and say how waiters learn that their result is ready.
type SharedCacheOptions struct {
	// ExchangesPerHost bounds concurrent exchanges per token endpoint. Default
	// DefaultExchangesPerHost.
	ExchangesPerHost int
	// Wait is how long Obtain waits for an exchange that started at most that long ago. Default
	// DefaultExchangeWait; negative: never wait.
	Wait time.Duration
	// Notify is called, outside any lock, with each waiter whose result is ready and that is not
	// waiting in Obtain at that moment. nil: nobody is told (callers poll).
	Notify func(waiter any)
	// Context bounds the exchanges; default context.Background (each exchange has the
	// provider's own timeout).
	Context context.Context
}

type flight struct {
	hash    string
	started time.Time // when it got its slot; zero while it waits for one
	done    chan struct{}
	// waiters are the callers that asked for this exchange; blocked marks those waiting in
	// Obtain right now, which collect their result themselves and need no notification.
	waiters map[any]bool
	first   any // the waiter that started it: its token is not "shared"
}

type result struct {
	hash   string
	tok    Token
	err    error
	shared bool
}

// NewSharedCache wraps provider; observer (may be nil) counts hits and misses.
func NewSharedCache(provider Provider, clk clock.PassiveClock, observer Observer, opts SharedCacheOptions) *SharedCache {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if observer == nil {
		observer = noObserver{}
	}
	if opts.ExchangesPerHost <= 0 {
		opts.ExchangesPerHost = DefaultExchangesPerHost
	}
	if opts.Wait == 0 {
		opts.Wait = DefaultExchangeWait
	}
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	return &SharedCache{provider: provider, clock: clk, observer: observer, opts: opts,
		entries: map[string]Token{}, flights: map[string]*flight{}, results: map[any]result{}, slots: map[string]chan struct{}{}}
}

// Obtain returns a token for req on behalf of waiter (a comparable key naming the caller, e.g.
// its credential): the result of the exchange waiter asked for earlier, if it is ready and was for
// the same request; else the cached token of req's identity when usable accepts it (typically
// "not yet due for refresh under my renewBefore"); else it starts an exchange, or joins the one
// running for the identity, and waits for it briefly. shared reports a token that another caller
// obtained. An exchange still running after the wait gives ErrPending; waiter is then notified
// (SharedCacheOptions.Notify) when its result is ready.
func (c *SharedCache) Obtain(ctx context.Context, waiter any, req Request, usable func(Token) bool) (tok Token, shared bool, err error) {
	key := req.Hash()
	c.mu.Lock()
	if res, ok := c.results[waiter]; ok {
		delete(c.results, waiter)
		if res.hash == key {
			c.mu.Unlock()
			return res.tok, res.shared, res.err
		}
	}
	if t, ok := c.lookupLocked(key); ok && usable(t) {
		c.mu.Unlock()
		c.observer.ObserveCacheLookup(req.Kind, true)
		return t, true, nil
	}
	f := c.flights[key]
	if f == nil {
		f = &flight{hash: key, done: make(chan struct{}), waiters: map[any]bool{}, first: waiter}
		c.flights[key] = f
		c.startLocked(f, req)
	}
	c.observer.ObserveCacheLookup(req.Kind, f.first != waiter)
	f.waiters[waiter] = false
	wait := c.opts.Wait - c.clockSince(f.started)
	if f.started.IsZero() || wait <= 0 {
		// Queued behind a busy endpoint, or running for longer than a caller may wait: the caller
		// is notified instead of being held.
		c.mu.Unlock()
		return Token{}, false, ErrPending
	}
	f.waiters[waiter] = true
	c.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-f.done:
	case <-timer.C:
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, still := f.waiters[waiter]; still {
		f.waiters[waiter] = false // not done yet: notify when it is
		return Token{}, false, ErrPending
	}
	res, ok := c.results[waiter]
	if !ok {
		return Token{}, false, ErrPending
	}
	delete(c.results, waiter)
	return res.tok, res.shared, res.err
}

// clockSince is the real time since t (the brief wait is about goroutines, not the refresh rule,
// so it does not follow a fake clock).
func (c *SharedCache) clockSince(t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return time.Since(t)
}

// startLocked runs f's exchange, at once when its endpoint has a free slot, else when one frees.
func (c *SharedCache) startLocked(f *flight, req Request) {
	slot := c.slotLocked(req.TokenURL)
	select {
	case slot <- struct{}{}:
		f.started = time.Now()
		go c.exchange(f, req, slot)
	default:
		go func() {
			slot <- struct{}{}
			c.mu.Lock()
			f.started = time.Now()
			c.mu.Unlock()
			c.exchange(f, req, slot)
		}()
	}
}

func (c *SharedCache) exchange(f *flight, req Request, slot chan struct{}) {
	tok, err := c.provider.Token(c.opts.Context, req)
	<-slot
	c.mu.Lock()
	if err == nil {
		c.storeLocked(f.hash, tok)
	}
	var notify []any
	for w, blocked := range f.waiters {
		c.results[w] = result{hash: f.hash, tok: tok, err: err, shared: w != f.first}
		if !blocked {
			notify = append(notify, w)
		}
	}
	f.waiters = nil
	delete(c.flights, f.hash)
	close(f.done)
	c.mu.Unlock()
	if c.opts.Notify != nil {
		for _, w := range notify {
			c.opts.Notify(w)
		}
	}
}

// slotLocked returns the semaphore of the token endpoint of rawURL: its scheme, host and port.
// Two identity providers on one host but different ports are different endpoints.
func (c *SharedCache) slotLocked(rawURL string) chan struct{} {
	endpoint := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		endpoint = u.Scheme + "://" + u.Host
	}
	s, ok := c.slots[endpoint]
	if !ok {
		s = make(chan struct{}, c.opts.ExchangesPerHost)
		c.slots[endpoint] = s
	}
	return s
}

// Forget drops an uncollected result of waiter (its credential was deleted).
func (c *SharedCache) Forget(waiter any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.results, waiter)
}

// Cached returns the live token of the identity whose Request.Hash is key, without an exchange.
func (c *SharedCache) Cached(key string) (Token, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lookupLocked(key)
}

// Len is the number of identities with a live token, for tests and metrics.
func (c *SharedCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked()
	return len(c.entries)
}

// InFlight is the number of exchanges running or waiting for a slot, for tests.
func (c *SharedCache) InFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.flights)
}

func (c *SharedCache) lookupLocked(key string) (Token, bool) {
	t, ok := c.entries[key]
	if ok && !c.clock.Now().Before(t.ExpiresAt) {
		delete(c.entries, key)
		return Token{}, false
	}
	return t, ok
}

func (c *SharedCache) storeLocked(key string, t Token) {
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
