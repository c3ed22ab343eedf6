package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// narrator prints timestamped progress lines, like `make demo`.
type narrator struct {
	mu    sync.Mutex
	out   io.Writer
	start time.Time
}

func newNarrator(out io.Writer) *narrator { return &narrator{out: out, start: time.Now()} }

func (n *narrator) say(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	fmt.Fprintf(n.out, "[%s] local-cluster: %s (+%.1fs)\n", now.Format("15:04:05"), fmt.Sprintf(format, args...), now.Sub(n.start).Seconds())
}
