package credential

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/redact"
)

// Status of the destinations: which namespaces hold the token and which do not. Pure: no I/O, no
// clock.

const (
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

// conflictFailure is a destination where a Secret of the target name is not the subject's.
func conflictFailure(s *Subject, namespace string) v1alpha1.NamespaceFailure {
	return v1alpha1.NamespaceFailure{Namespace: namespace, Reason: v1alpha1.ReasonSecretConflict,
		Message: fmt.Sprintf("Secret %q exists and is not owned by this %s; it is left untouched "+
			"(hint: delete or rename that Secret, or set spec.target.name to another name)", s.TargetName, s.Kind)}
}

// writeFailedMessage describes an API error writing the Secret. API errors quote object names,
// not data, but an admission webhook may echo anything — verbatim, or the object as JSON, where
// data is base64: every value we tried to write is redacted, in every encoding, from the text
// before it reaches status, events or logs.
func writeFailedMessage(name string, err error, data map[string][]byte) string {
	values := make([]string, 0, len(data))
	for _, v := range data {
		values = append(values, string(v))
	}
	text := redact.Values(err.Error(), values...)
	if len(text) > maxWriteErrorLen {
		text = strings.ToValidUTF8(text[:maxWriteErrorLen], "") + "…"
	}
	return fmt.Sprintf("writing Secret %q failed: %s", name, text)
}
