// Command consumer is the job of the cluster test's CronJob: it uses the operator's token Secret
// the two ways job pods do — the Databricks CLI and SDKs read DATABRICKS_HOST and DATABRICKS_TOKEN
// from the environment (envFrom), dbt-style tools read a mounted key — and calls the workspace
// with each. It prints "connection ok" and a short fingerprint of each token (never the token),
// so the test can tell which token a pod started with.
//
// Environment: DATABRICKS_HOST, DATABRICKS_TOKEN (envFrom the Secret); TOKEN_FILE, the mounted
// DATABRICKS_TOKEN key; SSL_CERT_FILE, the CA that signed the workspace's certificate.
package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dbtoken/databricks-token-operator/test/workspace"
)

func main() {
	if err := run(); err != nil {
		fmt.Println("connection failed:", err)
		os.Exit(1)
	}
}

func run() error {
	host := os.Getenv("DATABRICKS_HOST")
	envToken := os.Getenv("DATABRICKS_TOKEN")
	if host == "" || envToken == "" {
		return fmt.Errorf("DATABRICKS_HOST or DATABRICKS_TOKEN is not set (envFrom the token Secret)")
	}
	file := os.Getenv("TOKEN_FILE")
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading the mounted token (TOKEN_FILE): %w", err)
	}
	fileToken := strings.TrimSpace(string(b))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: 10 * time.Second} // system roots: SSL_CERT_FILE
	user, err := workspace.CurrentUser(ctx, hc, host, envToken)
	if err != nil {
		return fmt.Errorf("with the environment's token: %w", err)
	}
	if _, err := workspace.CurrentUser(ctx, hc, host, fileToken); err != nil {
		return fmt.Errorf("with the mounted token: %w", err)
	}
	fmt.Printf("env-token=%s file-token=%s user=%s\n", fingerprint(envToken), fingerprint(fileToken), user)
	fmt.Println("connection ok")
	return nil
}

// fingerprint identifies a token without revealing it: the first 12 hex digits of its SHA-256.
func fingerprint(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return fmt.Sprintf("%x", sum[:6])
}
