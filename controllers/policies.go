package controllers

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/refresh"
	"github.com/dbtoken/databricks-token-operator/internal/secret"
)

// action is what a reconcile pass does with the target Secret.
type action int

const (
	// keep: the Secret's token is good for the current inputs; only metadata drift is repaired.
	keep action = iota
	// rerender: the token is good but the Secret's data must be rewritten (target or host
	// changed, hand edit, Secret deleted) from the token this process remembers.
	rerender
	// exchange: a new token is needed.
	exchange
)

func (a action) String() string {
	switch a {
	case keep:
		return "keep"
	case rerender:
		return "rerender"
	case exchange:
		return "exchange"
	}
	return "unknown"
}

// observed is what a pass knows before deciding: the inputs it resolved, the target Secret (nil
// when absent) and the token this process last wrote for the credential, if any.
type observed struct {
	key        types.NamespacedName
	cred       *v1alpha1.DatabricksCredential
	now        time.Time
	inputsHash string
	target     *corev1.Secret
	remembered *rememberedToken
}

// decision is the outcome of the policy chain, with a reason for the logs.
type decision struct {
	action action
	why    string
}

// policy is one check of the chain; it returns ok=false to pass the decision on.
type policy func(o observed) (decision, bool)

// refreshPolicies decide, in order, whether the Secret's token can stay. The first policy that
// applies wins. Modelled on cert-manager's certificates/policies chain: each check is small and
// named, so the order of precedence is readable in one place.
var refreshPolicies = []policy{
	secretMissing,
	inputsChanged,
	annotationsUnreadable,
	refreshDue,
	dataDrifted,
}

func decide(o observed) decision {
	for _, p := range refreshPolicies {
		if d, ok := p(o); ok {
			return d
		}
	}
	return decision{action: keep, why: "token is fresh for the current inputs"}
}

// reuseOrExchange re-renders from the remembered token when it was issued for the same inputs
// and is not yet due for refresh; otherwise a new token is needed.
func reuseOrExchange(o observed, why string) decision {
	if m := o.remembered; m != nil && m.inputsHash == o.inputsHash && o.now.Before(refreshTimeFor(o.cred, m.token.IssuedAt, m.token.ExpiresAt)) {
		return decision{action: rerender, why: why + "; re-rendering the current token"}
	}
	return decision{action: exchange, why: why}
}

func secretMissing(o observed) (decision, bool) {
	if o.target != nil {
		return decision{}, false
	}
	return reuseOrExchange(o, "target Secret does not exist"), true
}

func inputsChanged(o observed) (decision, bool) {
	if o.target.Annotations[v1alpha1.AnnotationInputsHash] == o.inputsHash {
		return decision{}, false
	}
	return reuseOrExchange(o, "identity, scopes, client secret or CA bundle changed"), true
}

func annotationsUnreadable(o observed) (decision, bool) {
	if _, _, ok := secret.ParseTimes(o.target.Annotations); ok {
		return decision{}, false
	}
	return reuseOrExchange(o, "expiry annotations are missing or unreadable"), true
}

func refreshDue(o observed) (decision, bool) {
	issuedAt, expiresAt, _ := secret.ParseTimes(o.target.Annotations)
	if o.now.Before(refreshTimeFor(o.cred, issuedAt, expiresAt)) {
		return decision{}, false
	}
	return decision{action: exchange, why: "refresh time reached"}, true
}

func dataDrifted(o observed) (decision, bool) {
	want := o.target.Annotations[v1alpha1.AnnotationDataHash]
	if want != "" && want == secret.DataHash(o.cred.Spec.Host, o.cred.Spec.Target, o.target.Data) {
		return decision{}, false
	}
	// Either the data was edited by hand (the token in it can no longer be trusted) or host or
	// target changed since it was rendered.
	return reuseOrExchange(o, "Secret data differs from what the spec renders"), true
}

// refreshTimeFor is when a token issued at issuedAt and expiring at expiresAt is replaced for
// this credential. The jitter is derived from the credential's UID and the expiry, so it is the
// same after a restart (no status churn) yet spreads credentials sharing an expiry.
func refreshTimeFor(cred *v1alpha1.DatabricksCredential, issuedAt, expiresAt time.Time) time.Time {
	rb, _ := effectiveRenewBefore(cred, issuedAt, expiresAt)
	jitter := refresh.JitterFraction(string(cred.UID) + "/" + expiresAt.UTC().Format(time.RFC3339))
	return refresh.RefreshTime(issuedAt, expiresAt, rb, jitter)
}

func effectiveRenewBefore(cred *v1alpha1.DatabricksCredential, issuedAt, expiresAt time.Time) (time.Duration, bool) {
	var requested *time.Duration
	if cred.Spec.RenewBefore != nil {
		requested = &cred.Spec.RenewBefore.Duration
	}
	return refresh.EffectiveRenewBefore(expiresAt.Sub(issuedAt), requested)
}
