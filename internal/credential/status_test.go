package credential

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

// TestSetRefreshFailed is the table of what a failed exchange does to Ready: only a transient
// failure while a valid token is held keeps Ready True; a repeated failure changes nothing an
// Event would report; Stalled mirrors Ready=False except for RefreshFailing (a retry timer runs).
func TestSetRefreshFailed(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	const gen = 3
	tokenUntil := func(exp time.Time) *v1alpha1.DatabricksCredentialStatus {
		st := &v1alpha1.DatabricksCredentialStatus{}
		setTokenTimes(st, "dbt-token", exp.Add(-time.Hour), exp, exp.Add(-30*time.Minute))
		setReady(st, gen, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, "token valid", now.Add(-time.Hour))
		return st
	}
	tests := map[string]struct {
		status      *v1alpha1.DatabricksCredentialStatus
		reason      string
		transient   bool
		validUntil  time.Time
		wantStatus  metav1.ConditionStatus
		wantReason  string
		wantMessage string
		wantStalled bool
	}{
		"transient, the Secrets hold a valid token": {
			status: tokenUntil(now.Add(20 * time.Minute)), reason: "ServerError", transient: true, validUntil: now.Add(20 * time.Minute),
			wantStatus: metav1.ConditionTrue, wantReason: v1alpha1.ReasonRefreshFailing,
			wantMessage: "token still valid until 2026-12-05T10:20:00Z, but refreshing failed: idp said no"},
		"transient, the token has expired": {
			status: tokenUntil(now.Add(-time.Second)), reason: "ServerError", transient: true,
			wantStatus: metav1.ConditionFalse, wantReason: v1alpha1.ReasonTokenExpired,
			wantMessage: "the token in the Secret expired at 2026-12-05T09:59:59Z and refreshing fails: idp said no", wantStalled: true},
		"transient, expiring this very second": {
			status: tokenUntil(now), reason: "ServerError", transient: true, validUntil: now,
			wantStatus: metav1.ConditionFalse, wantReason: v1alpha1.ReasonTokenExpired, wantStalled: true},
		"transient, no token for the current spec yet": {
			status: &v1alpha1.DatabricksCredentialStatus{}, reason: "ServerError", transient: true,
			wantStatus: metav1.ConditionFalse, wantReason: v1alpha1.ReasonRefreshFailing,
			wantMessage: "no token for the current spec yet: idp said no"},
		"transient, the spec changed while the old token lives (no valid token for these inputs)": {
			status: tokenUntil(now.Add(20 * time.Minute)), reason: "ServerError", transient: true,
			wantStatus: metav1.ConditionFalse, wantReason: v1alpha1.ReasonRefreshFailing,
			wantMessage: "no token for the current spec yet: idp said no"},
		"permanent, even with a valid token": {
			status: tokenUntil(now.Add(20 * time.Minute)), reason: v1alpha1.ReasonInvalidClient, validUntil: now.Add(20 * time.Minute),
			wantStatus: metav1.ConditionFalse, wantReason: v1alpha1.ReasonInvalidClient, wantMessage: "idp said no", wantStalled: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			st := tt.status
			attempts := st.FailedRefreshAttempts
			next := now.Add(10 * time.Second)
			if changed := setRefreshFailed(st, gen+1, tt.reason, tt.transient, "idp said no", tt.validUntil, next, now); !changed {
				t.Errorf("first failure after TokenIssued: changed = false, want an Event")
			}
			ready := readyCondition(st.Conditions)
			if ready.Status != tt.wantStatus || ready.Reason != tt.wantReason {
				t.Errorf("Ready = %s/%s, want %s/%s", ready.Status, ready.Reason, tt.wantStatus, tt.wantReason)
			}
			if tt.wantMessage != "" && ready.Message != tt.wantMessage {
				t.Errorf("message = %q, want %q", ready.Message, tt.wantMessage)
			}
			if st.FailedRefreshAttempts != attempts+1 || !st.NextRefreshTime.Time.Equal(next) {
				t.Errorf("attempts %d → %d, next %v: want one more attempt and the retry time in nextRefreshTime", attempts, st.FailedRefreshAttempts, st.NextRefreshTime)
			}
			if ready.ObservedGeneration != gen+1 || st.ObservedGeneration != gen+1 {
				t.Errorf("observedGeneration condition %d, status %d, want %d", ready.ObservedGeneration, st.ObservedGeneration, gen+1)
			}
			stalled := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionStalled)
			if (stalled != nil) != tt.wantStalled {
				t.Errorf("Stalled = %v, want present %v", stalled, tt.wantStalled)
			}
			if stalled != nil && (stalled.Reason != ready.Reason || stalled.Message != ready.Message) {
				t.Errorf("Stalled %s %q differs from Ready %s %q", stalled.Reason, stalled.Message, ready.Reason, ready.Message)
			}
			// The same failure again, with a later retry: the retry time lives in
			// nextRefreshTime, not in the message, so nothing an Event reports has changed.
			if changed := setRefreshFailed(st, gen+1, tt.reason, tt.transient, "idp said no", tt.validUntil, next.Add(time.Minute), now); changed {
				t.Errorf("a repeated failure changed Ready to %+v: it would emit an Event per retry", readyCondition(st.Conditions))
			}
		})
	}
}

// TestSetServed: after a pass that wrote or kept the token, Ready is True only when every
// destination holds it; a token in the Secrets ends the failures; a later failure turns a
// Ready=True credential False only when some destination lacks a valid token (notAllServed).
func TestSetServed(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	exp, next := now.Add(time.Hour), now.Add(30*time.Minute)
	namespaced := func() *Subject {
		return &Subject{Object: &v1alpha1.DatabricksCredential{ObjectMeta: metav1.ObjectMeta{Generation: 2}},
			Status: &v1alpha1.DatabricksCredentialStatus{FailedRefreshAttempts: 4}}
	}
	cluster := func() *Subject {
		s := namespaced()
		s.PerNamespace = &v1alpha1.ClusterDatabricksCredentialStatus{}
		return s
	}
	conflict := []v1alpha1.NamespaceFailure{{Namespace: "team-b", Reason: v1alpha1.ReasonSecretConflict, Message: "Secret team-b/dbt-token is not ours"}}
	tests := map[string]struct {
		subject     *Subject
		served      int
		failures    []v1alpha1.NamespaceFailure
		wantStatus  metav1.ConditionStatus
		wantReason  string
		wantMessage string
	}{
		"one Secret holds the token": {subject: namespaced(), served: 1,
			wantStatus: metav1.ConditionTrue, wantReason: v1alpha1.ReasonTokenIssued,
			wantMessage: "token valid until 2026-12-05T11:00:00Z; next refresh at 2026-12-05T10:30:00Z"},
		"the one Secret is someone else's": {subject: namespaced(), failures: conflict,
			wantStatus: metav1.ConditionFalse, wantReason: v1alpha1.ReasonSecretConflict, wantMessage: "Secret team-b/dbt-token is not ours"},
		"every namespace holds the token": {subject: cluster(), served: 3,
			wantStatus: metav1.ConditionTrue, wantReason: v1alpha1.ReasonTokenIssued,
			wantMessage: "token valid until 2026-12-05T11:00:00Z in all 3 selected namespaces; next refresh at 2026-12-05T10:30:00Z"},
		"one namespace of three is someone else's": {subject: cluster(), served: 2, failures: conflict,
			wantStatus: metav1.ConditionFalse, wantReason: v1alpha1.ReasonSecretConflict,
			wantMessage: "1 of 3 selected namespaces do not hold a valid token: team-b (SecretConflict); see status.failedNamespaces"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s := tt.subject
			setTokenTimes(s.Status, "dbt-token", now, exp, next)
			if !setServed(s, tt.served, tt.failures, exp, next, now) {
				t.Errorf("changed = false on the first Ready")
			}
			ready := readyCondition(s.Status.Conditions)
			if ready.Status != tt.wantStatus || ready.Reason != tt.wantReason || ready.Message != tt.wantMessage {
				t.Errorf("Ready = %s/%s %q\nwant    %s/%s %q", ready.Status, ready.Reason, ready.Message, tt.wantStatus, tt.wantReason, tt.wantMessage)
			}
			if s.Status.FailedRefreshAttempts != 0 || !s.Status.ExpiresAt.Time.Equal(exp) || ReadyGeneration(s.Status) != 2 {
				t.Errorf("attempts %d, expiresAt %v, Ready generation %d: want 0, %s, 2", s.Status.FailedRefreshAttempts, s.Status.ExpiresAt, ReadyGeneration(s.Status), exp)
			}
			if s.PerNamespace != nil && int(s.PerNamespace.NamespaceCount) != tt.served {
				t.Errorf("namespaceCount = %d, want %d", s.PerNamespace.NamespaceCount, tt.served)
			}
			if setServed(s, tt.served, tt.failures, exp, next, now.Add(time.Minute)) {
				t.Errorf("the same outcome again reported a change: one Event per pass")
			}
		})
	}

	t.Run("a failed refresh with a Secret that lost its token turns Ready False", func(t *testing.T) {
		s := cluster()
		setServed(s, 3, nil, exp, next, now)
		if notAllServed(s, 3, 3, nil, "refreshing failed", now) {
			t.Errorf("every namespace served: changed Ready")
		}
		if !notAllServed(s, 2, 3, nil, "refreshing failed", now) {
			t.Fatalf("one namespace unserved: Ready unchanged")
		}
		ready := readyCondition(s.Status.Conditions)
		if want := "1 of 3 selected namespaces do not hold a valid token, and refreshing failed"; ready.Status != metav1.ConditionFalse || ready.Reason != v1alpha1.ReasonRefreshFailing || ready.Message != want {
			t.Errorf("Ready = %s/%s %q, want False/RefreshFailing %q", ready.Status, ready.Reason, ready.Message, want)
		}
		if notAllServed(s, 2, 3, nil, "refreshing failed", now) {
			t.Errorf("Ready already False: changed again")
		}
	})

	t.Run("a problem no retry fixes is Stalled until the next success clears it", func(t *testing.T) {
		s := namespaced()
		setNotReady(s.Status, 2, v1alpha1.ReasonSecretNotFound, "Secret team-a/sp not found", now)
		if c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionStalled); c == nil || c.Reason != v1alpha1.ReasonSecretNotFound {
			t.Fatalf("Stalled = %+v, want True/SecretNotFound", c)
		}
		setTokenTimes(s.Status, "dbt-token", now, exp, next)
		setServed(s, 1, nil, exp, next, now)
		if c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionStalled); c != nil {
			t.Errorf("Stalled = %+v after a success, want it removed", c)
		}
	})
}
