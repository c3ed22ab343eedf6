package controllers

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// Per-credential metrics, in the habit of cert-manager's certificate_expiration_timestamp_seconds:
// alert on the timestamps rather than on logs. Labels are bounded — namespace, name, identity kind,
// reason — and never carry a host (hosts hold tenant IDs) or a client ID.
var (
	expirationTimestamp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dbtoken_credential_expiration_timestamp_seconds",
		Help: "Expiry of the token in the credential's Secret, as a Unix timestamp (status.expiresAt).",
	}, []string{"namespace", "name", "identity"})

	nextRefreshTimestamp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dbtoken_credential_next_refresh_timestamp_seconds",
		Help: "Next planned token request (refresh or retry), as a Unix timestamp (status.nextRefreshTime).",
	}, []string{"namespace", "name", "identity"})

	readyStatus = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dbtoken_credential_ready_status",
		Help: "The credential's Ready condition: 1 for the current status (True, False or Unknown), 0 for the others.",
	}, []string{"namespace", "name", "identity", "condition"})

	consecutiveFailures = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dbtoken_credential_consecutive_failures",
		Help: "Consecutive failed token requests of a credential (status.failedRefreshAttempts); 0 after a success.",
	}, []string{"namespace", "name", "identity"})

	refreshAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dbtoken_credential_refresh_attempts_total",
		Help: "Token refreshes attempted for a credential, by result (success or failure) and Ready reason; a token shared from another credential of the same identity counts as a success.",
	}, []string{"namespace", "name", "identity", "result", "reason"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(expirationTimestamp, nextRefreshTimestamp, consecutiveFailures, readyStatus, refreshAttempts)
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

// seriesKinds remembers the identity kind each credential's series carry, so that a change of
// kind or a deletion removes exactly those series. Deleting by exact label values keeps a pass
// O(1); DeletePartialMatch scans every series of a vector and, called on every pass, made the
// manager's CPU grow with the square of the number of credentials (found by test/bench).
var seriesKinds = struct {
	sync.Mutex
	m map[types.NamespacedName]string
}{m: map[types.NamespacedName]string{}}

var conditionValues = []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}

// recordStatus exports the credential's status as gauges; called once per pass.
func recordStatus(cred *v1alpha1.DatabricksCredential) {
	key := types.NamespacedName{Namespace: cred.Namespace, Name: cred.Name}
	kind := identityKind(&cred.Spec)
	seriesKinds.Lock()
	if prev, ok := seriesKinds.m[key]; ok && prev != kind {
		deleteGauges(key, prev)
	}
	seriesKinds.m[key] = kind
	seriesKinds.Unlock()

	labels := prometheus.Labels{"namespace": cred.Namespace, "name": cred.Name, "identity": kind}
	setTimestamp(expirationTimestamp.With(labels), cred.Status.ExpiresAt)
	setTimestamp(nextRefreshTimestamp.With(labels), cred.Status.NextRefreshTime)
	consecutiveFailures.With(labels).Set(float64(cred.Status.FailedRefreshAttempts))
	current := metav1.ConditionUnknown
	if c := meta.FindStatusCondition(cred.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		current = c.Status
	}
	for _, s := range conditionValues {
		v := 0.0
		if s == current {
			v = 1
		}
		readyStatus.WithLabelValues(cred.Namespace, cred.Name, kind, string(s)).Set(v)
	}
}

// recordAttempt counts one token request and its outcome.
func recordAttempt(cred *v1alpha1.DatabricksCredential, success bool, reason string) {
	result := "failure"
	if success {
		result = "success"
	}
	refreshAttempts.WithLabelValues(cred.Namespace, cred.Name, identityKind(&cred.Spec), result, reason).Inc()
}

// forgetMetrics drops every series of a deleted credential.
func forgetMetrics(key types.NamespacedName) {
	seriesKinds.Lock()
	kind, ok := seriesKinds.m[key]
	delete(seriesKinds.m, key)
	seriesKinds.Unlock()
	if !ok {
		return
	}
	deleteGauges(key, kind)
	// Attempts carry result and reason labels; a scan on deletion (not on every pass) is fine.
	refreshAttempts.DeletePartialMatch(prometheus.Labels{"namespace": key.Namespace, "name": key.Name})
}

func deleteGauges(key types.NamespacedName, kind string) {
	for _, v := range []*prometheus.GaugeVec{expirationTimestamp, nextRefreshTimestamp, consecutiveFailures} {
		v.DeleteLabelValues(key.Namespace, key.Name, kind)
	}
	for _, s := range conditionValues {
		readyStatus.DeleteLabelValues(key.Namespace, key.Name, kind, string(s))
	}
}

func setTimestamp(g prometheus.Gauge, t *metav1.Time) {
	if t == nil {
		g.Set(0)
		return
	}
	g.Set(float64(t.Unix()))
}
