package tokenserver

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/net/netutil"
)

// Bounds of the work one connection or request can cause. Clients are SDKs on the loopback that
// send one small GET and read a ~2 KiB answer, so anything slower is broken or hostile.
const (
	ReadHeaderTimeout = 2 * time.Second
	ReadTimeout       = 5 * time.Second
	WriteTimeout      = 5 * time.Second
	IdleTimeout       = 30 * time.Second
	MaxHeaderBytes    = 8 << 10
	// DefaultMaxConns bounds open connections, and with them the goroutines net/http starts:
	// connections beyond it wait in the kernel's accept queue, not in the server's memory. An SDK
	// shares one token source per configuration, so a pod's clients hold a few connections.
	DefaultMaxConns = 16
	shutdownTimeout = 2 * time.Second
)

// Listen listens on addr, which must be 127.0.0.1:PORT (PORT 0 picks a free one). Any other
// address is refused: the server hands out a bearer token to whoever connects, so it must only be
// reachable from inside the pod's network namespace, and the Go SDK accepts only localhost and
// 127.0.0.1 metadata-service URLs anyway. (localhost is not accepted for listening: it may
// resolve to ::1 or to more than one address.)
func Listen(addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %v", addr, err)
	}
	if host != "127.0.0.1" {
		return nil, fmt.Errorf("listen address %q: the token server listens on 127.0.0.1 only", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("listen address %q: invalid port", addr)
	}
	return net.Listen("tcp4", addr)
}

// NewServer returns an http.Server for h with the bounds above; errLog receives net/http's own
// errors (they never contain a token: no request or response body is logged).
func NewServer(h http.Handler, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          errLog,
	}
}

// Serve serves on ln, at most maxConns connections at a time (DefaultMaxConns when <= 0), until
// ctx ends; then it stops accepting and gives open requests a moment to finish.
func Serve(ctx context.Context, ln net.Listener, srv *http.Server, maxConns int) error {
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(netutil.LimitListener(ln, maxConns)) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
