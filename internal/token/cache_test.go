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
		c := NewSharedCache(p, clk, nil)
		first, shared, err := c.Token(context.Background(), req, always)
		if err != nil || shared {
			t.Fatalf("first call: err=%v shared=%v", err, shared)
		}
		second, shared, err := c.Token(context.Background(), req, always)
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
		c := NewSharedCache(p, clk, nil)
		var wg sync.WaitGroup
		tokens := make([]string, 20)
		for i := range tokens {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, _, err := c.Token(context.Background(), req, always)
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
		c := NewSharedCache(p, clk, nil)
		first, _, _ := c.Token(context.Background(), req, always)
		notBefore := func(t Token) bool { return t.IssuedAt.After(first.IssuedAt) }
		clk.Step(time.Minute)
		second, shared, err := c.Token(context.Background(), req, notBefore)
		if err != nil || shared || second.AccessToken == first.AccessToken {
			t.Fatalf("want a new exchange, got err=%v shared=%v", err, shared)
		}
		third, _, _ := c.Token(context.Background(), req, always)
		if third.AccessToken != second.AccessToken {
			t.Fatalf("the cache must hold the newest token")
		}
	})

	t.Run("different identities do not share", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(t0)
		p := &countingProvider{clock: clk}
		c := NewSharedCache(p, clk, nil)
		other := req
		other.ClientSecret = "rotated"
		a, _, _ := c.Token(context.Background(), req, always)
		b, _, _ := c.Token(context.Background(), other, always)
		if a.AccessToken == b.AccessToken || p.calls.Load() != 2 {
			t.Fatalf("a rotated secret must not reuse the old secret's token")
		}
	})

	t.Run("expired tokens are dropped", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(t0)
		p := &countingProvider{clock: clk}
		c := NewSharedCache(p, clk, nil)
		_, _, _ = c.Token(context.Background(), req, always)
		if c.Len() != 1 {
			t.Fatalf("Len = %d, want 1", c.Len())
		}
		clk.Step(time.Hour)
		if c.Len() != 0 {
			t.Fatalf("an expired token is still cached")
		}
		_, shared, _ := c.Token(context.Background(), req, always)
		if shared || p.calls.Load() != 2 {
			t.Fatalf("an expired token was handed out")
		}
	})

	t.Run("errors are not cached", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(t0)
		p := &countingProvider{clock: clk, fail: errors.New("boom")}
		c := NewSharedCache(p, clk, nil)
		for range 2 {
			if _, _, err := c.Token(context.Background(), req, always); err == nil {
				t.Fatal("want the provider's error")
			}
		}
		if p.calls.Load() != 2 || c.Len() != 0 {
			t.Fatalf("calls=%d len=%d, want 2 and 0", p.calls.Load(), c.Len())
		}
	})

	t.Run("keyed by hash, never by the secret", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(t0)
		c := NewSharedCache(&countingProvider{clock: clk}, clk, nil)
		_, _, _ = c.Token(context.Background(), req, always)
		for k := range c.entries {
			if strings.Contains(k, req.ClientSecret) || k != req.Hash() {
				t.Fatalf("cache key is not the request hash")
			}
		}
	})
}
