package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// observation is one token seen in a Secret.
type observation struct {
	at  time.Time // when it was first seen
	fp  string    // fingerprint
	exp time.Time // its exp claim
}

// secretMonitor reads every target Secret of a namespace twice a second and records each token
// it sees, and any moment a Secret held a token past its exp: what a job pod starting at that
// moment would have been given.
type secretMonitor struct {
	ns   string
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	history    map[string][]observation // Secret name → tokens in the order seen
	violations []string
	minLeft    time.Duration // the shortest remaining lifetime seen
	reads      int
}

func startMonitor(ns string) *secretMonitor {
	m := &secretMonitor{ns: ns, stop: make(chan struct{}), done: make(chan struct{}), history: map[string][]observation{}, minLeft: time.Hour}
	go m.loop()
	return m
}

func (m *secretMonitor) loop() {
	defer close(m.done)
	for {
		m.poll()
		select {
		case <-m.stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (m *secretMonitor) poll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := cs.CoreV1().Secrets(m.ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelCredential})
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		return // the API server is busy: the next poll tells
	}
	m.reads++
	for _, s := range list.Items {
		tok := string(s.Data[v1alpha1.DefaultTokenKey])
		exp, err := jwtExpiry(tok)
		if err != nil {
			m.violations = append(m.violations, fmt.Sprintf("%s at %s: token %s unreadable: %v", s.Name, now.Format("15:04:05.0"), fingerprint(tok), err))
			continue
		}
		if left := exp.Sub(now); left < m.minLeft {
			m.minLeft = left
		}
		if !exp.After(now) {
			m.violations = append(m.violations, fmt.Sprintf("%s at %s held token %s, expired at %s", s.Name, now.Format("15:04:05.0"), fingerprint(tok), exp.Format("15:04:05")))
		}
		h := m.history[s.Name]
		if fp := fingerprint(tok); len(h) == 0 || h[len(h)-1].fp != fp {
			m.history[s.Name] = append(h, observation{at: now, fp: fp, exp: exp})
		}
	}
}

// finish stops the monitor and returns what went wrong.
func (m *secretMonitor) finish() []string {
	close(m.stop)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.violations...)
}

// current is the fingerprint of the token last seen in a Secret.
func (m *secretMonitor) current(name string) (observation, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.history[name]
	if len(h) == 0 {
		return observation{}, false
	}
	return h[len(h)-1], true
}

// replacedSince reports whether a Secret got a new token after t.
func (m *secretMonitor) replacedSince(name string, t time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.history[name]
	for i, o := range h {
		if i > 0 && o.at.After(t) {
			return true
		}
	}
	return false
}

// seen reports whether fp was ever in the Secret, and when first.
func (m *secretMonitor) seen(name, fp string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.history[name] {
		if o.fp == fp {
			return o.at, true
		}
	}
	return time.Time{}, false
}

func (m *secretMonitor) summary() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.history) == 0 {
		return fmt.Sprintf("%d reads, no target Secret seen", m.reads)
	}
	s := fmt.Sprintf("%d reads; shortest remaining lifetime seen %s; tokens per Secret:", m.reads, m.minLeft.Round(time.Second))
	for name, h := range m.history {
		s += fmt.Sprintf(" %s=%d", name, len(h))
	}
	return s
}
