// Command token-server is a sidecar that hands the token of a mounted token Secret to the
// Databricks SDKs (DATABRICKS_AUTH_TYPE=metadata-service), reading the Secret on every request, so
// that a job which runs longer than one token gets each new token the operator writes.
//
// It imports no Kubernetes client: all it needs is the Secret volume, and it stays a few MiB.
//
//	token-server [flags]          serve
//	token-server probe [--listen] exit 0 when a token can be served (for an exec startupProbe:
//	                              the server listens on the pod's loopback, which an httpGet
//	                              probe, sent from the node, cannot reach)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dbtoken/databricks-token-operator/internal/tokenserver"
)

// defaultExpiresAtKey is v1alpha1.DefaultExpiresAtKey, the key the operator writes the expiry
// under. It is spelled out (and checked by a test) because importing the API package would link
// the Kubernetes libraries into this few-MiB binary.
const defaultExpiresAtKey = "DATABRICKS_TOKEN_EXPIRES_AT"

// PathSecretEnv holds the secret path segment unless --path-secret-file is given. The samples set
// it, and the client's DATABRICKS_METADATA_SERVICE_URL, from the pod's UID.
const PathSecretEnv = "TOKEN_SERVER_PATH_SECRET"

const defaultListen = "127.0.0.1:8765"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "probe" {
		return probe(ctx, args[1:], stderr)
	}
	fs := flag.NewFlagSet("token-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", defaultListen, "address to listen on; must be 127.0.0.1:PORT")
	dir := fs.String("secret-dir", "/var/run/secrets/dbtoken", "mount path of the token Secret volume (the whole Secret, not a subPath)")
	tokenKey := fs.String("token-key", "DATABRICKS_TOKEN", "Secret key holding the token")
	expiresKey := fs.String("expires-at-key", defaultExpiresAtKey, "Secret key holding the token's expiry (RFC 3339); when absent, the JWT exp claim is used; empty: never read")
	hostKey := fs.String("host-key", "DATABRICKS_HOST", "Secret key holding the workspace URL served (ignored with --host)")
	host := fs.String("host", "", "workspace URL served, when the Secret has no host key (e.g. a target.data template)")
	pathSecretFile := fs.String("path-secret-file", "", "file holding the secret path segment (default: the "+PathSecretEnv+" environment variable)")
	minRemaining := fs.Duration("min-remaining", tokenserver.DefaultMinRemaining, "refuse a token with less life left than this (Azure Databricks refuses tokens with 30s or less); 0 refuses only expired tokens")
	maxConns := fs.Int("max-connections", tokenserver.DefaultMaxConns, "open connections served at once; more wait in the accept queue")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "token-server: unexpected arguments %q\n", fs.Args())
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))

	secret, err := pathSecret(*pathSecretFile, getenv)
	if err != nil {
		logger.Error("configuration", "error", err.Error())
		return 2
	}
	margin := *minRemaining
	if margin == 0 {
		margin = -1 // in Options, negative means "expired tokens only" and 0 the default
	}
	h, err := tokenserver.New(tokenserver.Options{
		Volume:       tokenserver.Volume{Dir: *dir, TokenKey: *tokenKey, ExpiresKey: *expiresKey, HostKey: *hostKey},
		PathSecret:   secret,
		Host:         *host,
		MinRemaining: margin,
		Logger:       logger,
	})
	if err != nil {
		logger.Error("configuration", "error", err.Error())
		return 2
	}
	ln, err := tokenserver.Listen(*listen)
	if err != nil {
		logger.Error("listen", "error", err.Error())
		return 1
	}
	logger.Info("listening", "address", ln.Addr().String(), "tokenPath", tokenserver.TokenPathPrefix+"<path secret>",
		"readyPath", tokenserver.ReadyPath, "secretDir", *dir, "tokenKey", *tokenKey, "expiresAtKey", *expiresKey,
		"hostKey", hostKeyInUse(*host, *hostKey), "host", *host, "minRemaining", minRemaining.String())
	srv := tokenserver.NewServer(h, slog.NewLogLogger(logger.Handler(), slog.LevelWarn))
	if err := tokenserver.Serve(ctx, ln, srv, *maxConns); err != nil {
		logger.Error("serve", "error", err.Error())
		return 1
	}
	logger.Info("stopped")
	return 0
}

func hostKeyInUse(host, key string) string {
	if host != "" {
		return ""
	}
	return key
}

// pathSecret reads the secret path segment from the file, or from the environment. A file is for
// a segment kept in a Secret; the environment for one derived from the pod (its UID).
func pathSecret(file string, getenv func(string) string) (string, error) {
	if file == "" {
		s := strings.TrimSpace(getenv(PathSecretEnv))
		if s == "" {
			return "", fmt.Errorf("no path secret: set %s (the samples use the pod UID) or --path-secret-file", PathSecretEnv)
		}
		return s, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("--path-secret-file: %v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return "", fmt.Errorf("--path-secret-file: %v", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// probe asks the server's readiness path and exits 0 when it answers 200; otherwise it prints the
// server's reason, which the kubelet records in the pod's events. The answer never holds a token.
func probe(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("token-server probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", defaultListen, "address the server listens on")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*listen+tokenserver.ReadyPath, nil)
	if err != nil {
		fmt.Fprintln(stderr, "probe:", err)
		return 2
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "probe:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "probe: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	return 0
}
