package credential

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/secret"
	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// TestDecide is the policy chain's specification, one row per situation a pass can find a
// Secret in, in the manner of cert-manager's trigger/policies tests: what the Secret looks like,
// whether this process holds a live token for the current inputs, and what the pass must do.
//
// The token in the Secret was issued at t0 and expires an hour later; renewBefore is 10 minutes,
// so its refresh time lies between t0+49m and t0+50m (jitter). The inputs hash of the current
// spec is "current".
func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	const host = "https://adb-1.azuredatabricks.net"
	target := v1alpha1.TargetSecret{Name: "dbt-token"}
	data := map[string][]byte{"DATABRICKS_HOST": []byte(host), "DATABRICKS_TOKEN": []byte("tok-1")}

	// inSecret is a Secret as the pass writes it, changed by edit.
	inSecret := func(edit func(s *corev1.Secret)) *corev1.Secret {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "dbt-token", Namespace: "team-a", Annotations: map[string]string{
				v1alpha1.AnnotationInputsHash: "current",
				v1alpha1.AnnotationIssuedAt:   secret.FormatTime(t0),
				v1alpha1.AnnotationExpiresAt:  secret.FormatTime(t0.Add(time.Hour)),
				v1alpha1.AnnotationDataHash:   secret.DataHash(host, target, data),
			}},
			Data: map[string][]byte{},
		}
		for k, v := range data {
			s.Data[k] = v
		}
		if edit != nil {
			edit(s)
		}
		return s
	}
	// held is a token this process holds for the current inputs, issued at issued.
	held := func(issued time.Time) *token.Token {
		return &token.Token{AccessToken: "tok-2", IssuedAt: issued, ExpiresAt: issued.Add(time.Hour)}
	}
	renewBefore := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

	tests := map[string]struct {
		secret      *corev1.Secret
		held        *token.Token
		now         time.Time
		renewBefore *metav1.Duration // default 10m
		want        Action
		wantWhy     string
	}{
		"fresh token for the current inputs is kept": {
			secret: inSecret(nil), now: t0.Add(30 * time.Minute),
			want: Keep, wantWhy: "fresh"},
		"kept up to the earliest jittered refresh time": {
			secret: inSecret(nil), now: t0.Add(49*time.Minute - time.Second),
			want: Keep},
		"refresh time reached": {
			secret: inSecret(nil), now: t0.Add(50 * time.Minute),
			want: Exchange, wantWhy: "refresh time reached"},
		"refresh time reached while a newer token is held: Exchange, which the shared cache answers without a request": {
			secret: inSecret(nil), held: held(t0.Add(50 * time.Minute)), now: t0.Add(50 * time.Minute),
			want: Exchange, wantWhy: "refresh time reached"},
		"a longer renewBefore moves the refresh time earlier": {
			secret: inSecret(nil), now: t0.Add(30 * time.Minute), renewBefore: renewBefore(40 * time.Minute),
			want: Exchange, wantWhy: "refresh time reached"},
		"a renewBefore at or above the lifetime is clamped to half of it": {
			secret: inSecret(nil), now: t0.Add(25 * time.Minute), renewBefore: renewBefore(2 * time.Hour),
			want: Keep},
		"missing Secret, nothing held": {
			now:  t0.Add(time.Minute),
			want: Exchange, wantWhy: "does not exist"},
		"missing Secret, fresh token held": {
			held: held(t0), now: t0.Add(time.Minute),
			want: Rerender, wantWhy: "re-rendering"},
		"missing Secret, held token due for refresh": {
			held: held(t0), now: t0.Add(55 * time.Minute),
			want: Exchange, wantWhy: "does not exist"},
		"inputs changed (identity, scopes, client secret, CA), nothing held": {
			secret: inSecret(func(s *corev1.Secret) { s.Annotations[v1alpha1.AnnotationInputsHash] = "previous" }), now: t0.Add(time.Minute),
			want: Exchange, wantWhy: "changed"},
		"inputs changed, a token for the new inputs is held (another credential with that identity)": {
			secret: inSecret(func(s *corev1.Secret) { s.Annotations[v1alpha1.AnnotationInputsHash] = "previous" }), held: held(t0), now: t0.Add(time.Minute),
			want: Rerender, wantWhy: "changed"},
		"inputs hash missing counts as changed": {
			secret: inSecret(func(s *corev1.Secret) { delete(s.Annotations, v1alpha1.AnnotationInputsHash) }), now: t0.Add(time.Minute),
			want: Exchange, wantWhy: "changed"},
		"changed inputs win over a due refresh (first policy wins)": {
			secret: inSecret(func(s *corev1.Secret) { s.Annotations[v1alpha1.AnnotationInputsHash] = "previous" }), now: t0.Add(55 * time.Minute),
			want: Exchange, wantWhy: "changed"},
		"expiry annotation unreadable": {
			secret: inSecret(func(s *corev1.Secret) { s.Annotations[v1alpha1.AnnotationExpiresAt] = "tomorrow" }), now: t0.Add(time.Minute),
			want: Exchange, wantWhy: "unreadable"},
		"issued-at annotation missing, fresh token held": {
			secret: inSecret(func(s *corev1.Secret) { delete(s.Annotations, v1alpha1.AnnotationIssuedAt) }), held: held(t0), now: t0.Add(time.Minute),
			want: Rerender, wantWhy: "unreadable"},
		"token edited by hand: it can no longer be trusted": {
			secret: inSecret(func(s *corev1.Secret) { s.Data["DATABRICKS_TOKEN"] = []byte("pasted") }), now: t0.Add(time.Minute),
			want: Exchange, wantWhy: "differs"},
		"token edited by hand, fresh token held": {
			secret: inSecret(func(s *corev1.Secret) { s.Data["DATABRICKS_TOKEN"] = []byte("pasted") }), held: held(t0), now: t0.Add(time.Minute),
			want: Rerender, wantWhy: "differs"},
		"key added by hand": {
			secret: inSecret(func(s *corev1.Secret) { s.Data["EXTRA"] = []byte("x") }), held: held(t0), now: t0.Add(time.Minute),
			want: Rerender, wantWhy: "differs"},
		"data hash annotation missing": {
			secret: inSecret(func(s *corev1.Secret) { delete(s.Annotations, v1alpha1.AnnotationDataHash) }), now: t0.Add(time.Minute),
			want: Exchange, wantWhy: "differs"},
		"a due refresh wins over drifted data": {
			secret: inSecret(func(s *corev1.Secret) { s.Data["DATABRICKS_TOKEN"] = []byte("pasted") }), held: held(t0), now: t0.Add(55 * time.Minute),
			want: Exchange, wantWhy: "refresh time reached"},
		"other annotations and labels are not the policy's business": {
			secret: inSecret(func(s *corev1.Secret) {
				s.Annotations["argocd.argoproj.io/sync-wave"] = "1"
				s.Labels = map[string]string{"x": "y"}
			}), now: t0.Add(time.Minute),
			want: Keep},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			rb := tt.renewBefore
			if rb == nil {
				rb = renewBefore(10 * time.Minute)
			}
			s := &Subject{
				Object:      &v1alpha1.DatabricksCredential{ObjectMeta: metav1.ObjectMeta{Name: "dbt", Namespace: "team-a", UID: "7d3c1c0e-0000-4000-8000-000000000001"}},
				Host:        host,
				Target:      target,
				TargetName:  target.Name,
				RenewBefore: rb,
			}
			got := Decide(Observed{Subject: s, Now: tt.now, InputsHash: "current", Secret: tt.secret, Held: tt.held})
			if got.Action != tt.want {
				t.Errorf("Decide = %s (%s), want %s", got.Action, got.Why, tt.want)
			}
			if !strings.Contains(got.Why, tt.wantWhy) {
				t.Errorf("why = %q, want it to say %q", got.Why, tt.wantWhy)
			}
		})
	}
}

// TestRefreshTimeIsStableAndSpread: the jitter depends on the credential's UID and the expiry
// only, so a restart computes the same refresh time (no status churn) while two credentials
// sharing a token refresh at different seconds.
func TestRefreshTimeIsStableAndSpread(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	subject := func(uid string) *Subject {
		return &Subject{Object: &v1alpha1.DatabricksCredential{ObjectMeta: metav1.ObjectMeta{UID: types.UID("uid-" + uid)}},
			RenewBefore: &metav1.Duration{Duration: 30 * time.Minute}}
	}
	a, b := RefreshTime(subject("a"), t0, t0.Add(time.Hour)), RefreshTime(subject("b"), t0, t0.Add(time.Hour))
	if again := RefreshTime(subject("a"), t0, t0.Add(time.Hour)); !again.Equal(a) {
		t.Errorf("same credential and token: %s, then %s", a, again)
	}
	if a.Equal(b) {
		t.Errorf("two credentials sharing a token refresh at the same second %s", a)
	}
	for _, rt := range []time.Time{a, b} {
		if earliest, latest := t0.Add(27*time.Minute), t0.Add(30*time.Minute); rt.Before(earliest) || rt.After(latest) {
			t.Errorf("refresh time %s outside [%s, %s]: renewBefore 30m with at most 10%% jitter", rt, earliest, latest)
		}
	}
}
