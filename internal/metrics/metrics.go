// Package metrics is the operator's one Prometheus collector: per-credential status gauges and
// refresh-attempt counters for both credential kinds, and the token-endpoint request and shared
// token-cache metrics. It is built once per manager by the controllers' setup and registered with
// the manager's registry there; nothing registers itself.
//
// Per-credential metrics follow cert-manager's certificate_expiration_timestamp_seconds: alert on
// the timestamps rather than on logs. Labels are bounded — namespace, name, identity kind, reason,
// status class — and never carry a host (hosts hold tenant IDs) or a client ID.
//
// The status gauges are not stored: Collect computes them at scrape time from the credentials in
// the manager's cache (as cert-manager and kube-state-metrics do). Stored gauge vectors cost
// ~5 KiB of heap per credential (seven series with their label pairs), a third of the manager's
// memory at 10,000 credentials (test/bench), and needed bookkeeping to delete series. The
// attempts counter is a plain map (~100 bytes per credential instead of ~800 for a CounterVec
// series).
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// Collector exports every dbtoken_ metric. It implements prometheus.Collector, token.Observer
// (request durations, cache lookups) and the refresh pass's attempt recorder.
type Collector struct {
	// credentials is the manager's cache, which every replica keeps current.
	credentials client.Reader

	expiration, nextRefresh, ready, failures, attempts scrapeMetric
	requestDuration                                    *prometheus.HistogramVec
	cacheLookups                                       *prometheus.CounterVec

	mu     sync.Mutex
	counts map[types.NamespacedName][]attemptCount
}

var (
	_ prometheus.Collector = (*Collector)(nil)
	_ token.Observer       = (*Collector)(nil)
)

// New returns a collector that reads credential status from credentials (the manager's cache).
func New(credentials client.Reader) *Collector {
	return &Collector{
		credentials: credentials,
		expiration: newScrapeGauge("dbtoken_credential_expiration_timestamp_seconds",
			"Expiry of the token in the credential's Secret, as a Unix timestamp (status.expiresAt).",
			[]string{"namespace", "name", "identity"}),
		nextRefresh: newScrapeGauge("dbtoken_credential_next_refresh_timestamp_seconds",
			"Next planned token request (refresh or retry), as a Unix timestamp (status.nextRefreshTime).",
			[]string{"namespace", "name", "identity"}),
		ready: newScrapeGauge("dbtoken_credential_ready_status",
			"The credential's Ready condition: 1 for the current status (True, False or Unknown), 0 for the others.",
			[]string{"namespace", "name", "identity", "condition"}),
		failures: newScrapeGauge("dbtoken_credential_consecutive_failures",
			"Consecutive failed token requests of a credential (status.failedRefreshAttempts); 0 after a success.",
			[]string{"namespace", "name", "identity"}),
		attempts: newScrapeCounter("dbtoken_credential_refresh_attempts_total",
			"Token refreshes attempted for a credential, by result (success or failure) and Ready reason; a token shared from another credential of the same identity counts as a success.",
			[]string{"namespace", "name", "identity", "result", "reason"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dbtoken_token_request_duration_seconds",
			Help:    "Duration of token-endpoint HTTP requests, by identity kind and status class (2xx, 4xx, 5xx, error, timeout).",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"identity", "status_class"}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dbtoken_token_cache_lookups_total",
			Help: "Shared token cache lookups, by identity kind and result (hit: a token of the same identity was reused; miss: an exchange was needed).",
		}, []string{"identity", "result"}),
		counts: map[types.NamespacedName][]attemptCount{},
	}
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

// Describe sends every descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range []scrapeMetric{c.expiration, c.nextRefresh, c.ready, c.failures, c.attempts} {
		ch <- m.desc
	}
	c.requestDuration.Describe(ch)
	c.cacheLookups.Describe(ch)
}

// Collect lists both kinds from the cache without copying them (read only) and emits their
// gauges; a cluster credential's series carry namespace="". Then the counters and histograms.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.collectAttempts(ch)
	c.requestDuration.Collect(ch)
	c.cacheLookups.Collect(ch)
	ctx := context.Background()
	var creds v1alpha1.DatabricksCredentialList
	if err := c.credentials.List(ctx, &creds, client.UnsafeDisableDeepCopy); err == nil {
		for i := range creds.Items {
			cred := &creds.Items[i]
			c.collectStatus(ch, &cred.ObjectMeta, cred.Spec.IdentityKind(), &cred.Status)
		}
	}
	var clusterCreds v1alpha1.ClusterDatabricksCredentialList
	if err := c.credentials.List(ctx, &clusterCreds, client.UnsafeDisableDeepCopy); err == nil {
		for i := range clusterCreds.Items {
			cc := &clusterCreds.Items[i]
			c.collectStatus(ch, &cc.ObjectMeta, cc.Spec.IdentityKind(), &cc.Status.DatabricksCredentialStatus)
		}
	}
}

var conditionValues = []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}

func (c *Collector) collectStatus(ch chan<- prometheus.Metric, obj *metav1.ObjectMeta, identity string, st *v1alpha1.DatabricksCredentialStatus) {
	ch <- c.expiration.sample(unixOrZero(st.ExpiresAt), obj.Namespace, obj.Name, identity)
	ch <- c.nextRefresh.sample(unixOrZero(st.NextRefreshTime), obj.Namespace, obj.Name, identity)
	ch <- c.failures.sample(float64(st.FailedRefreshAttempts), obj.Namespace, obj.Name, identity)
	current := metav1.ConditionUnknown
	if cond := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); cond != nil {
		current = cond.Status
	}
	for _, s := range conditionValues {
		v := 0.0
		if s == current {
			v = 1
		}
		ch <- c.ready.sample(v, obj.Namespace, obj.Name, identity, string(s))
	}
}

// attemptCount is one series of dbtoken_credential_refresh_attempts_total: per credential, a
// short list of counts by identity kind, result and reason (usually one: success/TokenIssued).
type attemptCount struct {
	identity, result, reason string
	n                        float64
}

// RecordAttempt counts one token request of the credential at key and its outcome.
func (c *Collector) RecordAttempt(key types.NamespacedName, identity string, success bool, reason string) {
	result := "failure"
	if success {
		result = "success"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	counts := c.counts[key]
	for i := range counts {
		if a := &counts[i]; a.identity == identity && a.result == result && a.reason == reason {
			a.n++
			return
		}
	}
	c.counts[key] = append(counts, attemptCount{identity: identity, result: result, reason: reason, n: 1})
}

// Forget drops the attempt counters of a deleted credential (the status gauges go with the object).
func (c *Collector) Forget(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.counts, key)
}

// collectAttempts builds the samples under the lock and sends them after it, so that a slow scrape
// does not hold up the reconciles counting attempts.
func (c *Collector) collectAttempts(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	samples := make([]prometheus.Metric, 0, len(c.counts))
	for key, counts := range c.counts {
		for _, a := range counts {
			samples = append(samples, c.attempts.sample(a.n, key.Namespace, key.Name, a.identity, a.result, a.reason))
		}
	}
	c.mu.Unlock()
	for _, m := range samples {
		ch <- m
	}
}

// ObserveRequest records one token-endpoint round trip.
func (c *Collector) ObserveRequest(kind token.Kind, resp *http.Response, err error, took time.Duration) {
	c.requestDuration.WithLabelValues(string(kind), statusClass(resp, err)).Observe(took.Seconds())
}

// ObserveCacheLookup records one lookup of the shared token cache.
func (c *Collector) ObserveCacheLookup(kind token.Kind, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	c.cacheLookups.WithLabelValues(string(kind), result).Inc()
}

func statusClass(resp *http.Response, err error) string {
	switch {
	case resp != nil:
		return strconv.Itoa(resp.StatusCode/100) + "xx"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "error"
	}
}

func unixOrZero(t *metav1.Time) float64 {
	if t == nil {
		return 0
	}
	return float64(t.Unix())
}
