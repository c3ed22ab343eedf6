package credential

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

func TestSetNamespaces(t *testing.T) {
	failures := func(names ...string) []v1alpha1.NamespaceFailure {
		var out []v1alpha1.NamespaceFailure
		for _, n := range names {
			out = append(out, v1alpha1.NamespaceFailure{Namespace: n, Reason: v1alpha1.ReasonSecretConflict})
		}
		return out
	}
	many := make([]string, 25)
	for i := range many {
		many[i] = fmt.Sprintf("team-%02d", 24-i)
	}
	tests := map[string]struct {
		served    int
		failures  []v1alpha1.NamespaceFailure
		wantCount int32
		wantNames []string
	}{
		"none failed":      {served: 3, wantCount: 3},
		"sorted":           {served: 1, failures: failures("team-b", "team-a"), wantCount: 1, wantNames: []string{"team-a", "team-b"}},
		"bounded to first": {failures: failures(many...), wantNames: []string{"team-00", "team-01", "team-02", "team-03", "team-04", "team-05", "team-06", "team-07", "team-08", "team-09", "team-10", "team-11", "team-12", "team-13", "team-14", "team-15", "team-16", "team-17", "team-18", "team-19"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			st := v1alpha1.ClusterDatabricksCredentialStatus{FailedNamespaces: failures("stale")}
			setNamespaces(&st, tt.served, tt.failures)
			if st.NamespaceCount != tt.wantCount {
				t.Errorf("namespaceCount = %d, want %d", st.NamespaceCount, tt.wantCount)
			}
			var got []string
			for _, f := range st.FailedNamespaces {
				got = append(got, f.Namespace)
			}
			if strings.Join(got, ",") != strings.Join(tt.wantNames, ",") {
				t.Errorf("failedNamespaces = %v, want %v", got, tt.wantNames)
			}
			if len(tt.failures) == 0 && st.FailedNamespaces != nil {
				t.Errorf("failedNamespaces = %v, want nil so that the field is dropped", st.FailedNamespaces)
			}
		})
	}
}

func TestNamespacesFailingMessage(t *testing.T) {
	f := func(ns, reason string) v1alpha1.NamespaceFailure {
		return v1alpha1.NamespaceFailure{Namespace: ns, Reason: reason}
	}
	tests := map[string]struct {
		failures []v1alpha1.NamespaceFailure
		selected int
		want     string
	}{
		"one": {[]v1alpha1.NamespaceFailure{f("a", "SecretConflict")}, 3,
			"1 of 3 selected namespaces do not hold a valid token: a (SecretConflict); see status.failedNamespaces"},
		"three": {[]v1alpha1.NamespaceFailure{f("a", "SecretConflict"), f("b", "WriteFailed"), f("c", "SecretConflict")}, 3,
			"3 of 3 selected namespaces do not hold a valid token: a (SecretConflict), b (WriteFailed), c (SecretConflict); see status.failedNamespaces"},
		"more": {[]v1alpha1.NamespaceFailure{f("a", "X"), f("b", "X"), f("c", "X"), f("d", "X"), f("e", "X")}, 30,
			"5 of 30 selected namespaces do not hold a valid token: a (X), b (X), c (X) and 2 more; see status.failedNamespaces"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := namespacesFailingMessage(tt.failures, tt.selected); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestWriteFailedMessage(t *testing.T) {
	data := map[string][]byte{"DATABRICKS_TOKEN": []byte("eyJtoken-value"), "DATABRICKS_HOST": []byte("https://h"), "EMPTY": nil}
	tests := map[string]struct {
		err      error
		want     string
		wantNone []string
	}{
		"quota": {err: errors.New(`secrets "dbt" is forbidden: exceeded quota: q, requested: secrets=1, used: secrets=10, limited: secrets=10`),
			want: `writing Secret "dbt" failed: secrets "dbt" is forbidden: exceeded quota: q`},
		"webhook echoing the data": {err: errors.New("admission webhook denied: DATABRICKS_TOKEN=eyJtoken-value at https://h"),
			want: "DATABRICKS_TOKEN=[redacted] at [redacted]", wantNone: []string{"eyJtoken-value"}},
		"long": {err: errors.New(strings.Repeat("é", 400)), want: "…"},
		"webhook echoing the Secret as JSON (data in base64)": {err: errors.New(`denied: {"data":{"DATABRICKS_TOKEN":"` + base64.StdEncoding.EncodeToString([]byte("eyJtoken-value")) + `"}}`),
			want: `"DATABRICKS_TOKEN":"[redacted]"`, wantNone: []string{base64.StdEncoding.EncodeToString([]byte("eyJtoken-value"))}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := writeFailedMessage("dbt", tt.err, data)
			if !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want it to contain %q", got, tt.want)
			}
			for _, no := range tt.wantNone {
				if strings.Contains(got, no) {
					t.Errorf("got %q, which contains %q", got, no)
				}
			}
			if len(got) > maxWriteErrorLen+64 {
				t.Errorf("message is %d bytes long", len(got))
			}
		})
	}
}

func TestHealthyMessage(t *testing.T) {
	exp := time.Date(2026, 11, 28, 19, 0, 0, 0, time.UTC)
	cluster := &Subject{PerNamespace: &v1alpha1.ClusterDatabricksCredentialStatus{}}
	if got, want := healthyMessage(cluster, 20, exp, exp.Add(-30*time.Minute)),
		"token valid until 2026-11-28T19:00:00Z in all 20 selected namespaces; next refresh at 2026-11-28T18:30:00Z"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := healthyMessage(&Subject{}, 1, exp, exp.Add(-30*time.Minute)),
		"token valid until 2026-11-28T19:00:00Z; next refresh at 2026-11-28T18:30:00Z"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
