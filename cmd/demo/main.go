// Command demo shows the operator at work with no cluster and no Databricks account: it starts a
// kube-apiserver and etcd (envtest), a fake Entra ID and a fake Azure Databricks workspace, runs
// the manager in-process, applies a DatabricksCredential and narrates what happens, including a
// "consumer" that uses the Secret the way a dbt pod would.
//
//	make demo                      # until Ctrl-C
//	make demo DEMO_DURATION=200s   # stops by itself
//
// Flags (each also read from the environment variable named in its help):
//
//	-duration        DEMO_DURATION        how long to run once the credential is applied (0: until Ctrl-C)
//	-token-lifetime  DEMO_TOKEN_LIFETIME  lifetime of the tokens the fake Entra ID issues (default 2m)
//	-renew-before    DEMO_RENEW_BEFORE    the credential's spec.renewBefore (default 1m)
//
// KUBEBUILDER_ASSETS, when set, names the kube-apiserver and etcd binaries; otherwise
// hack/setup-envtest.sh builds them (several minutes, first run only).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default behaviour: a second Ctrl-C kills at once.
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// parseConfig reads flags, with defaults from the environment.
func parseConfig(args []string, getenv func(string) string, errOut io.Writer) (Config, error) {
	cfg := Config{AssetsDir: getenv("KUBEBUILDER_ASSETS")}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(errOut)
	durations := []struct {
		dst  *time.Duration
		name string
		env  string
		def  time.Duration
		help string
	}{
		{&cfg.Duration, "duration", "DEMO_DURATION", 0, "how long to run once the credential is applied; 0 runs until Ctrl-C"},
		{&cfg.TokenLifetime, "token-lifetime", "DEMO_TOKEN_LIFETIME", DefaultTokenLifetime, "lifetime of the tokens the fake Entra ID issues"},
		{&cfg.RenewBefore, "renew-before", "DEMO_RENEW_BEFORE", DefaultRenewBefore, "spec.renewBefore of the demo credential"},
	}
	for _, d := range durations {
		def := d.def
		if v := getenv(d.env); v != "" {
			parsed, err := time.ParseDuration(v)
			if err != nil {
				fmt.Fprintf(errOut, "demo: %s=%q is not a Go duration (e.g. 200s, 3m): %v\n", d.env, v, err)
				return Config{}, err
			}
			def = parsed
		}
		fs.DurationVar(d.dst, d.name, def, d.help+" (env "+d.env+")")
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected arguments: %v", fs.Args())
		fmt.Fprintln(errOut, "demo:", err)
		return Config{}, err
	}
	return cfg, nil
}
