package token

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Token-endpoint metrics, registered with controller-runtime's registry and served on the
// manager's metrics endpoint. Labels are bounded: the identity kind and an HTTP status class,
// never a host (hosts carry tenant IDs) nor a client ID.
var (
	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "dbtoken_token_request_duration_seconds",
		Help:    "Duration of token-endpoint HTTP requests, by identity kind and status class (2xx, 4xx, 5xx, error, timeout).",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"identity", "status_class"})

	cacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dbtoken_token_cache_lookups_total",
		Help: "Shared token cache lookups, by identity kind and result (hit: a token of the same identity was reused; miss: an exchange was needed).",
	}, []string{"identity", "result"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(requestDuration, cacheLookups)
}

// observeRequest records one token-endpoint round trip.
func observeRequest(kind Kind, resp *http.Response, err error, took time.Duration) {
	requestDuration.WithLabelValues(string(kind), statusClass(resp, err)).Observe(took.Seconds())
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

func observeCacheLookup(kind Kind, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	cacheLookups.WithLabelValues(string(kind), result).Inc()
}
