package controllers

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// Status of a ClusterDatabricksCredential. The token fields and the Ready condition are those of a
// DatabricksCredential and are set with the setters in status.go; these functions add the
// namespace fields and messages. Pure: no I/O, no clock.

const (
	noNamespacesMessage = "no existing namespace matches spec.namespaceSelector or spec.namespaces; " +
		"no token is requested until one does (hint: label a namespace, or check the selector with `kubectl get ns -l ...`)"
	// failuresNamed is how many failed namespaces the Ready message names.
	failuresNamed = 3
	// maxWriteErrorLen bounds an API error quoted in status.
	maxWriteErrorLen = 256
)

// setNamespaces records how many selected namespaces hold a valid token and which do not, sorted
// by name and at most v1alpha1.MaxFailedNamespaces of them. failures is sorted in place.
func setNamespaces(st *v1alpha1.ClusterDatabricksCredentialStatus, served int, failures []v1alpha1.NamespaceFailure) {
	slices.SortFunc(failures, func(a, b v1alpha1.NamespaceFailure) int { return cmp.Compare(a.Namespace, b.Namespace) })
	st.NamespaceCount = int32(served)
	if len(failures) == 0 {
		st.FailedNamespaces = nil
		return
	}
	st.FailedNamespaces = slices.Clone(failures[:min(len(failures), v1alpha1.MaxFailedNamespaces)])
}

// healthyMessage is the Ready=True message: every selected namespace holds the token.
func healthyMessage(namespaces int, expiresAt, next time.Time) string {
	return fmt.Sprintf("token valid until %s in all %d selected namespaces; next refresh at %s", rfc3339(expiresAt), namespaces, rfc3339(next))
}

// namespacesFailingMessage is the Ready=False message when some selected namespaces do not hold a
// valid token: it counts them all and names the first few (failures must be sorted).
func namespacesFailingMessage(failures []v1alpha1.NamespaceFailure, selected int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d selected namespaces do not hold a valid token: ", len(failures), selected)
	for i, f := range failures[:min(len(failures), failuresNamed)] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s)", f.Namespace, f.Reason)
	}
	if more := len(failures) - failuresNamed; more > 0 {
		fmt.Fprintf(&b, " and %d more", more)
	}
	b.WriteString("; see status.failedNamespaces")
	return b.String()
}

// notAllServed keeps Ready honest after a failed or postponed refresh: the DatabricksCredential
// setters keep Ready=True (RefreshFailing) while the token lives, but a cluster credential is Ready
// only when every selected namespace holds a valid token. When some do not, Ready turns False with
// the first failed namespace's reason, or RefreshFailing. It reports whether it changed Ready.
func notAllServed(st *v1alpha1.ClusterDatabricksCredentialStatus, generation int64, served, selected int, failures []v1alpha1.NamespaceFailure, why string, now time.Time) bool {
	if readyCondition(st.Conditions).Status != metav1.ConditionTrue || served >= selected {
		return false
	}
	reason := v1alpha1.ReasonRefreshFailing
	if len(failures) > 0 {
		reason = failures[0].Reason
	}
	return setReady(&st.DatabricksCredentialStatus, generation, metav1.ConditionFalse, reason,
		fmt.Sprintf("%d of %d selected namespaces do not hold a valid token, and %s", selected-served, selected, why), now)
}

// conditionChanged reports whether a condition's status, reason or message differ, which is when
// an Event is due.
func conditionChanged(a, b metav1.Condition) bool {
	return a.Status != b.Status || a.Reason != b.Reason || a.Message != b.Message
}

// conflictFailure is a selected namespace where a Secret of the target name is not ours.
func conflictFailure(namespace, name string) v1alpha1.NamespaceFailure {
	return v1alpha1.NamespaceFailure{Namespace: namespace, Reason: v1alpha1.ReasonSecretConflict,
		Message: fmt.Sprintf("Secret %q exists and is not owned by this ClusterDatabricksCredential; it is left untouched "+
			"(hint: delete or rename that Secret, or set spec.target.name to another name)", name)}
}

// writeFailedMessage describes an API error writing the Secret. API errors quote object names,
// not data, but an admission webhook may echo anything: every value we tried to write is
// redacted from the text before it reaches status, events or logs.
func writeFailedMessage(name string, err error, data map[string][]byte) string {
	text := err.Error()
	for _, v := range data {
		if len(v) > 0 {
			text = strings.ReplaceAll(text, string(v), "[redacted]")
		}
	}
	if len(text) > maxWriteErrorLen {
		text = strings.ToValidUTF8(text[:maxWriteErrorLen], "") + "…"
	}
	return fmt.Sprintf("writing Secret %q failed: %s", name, text)
}

// readyCondition returns the Ready condition, which the caller has just set.
func readyCondition(conditions []metav1.Condition) metav1.Condition {
	if c := meta.FindStatusCondition(conditions, v1alpha1.ConditionReady); c != nil {
		return *c
	}
	return metav1.Condition{}
}
