// Package tokentest provides a fake token.Provider for unit and reconciler tests: it records the
// requests it was given and answers from a function field.
package tokentest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// Provider is a fake token.Provider. With TokenFunc nil it issues a unique token living Lifetime
// from Clock's now.
type Provider struct {
	Clock     clock.PassiveClock
	Lifetime  time.Duration
	TokenFunc func(ctx context.Context, req token.Request) (token.Token, error)

	mu       sync.Mutex
	requests []token.Request
	issued   []string
}

var _ token.Provider = (*Provider)(nil)

// Token records req and answers with TokenFunc or a fresh token.
func (p *Provider) Token(ctx context.Context, req token.Request) (token.Token, error) {
	p.mu.Lock()
	p.requests = append(p.requests, req)
	n := len(p.requests)
	fn := p.TokenFunc
	p.mu.Unlock()
	if fn != nil {
		t, err := fn(ctx, req)
		if err == nil {
			p.record(t.AccessToken)
		}
		return t, err
	}
	now := p.Clock.Now().Truncate(time.Second)
	t := token.Token{AccessToken: fmt.Sprintf("fake-token-%d-%d", n, now.UnixNano()), IssuedAt: now, ExpiresAt: now.Add(p.Lifetime)}
	p.record(t.AccessToken)
	return t, nil
}

func (p *Provider) record(tok string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issued = append(p.issued, tok)
}

// Requests returns a copy of the requests received so far.
func (p *Provider) Requests() []token.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]token.Request(nil), p.requests...)
}

// Calls is the number of Token calls so far.
func (p *Provider) Calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.requests)
}

// Issued returns every token handed out, so tests can assert none leaked.
func (p *Provider) Issued() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.issued...)
}
