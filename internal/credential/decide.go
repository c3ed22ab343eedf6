package credential

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/refresh"
	"github.com/dbtoken/databricks-token-operator/internal/secret"
	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// Action is what a pass does with a credential's Secrets.
type Action int

const (
	// Keep: every Secret's token is good for the current inputs; only metadata drift is repaired.
	Keep Action = iota
	// Rerender: the token is good but some Secret's data must be rewritten (target or host
	// changed, hand edit, Secret deleted, a new namespace) from the token this process holds.
	Rerender
	// Exchange: a new token is needed.
	Exchange
)

func (a Action) String() string {
	switch a {
	case Keep:
		return "keep"
	case Rerender:
		return "rerender"
	case Exchange:
		return "exchange"
	}
	return "unknown"
}

// Observed is what a pass knows about one Secret before deciding: the Secret (nil when absent),
// the hash of the inputs it resolved, and the live token of the identity that this process holds
// (the shared token cache's), if any.
type Observed struct {
	Subject    *Subject
	Now        time.Time
	InputsHash string
	Secret     *corev1.Secret
	Held       *token.Token
}

// Decision is the outcome of the policy chain, with a reason for the logs.
type Decision struct {
	Action Action
	Why    string
}

// policy is one check of the chain; it returns ok=false to pass the decision on.
type policy func(o Observed) (Decision, bool)

// refreshPolicies decide, in order, whether a Secret's token can stay. The first policy that
// applies wins. Modelled on cert-manager's certificates/policies chain: each check is small and
// named, so the order of precedence is readable in one place.
var refreshPolicies = []policy{
	secretMissing,
	inputsChanged,
	annotationsUnreadable,
	refreshDue,
	dataDrifted,
}

// Decide runs the policy chain for one Secret.
func Decide(o Observed) Decision {
	for _, p := range refreshPolicies {
		if d, ok := p(o); ok {
			return d
		}
	}
	return Decision{Action: Keep, Why: "token is fresh for the current inputs"}
}

// reuseOrExchange re-renders from the held token when it is not yet due for refresh under this
// credential's renewBefore; otherwise a new token is needed. The held token is always one for the
// current inputs: the shared cache is keyed by the inputs hash.
func reuseOrExchange(o Observed, why string) Decision {
	if t := o.Held; t != nil && o.Now.Before(RefreshTime(o.Subject, t.IssuedAt, t.ExpiresAt)) {
		return Decision{Action: Rerender, Why: why + "; re-rendering the current token"}
	}
	return Decision{Action: Exchange, Why: why}
}

func secretMissing(o Observed) (Decision, bool) {
	if o.Secret != nil {
		return Decision{}, false
	}
	return reuseOrExchange(o, "target Secret does not exist"), true
}

func inputsChanged(o Observed) (Decision, bool) {
	if o.Secret.Annotations[v1alpha1.AnnotationInputsHash] == o.InputsHash {
		return Decision{}, false
	}
	return reuseOrExchange(o, "identity, scopes, client secret or CA bundle changed"), true
}

func annotationsUnreadable(o Observed) (Decision, bool) {
	if _, _, ok := secret.ParseTimes(o.Secret.Annotations); ok {
		return Decision{}, false
	}
	return reuseOrExchange(o, "expiry annotations are missing or unreadable"), true
}

func refreshDue(o Observed) (Decision, bool) {
	issuedAt, expiresAt, _ := secret.ParseTimes(o.Secret.Annotations)
	if o.Now.Before(RefreshTime(o.Subject, issuedAt, expiresAt)) {
		return Decision{}, false
	}
	return Decision{Action: Exchange, Why: "refresh time reached"}, true
}

func dataDrifted(o Observed) (Decision, bool) {
	want := o.Secret.Annotations[v1alpha1.AnnotationDataHash]
	if want != "" && want == secret.DataHash(o.Subject.Host, o.Subject.Target, o.Secret.Data) {
		return Decision{}, false
	}
	// Either the data was edited by hand (the token in it can no longer be trusted) or host or
	// target changed since it was rendered.
	return reuseOrExchange(o, "Secret data differs from what the spec renders"), true
}

// RefreshTime is when a token issued at issuedAt and expiring at expiresAt is replaced for the
// subject. The jitter is derived from the credential's UID and the expiry, so it is the same after
// a restart (no status churn) yet spreads credentials sharing an expiry.
func RefreshTime(s *Subject, issuedAt, expiresAt time.Time) time.Time {
	rb, _ := EffectiveRenewBefore(s, issuedAt, expiresAt)
	jitter := refresh.JitterFraction(string(s.uid()) + "/" + expiresAt.UTC().Format(time.RFC3339))
	return refresh.RefreshTime(issuedAt, expiresAt, rb, jitter)
}

// EffectiveRenewBefore is the subject's renewBefore for a token of this lifetime, and whether it
// was clamped (at or above the lifetime: half the lifetime is used).
func EffectiveRenewBefore(s *Subject, issuedAt, expiresAt time.Time) (time.Duration, bool) {
	var requested *time.Duration
	if s.RenewBefore != nil {
		requested = &s.RenewBefore.Duration
	}
	return refresh.EffectiveRenewBefore(expiresAt.Sub(issuedAt), requested)
}
