package tokenserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener records how many accepted connections are open, and the most at once.
type countingListener struct {
	net.Listener
	open, peak atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	n := l.open.Add(1)
	for {
		p := l.peak.Load()
		if n <= p || l.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// liveServer runs a fixture's handler on a real loopback listener with Serve.
type liveServer struct {
	*fixture
	addr string
	ln   *countingListener
	srv  *http.Server
}

func startLive(t *testing.T, f *fixture, maxConns int, tweak func(*http.Server)) *liveServer {
	t.Helper()
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv := NewServer(f.h, log.New(io.Discard, "", 0))
	if tweak != nil {
		tweak(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cl, srv, maxConns) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &liveServer{fixture: f, addr: ln.Addr().String(), ln: cl, srv: srv}
}

func (s *liveServer) url() string { return "http://" + s.addr + TokenPathPrefix + testPathSecret }

func (s *liveServer) get(ctx context.Context, hc *http.Client) (int, tokenResponse, errorResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url(), nil)
	if err != nil {
		return 0, tokenResponse{}, errorResponse{}, err
	}
	req.Header.Set(VersionHeader, Version)
	req.Header.Set(HostHeader, testHost)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, tokenResponse{}, errorResponse{}, err
	}
	defer resp.Body.Close()
	var ok tokenResponse
	var e errorResponse
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, ok, e, err
	}
	if resp.StatusCode == http.StatusOK {
		err = json.Unmarshal(body, &ok)
	} else {
		err = json.Unmarshal(body, &e)
	}
	return resp.StatusCode, ok, e, err
}

// TestListenLoopbackOnly: anything but 127.0.0.1:PORT is refused before binding.
func TestListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{":0", "0.0.0.0:0", "localhost:0", "[::1]:0", "[::]:0", "10.1.2.3:0", "127.0.0.2:0", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000"} {
		if ln, err := Listen(addr); err == nil {
			ln.Close()
			t.Errorf("Listen(%q) succeeded", addr)
		}
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

// TestRequestStorm: hundreds of concurrent clients. The server answers every request with the
// token or a clear 503 busy, never reads the volume in more than MaxInFlight requests at once,
// never holds more than maxConns connections (each costs net/http one goroutine), and serves
// normally afterwards.
func TestRequestStorm(t *testing.T) {
	now := time.Now()
	tok := fakeJWT(now.Add(time.Hour))
	f := newFixture(t, secretData(tok, now.Add(time.Hour)), func(o *Options) {
		o.MaxInFlight = 4
		o.Now = time.Now
	})
	const maxConns = 16
	s := startLive(t, f, maxConns, nil)

	const clients, perClient = 200, 20
	var ok, busy, other, failed atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half reuse connections, half open one per request: both shapes of a storm.
			tr := &http.Transport{DisableKeepAlives: i%2 == 0, MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			for range perClient {
				status, got, e, err := s.get(ctx, hc)
				switch {
				case err != nil:
					failed.Add(1)
				case status == http.StatusOK && got.AccessToken == tok:
					ok.Add(1)
				case status == http.StatusServiceUnavailable && e.Error == CodeBusy:
					busy.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d requests: %d served, %d busy, %d other, %d failed; peak %d connections, %d concurrent volume reads",
		clients*perClient, ok.Load(), busy.Load(), other.Load(), failed.Load(), s.ln.peak.Load(), f.h.peak.Load())
	if failed.Load() != 0 || other.Load() != 0 {
		t.Errorf("every request must get the token or 503 busy")
	}
	if ok.Load() == 0 {
		t.Errorf("no request was served")
	}
	if p := f.h.peak.Load(); p > 4 {
		t.Errorf("%d volume reads at once, more than MaxInFlight 4", p)
	}
	if p := s.ln.peak.Load(); p > maxConns {
		t.Errorf("%d connections open at once, more than %d", p, maxConns)
	}
	status, got, _, err := s.get(context.Background(), &http.Client{Timeout: 5 * time.Second})
	if err != nil || status != http.StatusOK || got.AccessToken != tok {
		t.Fatalf("after the storm: %d %v", status, err)
	}
	if n := f.h.inFlight.Load(); n != 0 {
		t.Errorf("%d requests still counted in flight", n)
	}
}

// TestClientsThatNeverRead: connections that never send a full request, and a client that
// pipelines thousands of requests and never reads an answer, are cut off by the timeouts; other
// clients are served meanwhile, and the server holds no connection afterwards.
func TestClientsThatNeverRead(t *testing.T) {
	now := time.Now()
	tok := fakeJWT(now.Add(time.Hour))
	f := newFixture(t, secretData(tok, now.Add(time.Hour)), func(o *Options) { o.Now = time.Now })
	s := startLive(t, f, 16, func(srv *http.Server) {
		// The production values are a few seconds; shorter here to keep the test fast.
		srv.ReadHeaderTimeout = 500 * time.Millisecond
		srv.WriteTimeout = time.Second
	})

	// Silent connections: never a byte.
	var silent []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	// A half-sent request.
	half, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(half, "GET %s%s HTTP/1.1\r\nHost: 127.0.0.1\r\n", TokenPathPrefix, testPathSecret)
	// Pipelined requests whose answers are never read: far more than the socket buffers hold.
	hog, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	req := fmt.Sprintf("GET %s%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s: 1\r\n%s: %s\r\n\r\n", TokenPathPrefix, testPathSecret, VersionHeader, HostHeader, testHost)
	go func() {
		w := bufio.NewWriterSize(hog, 64<<10)
		for range 40000 {
			if _, err := w.WriteString(req); err != nil {
				return // the server closed the connection: expected
			}
		}
		_ = w.Flush()
	}()

	// Meanwhile a well-behaved client is served promptly.
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}
	for range 20 {
		start := time.Now()
		status, got, _, err := s.get(context.Background(), hc)
		if err != nil || status != http.StatusOK || got.AccessToken != tok {
			t.Fatalf("a good client beside the stalled ones: %d %v", status, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("a good request took %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	hc.CloseIdleConnections()

	// The server hangs up on all of them.
	for _, c := range append(silent, half) {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("the server kept a stalled connection open (read %q)", b)
		}
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.ln.open.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := s.ln.open.Load(); n != 0 {
		t.Errorf("%d connections still open on the server; the non-reading client was not cut off", n)
	}
	hog.Close()
	status, _, _, err := s.get(context.Background(), &http.Client{Timeout: 2 * time.Second})
	if err != nil || status != http.StatusOK {
		t.Fatalf("after the stalled clients: %d %v", status, err)
	}
}
