package controllers

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// The functions in this file only compute status; they do no I/O. Times come from the caller's
// clock, including LastTransitionTime (meta.SetStatusCondition would otherwise read time.Now).

// setReady sets the Ready condition and reports whether its status, reason or message changed,
// which is when an Event is due.
func setReady(st *v1alpha1.DatabricksCredentialStatus, generation int64, status metav1.ConditionStatus, reason, message string, now time.Time) bool {
	prev := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	changed := prev == nil || prev.Status != status || prev.Reason != reason || prev.Message != message
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type:               v1alpha1.ConditionReady,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: generation,
		LastTransitionTime: metav1.NewTime(now),
	})
	return changed
}

// setTokenTimes records the token in the Secret: when it was obtained, when it expires and when
// the next refresh is planned.
func setTokenTimes(st *v1alpha1.DatabricksCredentialStatus, secretName string, issuedAt, expiresAt, next time.Time) {
	st.SecretName = secretName
	st.LastRefreshTime = timePtr(issuedAt)
	st.ExpiresAt = timePtr(expiresAt)
	st.NextRefreshTime = timePtr(next)
}

// setHealthy marks a pass that left a valid token for the current spec in the Secret.
func setHealthy(st *v1alpha1.DatabricksCredentialStatus, generation int64, expiresAt, next, now time.Time) bool {
	st.FailedRefreshAttempts = 0
	return setReady(st, generation, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued,
		fmt.Sprintf("token valid until %s; next refresh at %s", rfc3339(expiresAt), rfc3339(next)), now)
}

// setRefreshFailed records a failed exchange. validUntil is the expiry of a token for the
// current inputs that is still in the Secret (zero when there is none): while it lives, a
// transient failure keeps Ready=True with reason RefreshFailing.
func setRefreshFailed(st *v1alpha1.DatabricksCredentialStatus, generation int64, reason string, transient bool, msg string, validUntil, nextAttempt, now time.Time) bool {
	st.FailedRefreshAttempts++
	st.NextRefreshTime = timePtr(nextAttempt)
	// The retry time is in status.nextRefreshTime, not in the message, so that a failure that
	// repeats leaves the condition (and the Event stream) unchanged.
	switch {
	case !transient:
		return setReady(st, generation, metav1.ConditionFalse, reason, msg, now)
	case !validUntil.IsZero() && now.Before(validUntil):
		return setReady(st, generation, metav1.ConditionTrue, v1alpha1.ReasonRefreshFailing,
			fmt.Sprintf("token still valid until %s, but refreshing failed: %s", rfc3339(validUntil), msg), now)
	case st.ExpiresAt != nil && !now.Before(st.ExpiresAt.Time):
		return setReady(st, generation, metav1.ConditionFalse, v1alpha1.ReasonTokenExpired,
			fmt.Sprintf("the token in the Secret expired at %s and refreshing fails: %s", rfc3339(st.ExpiresAt.Time), msg), now)
	default:
		// No token for the current spec yet (first issuance, or the spec changed).
		return setReady(st, generation, metav1.ConditionFalse, v1alpha1.ReasonRefreshFailing,
			fmt.Sprintf("no token for the current spec yet: %s", msg), now)
	}
}

// setNotReady records a problem that no retry timer fixes (bad spec, missing Secret, conflict):
// the next pass comes from a watch or the slow recheck.
func setNotReady(st *v1alpha1.DatabricksCredentialStatus, generation int64, reason, msg string, now time.Time) bool {
	return setReady(st, generation, metav1.ConditionFalse, reason, msg, now)
}

func timePtr(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t.UTC().Truncate(time.Second))
	return &mt
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
