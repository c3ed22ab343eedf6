package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// countingProvider issues a unique token per call, living an hour, after an optional delay.
type countingProvider struct {
	clock *clocktesting.FakeClock
	delay time.Duration
	fail  error
	calls atomic.Int32
}

func (p *countingProvider) Token(ctx context.Context, req Request) (Token, error) {
	n := p.calls.Add(1)
	time.Sleep(p.delay)
	if p.fail != nil {
		return Token{}, p.fail
	}
	now := p.clock.Now()
	return Token{AccessToken: fmt.Sprintf("tok-%d", n), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, nil
}

func always(Token) bool { return true }

func TestSharedCache(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	req := Request{Kind: KindAzure, TokenURL: "https://login.microsoftonline.com/t/oauth2/v2.0/token", ClientID: "c", ClientSecret: "s", Scopes: []string{AzureDatabricksScope}}

	t.Run("same identity shares one exchange", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(t0)
		p := &countingProvider{clock: clk}
		c := NewSharedCache(p, clk, nil, SharedCacheOptions{})
		first, shared, err := c.Obtain(context.Background(), "w", req, always)
		if err != nil || shared {
			t.Fatalf("first call: err=%v shared=%v", err, shared)
		}
		second, shared, err := c.Obtain(context.Background(), "w", req, always)
		if err != nil || !shared || second.AccessToken != first.AccessToken {
			t.Fatalf("second call: err=%v shared=%v same=%v", err, shared, second.AccessToken == first.AccessToken)
		}
		if got := p.calls.Load(); got != 1 {
			t.Fatalf("provider calls = %d, want 1", got)
		}
	})

	t.Run("concurrent callers collapse into one exchange", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(t0)
		p := &countingProvider{clock: clk, delay: 100 * time.Millisecond}
		c := NewSharedCache(p, clk, nil, SharedCacheOptions{})
		var wg sync.WaitGroup
		tokens := make([]string, 20)
		for i := range tokens {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, _, err := c.Obtain(context.Background(), i, req, always)
				if err != nil {
					t.Error(err)
				}
				tokens[i] = tok.AccessToken
			}()
		}
		wg.Wait()
		if got := p.calls.Load(); got != 1 {
			t.Fatalf("provider calls = %d, want 1", got)
		}
		for _, tok := range tokens {
			if tok != tokens[0] {
				t.Fatalf("callers got different tokens")
			}
		}
	})

	t.Run("a token the caller cannot use is replaced", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(t0)
		p := &countingProvider{clock: clk}
		c := NewSharedCache(p, clk, nil, SharedCacheOptions{})
		first, _, _ := c.Obtain(context.Background(), "w", req, always)
		notBefore := func(t Token) bool { return t.IssuedAt.After(first.IssuedAt) }
		clk.Step(time.Minute)
		second, shared, err := c.Obtain(context.Background(), "w", req, notBefore)
		if err != nil || shared || second.AccessToken == first.AccessToken {
			t.Fatalf("want a new exchange, got err=%v shared=%v", err, shared)
		}
		third, _, _ := c.Obtain(context.Background(), "w", req, always)
		if third.AccessToken != second.AccessToken {
			t.Fatalf("the cache must hold the newest token")
		}
	})

	t.Run("different identities do not share", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(t0)
		p := &countingProvider{clock: clk}
		c := NewSharedCache(p, clk, nil, SharedCacheOptions{})
		other := req
		other.ClientSecret = "rotated"
		a, _, _ := c.Obtain(context.Background(), "w", req, always)
		b, _, _ := c.Obtain(context.Background(), "w", other, always)
		if a.AccessToken == b.AccessToken || p.calls.Load() != 2 {
			t.Fatalf("a rotated secret must not reuse the old secret's token")
		}
	})

	t.Run("expired tokens are dropped", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(t0)
		p := &countingProvider{clock: clk}
		c := NewSharedCache(p, clk, nil, SharedCacheOptions{})
		_, _, _ = c.Obtain(context.Background(), "w", req, always)
		if c.Len() != 1 {
			t.Fatalf("Len = %d, want 1", c.Len())
		}
		clk.Step(time.Hour)
		if c.Len() != 0 {
			t.Fatalf("an expired token is still cached")
		}
		_, shared, _ := c.Obtain(context.Background(), "w", req, always)
		if shared || p.calls.Load() != 2 {
			t.Fatalf("an expired token was handed out")
		}
	})

	t.Run("errors are not cached", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(t0)
		p := &countingProvider{clock: clk, fail: errors.New("boom")}
		c := NewSharedCache(p, clk, nil, SharedCacheOptions{})
		for range 2 {
			if _, _, err := c.Obtain(context.Background(), "w", req, always); err == nil {
				t.Fatal("want the provider's error")
			}
		}
		if p.calls.Load() != 2 || c.Len() != 0 {
			t.Fatalf("calls=%d len=%d, want 2 and 0", p.calls.Load(), c.Len())
		}
	})

	t.Run("keyed by hash, never by the secret", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(t0)
		c := NewSharedCache(&countingProvider{clock: clk}, clk, nil, SharedCacheOptions{})
		_, _, _ = c.Obtain(context.Background(), "w", req, always)
		for k := range c.entries {
			if strings.Contains(k, req.ClientSecret) || k != req.Hash() {
				t.Fatalf("cache key is not the request hash")
			}
		}
	})
}

// gatedProvider answers when its gate opens (a hanging endpoint until then), counting calls and
// the largest number it held at once.
type gatedProvider struct {
	clock          *clocktesting.FakeClock
	gate           chan struct{}
	calls, holding atomic.Int32
	mu             sync.Mutex
	peak           int32
}

func (p *gatedProvider) Token(ctx context.Context, req Request) (Token, error) {
	p.calls.Add(1)
	n := p.holding.Add(1)
	p.mu.Lock()
	p.peak = max(p.peak, n)
	p.mu.Unlock()
	defer p.holding.Add(-1)
	select {
	case <-p.gate:
	case <-ctx.Done():
		return Token{}, ctx.Err()
	}
	now := p.clock.Now()
	return Token{AccessToken: "tok-" + req.ClientID, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, nil
}

func TestSharedCacheNeverHoldsCallersForASlowEndpoint(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	hanging := func(id string) Request {
		return Request{Kind: KindOAuth2, TokenURL: "https://idp.example.com:8443/token", ClientID: id, ClientSecret: "s"}
	}
	clk := clocktesting.NewFakeClock(t0)
	p := &gatedProvider{clock: clk, gate: make(chan struct{})}
	notified := make(chan any, 100)
	c := NewSharedCache(p, clk, nil, SharedCacheOptions{ExchangesPerHost: 2, Wait: 50 * time.Millisecond,
		Notify: func(w any) { notified <- w }})

	t.Run("a caller waits briefly, then is told the exchange is pending", func(t *testing.T) {
		start := time.Now()
		_, _, err := c.Obtain(context.Background(), "cred-1", hanging("a"), always)
		if !errors.Is(err, ErrPending) {
			t.Fatalf("err = %v, want ErrPending", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("Obtain held the caller %s", took)
		}
	})
	t.Run("a second caller of the same identity joins without waiting again", func(t *testing.T) {
		time.Sleep(60 * time.Millisecond) // past the wait of an exchange this old
		start := time.Now()
		if _, _, err := c.Obtain(context.Background(), "cred-2", hanging("a"), always); !errors.Is(err, ErrPending) {
			t.Fatalf("err = %v, want ErrPending", err)
		}
		if took := time.Since(start); took > 20*time.Millisecond {
			t.Fatalf("a caller joining a long-running exchange waited %s", took)
		}
		if got := p.calls.Load(); got != 1 {
			t.Fatalf("provider calls = %d, want one per identity", got)
		}
	})
	t.Run("identities beyond the endpoint's slots queue, and their callers are not held", func(t *testing.T) {
		for _, id := range []string{"b", "c", "d"} {
			start := time.Now()
			if _, _, err := c.Obtain(context.Background(), "cred-"+id, hanging(id), always); !errors.Is(err, ErrPending) {
				t.Fatalf("err = %v, want ErrPending", err)
			}
			if id != "b" && time.Since(start) > 20*time.Millisecond {
				t.Fatalf("a queued exchange held its caller")
			}
		}
		time.Sleep(20 * time.Millisecond)
		if got := p.holding.Load(); got != 2 {
			t.Fatalf("%d exchanges hold the endpoint, want its 2 slots", got)
		}
		if c.InFlight() != 4 {
			t.Fatalf("InFlight = %d, want 4 identities running or queued", c.InFlight())
		}
	})
	t.Run("another endpoint is served at once", func(t *testing.T) {
		fast := &countingProvider{clock: clk}
		stuck := &gatedProvider{clock: clk, gate: make(chan struct{})}
		defer close(stuck.gate)
		other := NewSharedCache(routing{"https://idp.example.com:8443": stuck, "https://other.example.com": fast}, clk, nil,
			SharedCacheOptions{ExchangesPerHost: 1, Wait: time.Second})
		if _, _, err := other.Obtain(context.Background(), "x", hanging("z"), always); !errors.Is(err, ErrPending) {
			t.Fatalf("err = %v, want ErrPending", err)
		}
		tok, _, err := other.Obtain(context.Background(), "y", Request{Kind: KindOAuth2, TokenURL: "https://other.example.com/token", ClientID: "y"}, always)
		if err != nil || tok.AccessToken == "" {
			t.Fatalf("the other endpoint: %v", err)
		}
	})
	t.Run("when the endpoint answers, every waiter is notified and collects the result once", func(t *testing.T) {
		close(p.gate)
		want := map[any]bool{"cred-1": true, "cred-2": true, "cred-b": true, "cred-c": true, "cred-d": true}
		deadline := time.After(5 * time.Second)
		for len(want) > 0 {
			select {
			case w := <-notified:
				delete(want, w)
			case <-deadline:
				t.Fatalf("not notified: %v", want)
			}
		}
		tok, shared, err := c.Obtain(context.Background(), "cred-2", hanging("a"), func(Token) bool { return false })
		if err != nil || tok.AccessToken != "tok-a" || !shared {
			t.Fatalf("cred-2 collects the shared result: %v shared=%v", err, shared)
		}
		if p.peak > 2 {
			t.Fatalf("%d exchanges held the endpoint at once, want at most 2", p.peak)
		}
		if got := p.calls.Load(); got != 4 {
			t.Fatalf("provider calls = %d, want one per identity (a, b, c, d)", got)
		}
	})
}

// routing sends each request to the provider of its endpoint.
type routing map[string]Provider

func (r routing) Token(ctx context.Context, req Request) (Token, error) {
	for prefix, p := range r {
		if strings.HasPrefix(req.TokenURL, prefix) {
			return p.Token(ctx, req)
		}
	}
	return Token{}, errors.New("no provider")
}
