// Command manager runs the databricks-token-operator controller manager. It holds flags and
// wiring only; behaviour lives in controllers/ and internal/.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/controllers"
	"github.com/dbtoken/databricks-token-operator/internal/gcconfig"
	"github.com/dbtoken/databricks-token-operator/internal/kubecache"
	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// LeaderElectionID names the Lease that makes one replica the active writer.
const LeaderElectionID = "databricks-token-operator.dbtoken.io"

type options struct {
	metricsAddr             string
	probeAddr               string
	leaderElect             bool
	leaderElectionNamespace string
	secureMetrics           bool
	enableHTTP2             bool
	allowedTokenHosts       string
	tokenTimeout            time.Duration
	namespaces              string
	maxConcurrentReconciles int
	exchangesPerHost        int
	qps                     float64
	pprofAddr               string
	burst                   int
}

func main() {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", "0", "The address the metrics endpoint binds to, e.g. :8443 (https) or :8080 (http with --metrics-secure=false). 0 disables it.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "The address the health and readiness probes bind to.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Enable leader election, so that only one replica writes at a time.")
	flag.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader-election Lease. Default: the pod's namespace.")
	flag.BoolVar(&o.secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS with Kubernetes authentication and authorization.")
	flag.BoolVar(&o.enableHTTP2, "enable-http2", false, "Enable HTTP/2 for the metrics server (off by default: HTTP/2 Rapid Reset, CVE-2023-44487).")
	flag.StringVar(&o.allowedTokenHosts, "allowed-token-hosts", token.DefaultAllowedTokenHosts, "Comma-separated hosts that may receive client credentials; *.example.com matches any subdomain; ports are ignored.")
	flag.DurationVar(&o.tokenTimeout, "token-timeout", token.DefaultTimeout, "Timeout of one token exchange, connection included.")
	flag.StringVar(&o.namespaces, "namespaces", "", "Comma-separated namespaces to watch. Default: all namespaces.")
	flag.IntVar(&o.maxConcurrentReconciles, "max-concurrent-reconciles", 4, "How many credentials are reconciled in parallel. Token exchanges run apart from these workers: a slow or hanging token endpoint holds none of them.")
	flag.IntVar(&o.exchangesPerHost, "token-exchanges-per-host", token.DefaultExchangesPerHost, "Concurrent token exchanges per token endpoint (scheme, host and port); more wait for a slot, one exchange per identity.")
	// client-go applies the limit per resource type (one for Secrets, one for credential status,
	// ...). 200/300 is Karpenter's default; API Priority and Fairness protects the apiserver.
	// At 50 QPS, 10,000 credentials need 200 s just for their status writes (test/bench).
	flag.Float64Var(&o.qps, "kube-api-qps", 200, "Queries per second to the Kubernetes API, per resource type.")
	flag.IntVar(&o.burst, "kube-api-burst", 300, "Burst of queries to the Kubernetes API, per resource type.")
	flag.StringVar(&o.pprofAddr, "profiling-bind-address", "", "The address a pprof endpoint binds to, e.g. 127.0.0.1:6060, for heap and CPU profiles. Empty disables it.")
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	gc := gcconfig.Apply()
	ctrl.Log.WithName("setup").Info("garbage collector", "gcPercent", gc.GCPercent, "gcPercentFrom", gc.GCPercentFrom,
		"memoryLimitBytes", gc.MemoryLimit, "memoryLimitFrom", gc.MemoryLimitFrom)

	if err := run(ctrl.SetupSignalHandler(), o); err != nil {
		ctrl.Log.WithName("setup").Error(err, "manager exited")
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	log := ctrl.Log.WithName("setup")
	hosts, err := token.ParseHostPolicy(o.allowedTokenHosts)
	if err != nil {
		return fmt.Errorf("--allowed-token-hosts: %w", err)
	}
	if o.exchangesPerHost <= 0 {
		return fmt.Errorf("--token-exchanges-per-host must be positive, got %d", o.exchangesPerHost)
	}
	if o.tokenTimeout <= 0 {
		return fmt.Errorf("--token-timeout must be positive, got %s", o.tokenTimeout)
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))

	restConfig := ctrl.GetConfigOrDie()
	restConfig.QPS, restConfig.Burst = float32(o.qps), o.burst

	var tlsOpts []func(*tls.Config)
	if !o.enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.secureMetrics, TLSOpts: tlsOpts}
	if o.secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	namespaces := splitList(o.namespaces)
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		WebhookServer:                 webhook.NewServer(webhook.Options{TLSOpts: tlsOpts}),
		HealthProbeBindAddress:        o.probeAddr,
		PprofBindAddress:              o.pprofAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       o.leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         kubecache.ManagerCacheOptions(namespaces),
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	if err := controllers.Setup(ctx, mgr, controllers.Options{
		Namespaces:              namespaces,
		MaxConcurrentReconciles: o.maxConcurrentReconciles,
		ExchangesPerHost:        o.exchangesPerHost,
		TokenOptions:            token.Options{Timeout: o.tokenTimeout, AllowedHosts: hosts},
	}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	log.Info("starting manager", "namespaces", namespaces, "allowedTokenHosts", o.allowedTokenHosts, "tokenTimeout", o.tokenTimeout)
	return mgr.Start(ctx)
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}
