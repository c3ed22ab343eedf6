package credential

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
	// status.observedGeneration moves with Ready only: a pass that ends before it can say anything
	// about a new spec (a refused write, a token request still running) must leave GitOps tools
	// seeing the spec as not yet observed.
	st.ObservedGeneration = generation
	if status == metav1.ConditionFalse && reason != v1alpha1.ReasonRefreshFailing {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: v1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: reason, Message: message,
			ObservedGeneration: generation, LastTransitionTime: metav1.NewTime(now),
		})
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionStalled)
	}
	return changed
}

// setTokenTimes records the token in the Secrets: when it was obtained, when it expires and when
// the next refresh is planned. A token in the Secrets means the failures are over.
func setTokenTimes(st *v1alpha1.DatabricksCredentialStatus, secretName string, issuedAt, expiresAt, next time.Time) {
	st.SecretName = secretName
	st.LastRefreshTime = timePtr(issuedAt)
	st.ExpiresAt = timePtr(expiresAt)
	st.NextRefreshTime = timePtr(next)
	st.FailedRefreshAttempts = 0
}

// setServed sets Ready from where the token is after a pass that wrote or kept it: True
// (TokenIssued) when every destination holds a valid token, otherwise False with the first
// failure's reason. served is the number of destinations that hold it.
func setServed(s *Subject, served int, failures []v1alpha1.NamespaceFailure, expiresAt, next, now time.Time) bool {
	if s.PerNamespace != nil {
		setNamespaces(s.PerNamespace, served, failures)
	}
	if len(failures) == 0 {
		return setReady(s.Status, s.generation(), metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, healthyMessage(s, served, expiresAt, next), now)
	}
	return setReady(s.Status, s.generation(), metav1.ConditionFalse, failures[0].Reason, failingMessage(s, failures, served+len(failures)), now)
}

// setRefreshFailed records a failed exchange. validUntil is the expiry of a token for the
// current inputs that every destination still holds (zero when there is none): while it lives, a
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

// notAllServed keeps Ready honest after a failed or postponed refresh: the setters above keep
// Ready=True (RefreshFailing) while the token lives, but a credential is Ready only when every
// destination holds a valid token. When some do not, Ready turns False with the first failure's
// reason, or RefreshFailing. It reports whether it changed Ready.
func notAllServed(s *Subject, served, selected int, failures []v1alpha1.NamespaceFailure, why string, now time.Time) bool {
	if readyCondition(s.Status.Conditions).Status != metav1.ConditionTrue || served >= selected {
		return false
	}
	reason := v1alpha1.ReasonRefreshFailing
	if len(failures) > 0 {
		reason = failures[0].Reason
	}
	msg := "the Secret does not hold a valid token, and " + why
	if s.PerNamespace != nil {
		msg = fmt.Sprintf("%d of %d selected namespaces do not hold a valid token, and %s", selected-served, selected, why)
	}
	return setReady(s.Status, s.generation(), metav1.ConditionFalse, reason, msg, now)
}

// healthyMessage is the Ready=True message.
func healthyMessage(s *Subject, served int, expiresAt, next time.Time) string {
	if s.PerNamespace != nil {
		return fmt.Sprintf("token valid until %s in all %d selected namespaces; next refresh at %s", rfc3339(expiresAt), served, rfc3339(next))
	}
	return fmt.Sprintf("token valid until %s; next refresh at %s", rfc3339(expiresAt), rfc3339(next))
}

// failingMessage is the Ready=False message when some destinations cannot be served: the one
// failure of a kind with one Secret, or a count of the namespaces with the first few named.
func failingMessage(s *Subject, failures []v1alpha1.NamespaceFailure, selected int) string {
	if s.PerNamespace == nil {
		return failures[0].Message
	}
	return namespacesFailingMessage(failures, selected)
}

// readyCondition returns the Ready condition (zero when there is none).
func readyCondition(conditions []metav1.Condition) metav1.Condition {
	if c := meta.FindStatusCondition(conditions, v1alpha1.ConditionReady); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// ReadyGeneration is the generation the Ready condition describes.
func ReadyGeneration(st *v1alpha1.DatabricksCredentialStatus) int64 {
	return readyCondition(st.Conditions).ObservedGeneration
}

// conditionChanged reports whether a condition's status, reason or message differ, which is when
// an Event is due.
func conditionChanged(a, b metav1.Condition) bool {
	return a.Status != b.Status || a.Reason != b.Reason || a.Message != b.Message
}

// holdsToken reports whether status already records a token with this expiry (status keeps whole
// seconds).
func holdsToken(st *v1alpha1.DatabricksCredentialStatus, expiresAt time.Time) bool {
	return st.ExpiresAt != nil && st.ExpiresAt.Unix() == expiresAt.Unix()
}

func timePtr(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t.UTC().Truncate(time.Second))
	return &mt
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
