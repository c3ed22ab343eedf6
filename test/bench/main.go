// Command bench measures the operator at scale: it starts a control plane (envtest: etcd and
// kube-apiserver) and the test identity provider, builds the manager binary and runs it as a
// separate process, creates many DatabricksCredentials, and reports how long they take to
// become Ready, how many token requests, Secret writes and status writes they cost, and how much
// memory the manager uses, also after a restart and with many unrelated Secrets in the cluster,
// and what a routine refresh costs in API writes.
//
// It measures whatever the code does; it never adjusts the operator. Figures and how to read
// them are in docs/performance.md.
//
//	go run ./test/bench                                  # N=1000, M=20, K=2000
//	go run ./test/bench -n 100 -m 10 -skip-unrelated-phase
//	go run ./test/bench -n 10000 -m 100 -k 10000
//	go run ./test/bench -n 100 -m 10 -skip-unrelated-phase -refresh-window 10m
//
// Phases:
//
//  1. create: with the manager running, N credentials (spread over M service principals and a
//     few namespaces) are created as fast as the creation clients go; measured from the start of
//     the burst until every credential is Ready, then until the manager is quiet.
//  2. restart: the manager is stopped (SIGTERM), every credential's status is wiped (so that
//     "Ready again" can be observed), and a new manager is started. Tokens are fresh, so it
//     should make no token request.
//  3. unrelated: a fresh manager is started and settles; then K unrelated 64 KiB Secrets are
//     created in the same namespaces, and the manager settles again. The difference in memory
//     is what unrelated Secrets cost. Skipped with -skip-unrelated-phase or -k 0.
//  4. refresh: on the running manager, the IdP's token lifetime is set to -refresh-lifetime, and
//     -refresh-n credentials over -refresh-m new service principals (in namespaces of their own,
//     so that the shared token cache holds no hour-long token for them) are created. Once all
//     are Ready and their first issuance is written, a window of -refresh-window is observed in
//     which only routine refreshes happen: token requests, Secret, status and Event writes of
//     those credentials, per routine refresh (one Secret update of one credential). The manager
//     never settles in this phase. Skipped with -skip-refresh-phase or -refresh-n 0.
//
// Everything listens on 127.0.0.1. Every child process (manager, etcd, kube-apiserver) is
// stopped on exit, on -timeout, and on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type config struct {
	N, M, K             int
	Namespaces          int
	Concurrency         int
	ClientQPS           float64
	ClientBurst         int
	JSONPath            string
	SkipUnrelated       bool
	Timeout             time.Duration
	Poll                time.Duration
	ReadyPoll           time.Duration
	Quiet               time.Duration
	SettleMax           time.Duration
	ManagerArgs         []string
	ManagerEnv          []string
	ManagerBinary       string
	UnrelatedSecretSize int
	Label               string
	SkipRefresh         bool
	RefreshN, RefreshM  int
	RefreshLifetime     time.Duration
	RefreshWindow       time.Duration
}

func main() {
	var c config
	var managerArgs, managerEnv string
	flag.IntVar(&c.N, "n", 1000, "number of DatabricksCredentials")
	flag.IntVar(&c.M, "m", 20, "number of service principals (unique identities) the credentials are spread over")
	flag.IntVar(&c.K, "k", 2000, "number of unrelated 64 KiB Secrets created in the unrelated phase (e.g. 10000)")
	flag.IntVar(&c.Namespaces, "namespaces", 4, "number of namespaces the service principals and credentials are spread over")
	flag.IntVar(&c.Concurrency, "concurrency", 32, "parallel creation clients (creation bursts and status wipes)")
	flag.Float64Var(&c.ClientQPS, "client-qps", 500, "client-side QPS of the benchmark's own Kubernetes client")
	flag.IntVar(&c.ClientBurst, "client-burst", 1000, "client-side burst of the benchmark's own Kubernetes client")
	flag.StringVar(&c.JSONPath, "json", "", "write the results as JSON to this file (default: bench-results.json in the run's temp directory)")
	flag.BoolVar(&c.SkipUnrelated, "skip-unrelated-phase", false, "skip the phase with K unrelated Secrets")
	flag.DurationVar(&c.Timeout, "timeout", 15*time.Minute, "global timeout; when it passes, what was measured so far is reported")
	flag.DurationVar(&c.Poll, "poll", 250*time.Millisecond, "interval of the memory and CPU samples")
	flag.DurationVar(&c.ReadyPoll, "ready-poll", 0, "interval of the Ready poll (a server-side list of all credentials); 0: 250ms per 1000 credentials, at least 250ms")
	flag.DurationVar(&c.Quiet, "quiet", 10*time.Second, "settled means: no write by the manager and (almost) no manager CPU for this long")
	flag.DurationVar(&c.SettleMax, "settle-max", 3*time.Minute, "give up waiting for the manager to settle after this long (reported as not settled)")
	flag.StringVar(&managerEnv, "manager-env", "", "extra environment of the manager only, space-separated NAME=value (e.g. \"GOGC=100\"); the envtest apiserver and etcd do not get it")
	flag.StringVar(&c.ManagerBinary, "manager-binary", "", "run this manager binary instead of building ./cmd/manager, e.g. an older commit's build, to compare commits on the same harness")
	flag.StringVar(&managerArgs, "manager-args", "", "extra flags for the manager, space-separated (e.g. \"--max-concurrent-reconciles=8 --kube-api-qps=200\"); default: the manager's defaults")
	flag.IntVar(&c.UnrelatedSecretSize, "unrelated-size", 64<<10, "data bytes per unrelated Secret")
	flag.StringVar(&c.Label, "label", "", "free text recorded with the results, e.g. the commit measured when running outside a git checkout")
	flag.BoolVar(&c.SkipRefresh, "skip-refresh-phase", false, "skip the phase that observes routine refreshes")
	flag.IntVar(&c.RefreshN, "refresh-n", 100, "refresh phase: number of DatabricksCredentials (0 skips the phase)")
	flag.IntVar(&c.RefreshM, "refresh-m", 10, "refresh phase: number of new service principals they are spread over")
	flag.DurationVar(&c.RefreshLifetime, "refresh-lifetime", time.Minute, "refresh phase: lifetime of the tokens the IdP issues (refreshed after about half of it)")
	flag.DurationVar(&c.RefreshWindow, "refresh-window", 3*time.Minute, "refresh phase: how long routine refreshes are observed after the first issuance")
	flag.Parse()
	c.ManagerArgs = strings.Fields(managerArgs)
	c.ManagerEnv = strings.Fields(managerEnv)
	if c.ReadyPoll == 0 {
		// A list of N credentials costs the apiserver time in proportion to N, on the same two
		// cores the manager and apiserver are measured on: at N=10,000 a 250 ms poll took more
		// apiserver CPU than the manager's own work. The watch timings are exact regardless;
		// the poll, which the verdicts use, can only be late by up to one interval.
		c.ReadyPoll = max(250*time.Millisecond, time.Duration(c.N)*250*time.Microsecond)
	}
	if err := c.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}

	// Ctrl-C and SIGTERM cancel the run; the deferred cleanup stops every child process. A
	// second signal ends the process at once (the manager dies with us through Pdeathsig).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, c)
	os.Exit(code)
}

func (c *config) validate() error {
	switch {
	case c.N < 1:
		return errors.New("-n must be at least 1")
	case c.M < 1:
		return errors.New("-m must be at least 1")
	case c.K < 0:
		return errors.New("-k must not be negative")
	case c.Namespaces < 1:
		return errors.New("-namespaces must be at least 1")
	case c.Concurrency < 1:
		return errors.New("-concurrency must be at least 1")
	case c.Timeout <= 0 || c.Poll <= 0 || c.ReadyPoll < 0 || c.Quiet <= 0:
		return errors.New("-timeout, -poll and -quiet must be positive, -ready-poll not negative")
	case c.RefreshN < 0:
		return errors.New("-refresh-n must not be negative")
	case c.refreshPhase() && c.RefreshM < 1:
		return errors.New("-refresh-m must be at least 1")
	case c.refreshPhase() && c.RefreshLifetime < 10*time.Second:
		// Refreshed after half the lifetime, and the first issuance of the phase has to be
		// written before the first routine refresh comes.
		return errors.New("-refresh-lifetime must be at least 10s")
	case c.refreshPhase() && c.RefreshWindow <= 0:
		return errors.New("-refresh-window must be positive")
	}
	if c.Namespaces > c.M {
		c.Namespaces = c.M // a namespace without a service principal would hold no credential
	}
	return nil
}

// refreshPhase reports whether the refresh phase runs.
func (c *config) refreshPhase() bool { return !c.SkipRefresh && c.RefreshN > 0 }

// refreshNamespaces is how many namespaces the refresh phase's service principals are spread over.
func (c *config) refreshNamespaces() int { return max(1, min(c.Namespaces, c.RefreshM)) }

// logf prints a progress line with the time since the program started.
var programStart = time.Now()

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%7.1fs] %s\n", time.Since(programStart).Seconds(), fmt.Sprintf(format, args...))
}
