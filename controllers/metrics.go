package controllers

import (
	"context"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// Per-credential metrics, in the habit of cert-manager's certificate_expiration_timestamp_seconds:
// alert on the timestamps rather than on logs. Labels are bounded — namespace, name, identity kind,
// reason — and never carry a host (hosts hold tenant IDs) or a client ID.
//
// The four status gauges are not stored: statusCollector computes them at scrape time from the
// credentials in the manager's cache (as cert-manager and kube-state-metrics do). Stored gauge
// vectors cost ~5 KiB of heap per credential (seven series with their label pairs), a third of the
// manager's memory at 10,000 credentials (test/bench), and needed bookkeeping to delete series.
// The attempts counter is kept in attemptCounts, a plain map (~100 bytes per credential instead
// of ~800 for a CounterVec series), and exported by the same collector.
var (
	expirationTimestamp = newScrapeGauge("dbtoken_credential_expiration_timestamp_seconds",
		"Expiry of the token in the credential's Secret, as a Unix timestamp (status.expiresAt).",
		[]string{"namespace", "name", "identity"})

	nextRefreshTimestamp = newScrapeGauge("dbtoken_credential_next_refresh_timestamp_seconds",
		"Next planned token request (refresh or retry), as a Unix timestamp (status.nextRefreshTime).",
		[]string{"namespace", "name", "identity"})

	readyStatus = newScrapeGauge("dbtoken_credential_ready_status",
		"The credential's Ready condition: 1 for the current status (True, False or Unknown), 0 for the others.",
		[]string{"namespace", "name", "identity", "condition"})

	consecutiveFailures = newScrapeGauge("dbtoken_credential_consecutive_failures",
		"Consecutive failed token requests of a credential (status.failedRefreshAttempts); 0 after a success.",
		[]string{"namespace", "name", "identity"})

	refreshAttempts = newScrapeCounter("dbtoken_credential_refresh_attempts_total",
		"Token refreshes attempted for a credential, by result (success or failure) and Ready reason; a token shared from another credential of the same identity counts as a success.",
		[]string{"namespace", "name", "identity", "result", "reason"})

	credentialStatus = &statusCollector{}
)

func init() {
	ctrlmetrics.Registry.MustRegister(credentialStatus)
}

// identityKind names the credential's identity block for metric labels.
func identityKind(spec *v1alpha1.DatabricksCredentialSpec) string {
	switch {
	case spec.Azure != nil:
		return "azure"
	case spec.Databricks != nil:
		return "databricks"
	case spec.OAuth2 != nil:
		return "oauth2"
	case spec.Federation != nil:
		return "federation"
	}
	return "unknown"
}

// scrapeMetric is a metric whose samples are computed at scrape time: its descriptor and type.
// (test/monitoring reads the newScrape* calls to check docs/monitoring.md.)
type scrapeMetric struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
}

func newScrapeGauge(name, help string, labels []string) scrapeMetric {
	return scrapeMetric{desc: prometheus.NewDesc(name, help, labels, nil), kind: prometheus.GaugeValue}
}

func newScrapeCounter(name, help string, labels []string) scrapeMetric {
	return scrapeMetric{desc: prometheus.NewDesc(name, help, labels, nil), kind: prometheus.CounterValue}
}

// sample is one value of m with the given label values.
func (m scrapeMetric) sample(v float64, labelValues ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(m.desc, m.kind, v, labelValues...)
}

var conditionValues = []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}

// statusCollector exports the status gauges of every credential in a manager's cache. The
// collector is registered once per process; each manager adds its cache when it starts and
// removes it when it stops (tests run several managers in one process), and the latest one
// that is running is read.
type statusCollector struct {
	mu      sync.Mutex
	readers []client.Reader
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range []scrapeMetric{expirationTimestamp, nextRefreshTimestamp, readyStatus, consecutiveFailures, refreshAttempts} {
		ch <- m.desc
	}
}

// Collect lists both kinds from the cache without copying them (read only) and emits their gauges.
// A cluster credential's series carry namespace="".
func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	attempts.collect(ch)
	reader := c.current()
	if reader == nil {
		return
	}
	ctx := context.Background()
	var creds v1alpha1.DatabricksCredentialList
	if err := reader.List(ctx, &creds, client.UnsafeDisableDeepCopy); err == nil {
		for i := range creds.Items {
			collectStatus(ch, &creds.Items[i].ObjectMeta, &creds.Items[i].Spec, &creds.Items[i].Status)
		}
	}
	var clusterCreds v1alpha1.ClusterDatabricksCredentialList
	if err := reader.List(ctx, &clusterCreds, client.UnsafeDisableDeepCopy); err == nil {
		for i := range clusterCreds.Items {
			cc := &clusterCreds.Items[i]
			collectStatus(ch, &cc.ObjectMeta, &credentialView(cc).Spec, &cc.Status.DatabricksCredentialStatus)
		}
	}
}

func collectStatus(ch chan<- prometheus.Metric, obj *metav1.ObjectMeta, spec *v1alpha1.DatabricksCredentialSpec, st *v1alpha1.DatabricksCredentialStatus) {
	kind := identityKind(spec)
	ch <- expirationTimestamp.sample(unixOrZero(st.ExpiresAt), obj.Namespace, obj.Name, kind)
	ch <- nextRefreshTimestamp.sample(unixOrZero(st.NextRefreshTime), obj.Namespace, obj.Name, kind)
	ch <- consecutiveFailures.sample(float64(st.FailedRefreshAttempts), obj.Namespace, obj.Name, kind)
	current := metav1.ConditionUnknown
	if cond := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); cond != nil {
		current = cond.Status
	}
	for _, s := range conditionValues {
		v := 0.0
		if s == current {
			v = 1
		}
		ch <- readyStatus.sample(v, obj.Namespace, obj.Name, kind, string(s))
	}
}

func (c *statusCollector) current() client.Reader {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.readers) == 0 {
		return nil
	}
	return c.readers[len(c.readers)-1]
}

func (c *statusCollector) remove(r client.Reader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readers = slices.DeleteFunc(c.readers, func(x client.Reader) bool { return x == r })
}

// collectFrom is a manager runnable that feeds the collector from the manager's cache while the
// manager runs, on every replica: a standby's cache is as current as the leader's.
type collectFrom struct{ cache client.Reader }

func (f collectFrom) Start(ctx context.Context) error {
	credentialStatus.mu.Lock()
	credentialStatus.readers = append(credentialStatus.readers, f.cache)
	credentialStatus.mu.Unlock()
	<-ctx.Done()
	credentialStatus.remove(f.cache)
	return nil
}

func (collectFrom) NeedLeaderElection() bool { return false }

// attemptCounts holds dbtoken_credential_refresh_attempts_total: per credential, a short list
// of counts by identity kind, result and reason (usually one entry: success/TokenIssued).
type attemptCounts struct {
	mu sync.Mutex
	m  map[types.NamespacedName][]attemptCount
}

type attemptCount struct {
	identity, result, reason string
	n                        float64
}

var attempts = &attemptCounts{m: map[types.NamespacedName][]attemptCount{}}

func (a *attemptCounts) inc(key types.NamespacedName, identity, result, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	counts := a.m[key]
	for i := range counts {
		if c := &counts[i]; c.identity == identity && c.result == result && c.reason == reason {
			c.n++
			return
		}
	}
	a.m[key] = append(counts, attemptCount{identity: identity, result: result, reason: reason, n: 1})
}

func (a *attemptCounts) forget(key types.NamespacedName) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, key)
}

// collect builds the samples under the lock and sends them after it, so that a slow scrape does
// not hold up the reconciles counting attempts.
func (a *attemptCounts) collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	samples := make([]prometheus.Metric, 0, len(a.m))
	for key, counts := range a.m {
		for _, c := range counts {
			samples = append(samples, refreshAttempts.sample(c.n, key.Namespace, key.Name, c.identity, c.result, c.reason))
		}
	}
	a.mu.Unlock()
	for _, m := range samples {
		ch <- m
	}
}

// recordAttempt counts one token request and its outcome.
func recordAttempt(cred *v1alpha1.DatabricksCredential, success bool, reason string) {
	result := "failure"
	if success {
		result = "success"
	}
	attempts.inc(types.NamespacedName{Namespace: cred.Namespace, Name: cred.Name}, identityKind(&cred.Spec), result, reason)
}

// forgetMetrics drops the attempt counters of a deleted credential (the status gauges go with
// the object).
func forgetMetrics(key types.NamespacedName) {
	attempts.forget(key)
}

func unixOrZero(t *metav1.Time) float64 {
	if t == nil {
		return 0
	}
	return float64(t.Unix())
}
