package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
)

// jwtPattern matches a JWT (three base64url segments, the header starting with `{"`). Anything
// the narrator prints passes through it, so no token is ever printed in full, whatever a caller
// passes in.
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)

// narrator prints timestamped lines. It masks every JWT and every token registered with hide.
type narrator struct {
	mu     sync.Mutex
	out    io.Writer
	now    func() time.Time
	hidden []string
}

func newNarrator(out io.Writer) *narrator { return &narrator{out: out, now: time.Now} }

// hide registers a secret value to be masked wherever it appears, JWT or not.
func (n *narrator) hide(secret string) {
	if secret == "" {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.hidden = append(n.hidden, secret)
}

// say prints one line: "[15:04:05] text".
func (n *narrator) say(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fmt.Fprintf(n.out, "[%s] %s\n", n.now().Format("15:04:05"), n.redactLocked(fmt.Sprintf(format, args...)))
}

// block prints text indented under the previous line, without timestamps.
func (n *narrator) block(text string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(n.redactLocked(text), "\n"), "\n") {
		fmt.Fprintf(n.out, "           %s\n", line)
	}
}

func (n *narrator) redactLocked(s string) string {
	for _, h := range n.hidden {
		s = strings.ReplaceAll(s, h, mask(h))
	}
	return jwtPattern.ReplaceAllStringFunc(s, mask)
}

// mask shows enough of a token to tell two apart (its first characters, its length and a short
// SHA-256 fingerprint) and nothing that could be used. All Entra tokens start with the same
// header, so the fingerprint is what shows that a refresh changed the token.
func mask(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	prefix := ""
	if len(tok) >= 24 {
		prefix = tok[:6]
	}
	return fmt.Sprintf("%s…[%d chars, #%x]", prefix, len(tok), sum[:4])
}

// when formats t as a wall-clock time with how far away it is: "12:03:04 (in 1m0s)".
func when(t, now time.Time) string {
	d := t.Sub(now).Round(time.Second)
	rel := "in " + d.String()
	if d < 0 {
		rel = (-d).String() + " ago"
	}
	return fmt.Sprintf("%s (%s)", t.Local().Format("15:04:05"), rel)
}
