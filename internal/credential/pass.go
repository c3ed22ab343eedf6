package credential

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/kubecache"
	"github.com/dbtoken/databricks-token-operator/internal/refresh"
	"github.com/dbtoken/databricks-token-operator/internal/secret"
	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// ConflictRecheck is how often a SecretConflict is re-checked: a foreign Secret is not in the
// cache (it lacks our label), so its deletion produces no event.
const ConflictRecheck = refresh.PermanentBackoff

// MinSidecarRenewBefore is the shortest renewBefore that keeps every client of the token-server
// sidecar supplied (docs/long-runs.md, "The timing rule"): the kubelet takes up to about 2 minutes
// to deliver a new token into a running pod, SDK clients ask again 40 s before expiry and the
// sidecar refuses tokens with less than 30 s left; 5 minutes leaves about 2 minutes of slack. A
// shorter renewBefore is only warned about (tests use seconds), and only for tokens living at
// least twice as long, where a longer one was possible.
const MinSidecarRenewBefore = 5 * time.Minute

// AttemptRecorder counts token requests per credential (the manager's metrics).
type AttemptRecorder interface {
	RecordAttempt(key types.NamespacedName, identity string, success bool, reason string)
	Forget(key types.NamespacedName)
}

// Deps are what the pass needs, built once per manager and shared by both kinds, so that a
// namespaced and a cluster credential with the same identity share one exchange.
type Deps struct {
	// Client reads target Secrets from the manager's cache and writes through the API.
	Client client.Client
	// APIReader reads what the caches cannot see (a Secret without our label).
	APIReader client.Reader
	// References reads referenced Secrets, ConfigMaps and ServiceAccounts only when they changed.
	References *kubecache.ReferenceReader[Waiter]
	Scheme     *runtime.Scheme
	// Clock drives every time decision; tests inject a fake one.
	Clock clock.PassiveClock
	// Tokens is the one shared token cache in front of the provider.
	Tokens *token.SharedCache
	// Writes records the Secret writes whose watch echoes need no pass.
	Writes *kubecache.OwnWrites
	// Failures remembers what the last failed exchange of each credential was for.
	Failures *FailureMemory
	Attempts AttemptRecorder
}

// Pass runs the refresh pass for one kind: the shared Deps and the kind's event recorder.
type Pass struct {
	*Deps
	Recorder events.EventRecorder
}

// Finder returns where a credential's token goes, called after its inputs resolved. An error that
// is a *ConditionError is reported in Ready (e.g. no namespace selected); any other is returned
// to the workqueue.
type Finder func(ctx context.Context) ([]Destination, error)

// Run brings one credential's Secrets and status up to date and returns when to look again: at
// the next refresh time, at the next retry after a failure, or never for problems that only a
// watched change can fix. The caller writes the status once afterwards.
//
// It guarantees: a template that does not render, a missing input or an exchange that fails never
// touches a Secret (the last good token stays until it expires); every destination gets the same
// token, obtained at most once per pass and shared with every credential of the same identity; a
// Secret that is not the credential's is never written; and Ready is True only while every
// destination holds an unexpired token for the current spec.
func (p *Pass) Run(ctx context.Context, s *Subject, id Identity, find Finder) (ctrl.Result, error) {
	now := p.Clock.Now()
	s.Status.SecretName = s.TargetName
	if err := secret.ValidateTemplates(s.Target, s.Host); err != nil {
		return p.notReady(s, v1alpha1.ReasonInvalidTemplate, err.Error(), now)
	}
	req, err := p.resolve(ctx, Waiter{Kind: s.Kind, Key: s.Key()}, id)
	if err != nil {
		return p.inputsFailed(s, err, now)
	}
	dests, err := find(ctx)
	if err != nil {
		return p.inputsFailed(s, err, now)
	}
	return p.refresh(ctx, p.newRun(s, req, dests, now))
}

// Waiter names a credential that waits for a token exchange: what the shared token cache notifies
// when the exchange it asked for is done.
type Waiter struct {
	Kind string
	Key  types.NamespacedName
}

// Forget drops what the pass remembers of a deleted credential.
func (p *Pass) Forget(kind string, key types.NamespacedName) {
	p.Failures.forget(key)
	p.Attempts.Forget(key)
	p.Tokens.Forget(Waiter{Kind: kind, Key: key})
	p.References.Release(Waiter{Kind: kind, Key: key})
}

// run is what one pass knows: the destinations split into those it may write (absent, ours or
// adoptable) and those it may not, and what the policy chain needs.
type run struct {
	s          *Subject
	now        time.Time
	req        token.Request
	inputsHash string
	held       *token.Token
	// newSpec: Ready does not describe this generation yet (a new credential or a spec change).
	newSpec bool
	// routine: the credential is healthy for this spec (Ready True, TokenIssued, no failed
	// attempt), so a new token is its routine refresh, which needs no Event.
	routine  bool
	selected int
	targets  []Destination
	failures []v1alpha1.NamespaceFailure
}

func (p *Pass) newRun(s *Subject, req token.Request, dests []Destination, now time.Time) *run {
	r := &run{s: s, now: now, req: req, inputsHash: req.Hash(), selected: len(dests), newSpec: !describesSpec(s)}
	ready := readyCondition(s.Status.Conditions)
	r.routine = !r.newSpec && ready.Status == metav1.ConditionTrue && ready.Reason == v1alpha1.ReasonTokenIssued && s.Status.FailedRefreshAttempts == 0
	if t, ok := p.Tokens.Cached(r.inputsHash); ok {
		r.held = &t
	}
	for _, d := range dests {
		if s.ownershipOf(d.Secret) == foreign {
			r.failures = append(r.failures, conflictFailure(s, d.Namespace))
			continue
		}
		r.targets = append(r.targets, d)
	}
	return r
}

func (p *Pass) refresh(ctx context.Context, r *run) (ctrl.Result, error) {
	d := r.decide()
	log.FromContext(ctx).V(1).Info("decided", "action", d.Action, "why", d.Why, "destinations", r.selected, "writable", len(r.targets))
	var tok token.Token
	issued := false
	switch d.Action {
	case Keep:
		return p.finish(ctx, r, p.writeAll(ctx, r, r.keptData), nil, false)
	case Rerender:
		tok = *r.held
	case Exchange:
		if wait, ok := p.backingOff(r); ok {
			p.waitingOut(r)
			return ctrl.Result{RequeueAfter: wait}, nil
		}
		var err error
		tok, err = p.obtain(ctx, r)
		if errors.Is(err, token.ErrPending) {
			return p.exchangePending(r)
		}
		if err != nil {
			p.Attempts.RecordAttempt(r.s.Key(), r.s.Identity, false, token.AsError(err).Reason)
			return p.exchangeFailed(ctx, r, err)
		}
		p.Failures.forget(r.s.Key())
		issued = true
	}
	// A token the credential did not hold yet — from an exchange, or shared by another credential
	// of the same identity — is counted and announced; re-rendering the token it already holds
	// (after a deleted or hand-edited Secret, a new host, target or namespace) is a quiet repair.
	issued = issued || !holdsToken(r.s.Status, tok.ExpiresAt)
	if issued {
		p.Attempts.RecordAttempt(r.s.Key(), r.s.Identity, true, v1alpha1.ReasonTokenIssued)
	}
	desired, err := secret.Render(secret.Input{
		Host: r.s.Host, Token: tok.AccessToken, IssuedAt: tok.IssuedAt, ExpiresAt: tok.ExpiresAt,
		InputsHash: r.inputsHash, CredentialName: r.s.Key().Name, Target: r.s.Target,
	})
	if err != nil {
		return p.notReady(r.s, v1alpha1.ReasonInvalidTemplate, err.Error(), r.now)
	}
	desired.Labels = r.s.Labels
	return p.finish(ctx, r, p.writeAll(ctx, r, func(Destination) secret.Desired { return desired }), &tok, issued)
}

// decide runs the policy chain for every writable destination. One that needs a new token gets
// it for all; otherwise the held token re-renders those that need it.
func (r *run) decide() Decision {
	out := Decision{Action: Keep, Why: "every Secret holds a fresh token for the current inputs"}
	for _, t := range r.targets {
		d := Decide(Observed{Subject: r.s, Now: r.now, InputsHash: r.inputsHash, Secret: t.Secret, Held: r.held})
		if r.s.PerNamespace != nil {
			d.Why = t.Namespace + ": " + d.Why
		}
		switch {
		case d.Action == Exchange:
			return d
		case d.Action == Rerender && out.Action == Keep:
			out = d
		}
	}
	return out
}

// keptData leaves a destination's data and token as they are, repairing only labels and
// annotations (and adopting the Secret of an earlier incarnation).
func (r *run) keptData(t Destination) secret.Desired {
	return secret.Desired{Data: t.Secret.Data, Labels: r.s.Labels, Annotations: secret.KeptAnnotations(r.s.Target, t.Secret.Annotations)}
}

// obtain gets one token for every destination: the shared one of the same identity while it is
// not due for refresh under this credential's renewBefore, or a new exchange, shared with any
// concurrent pass for the same identity.
func (p *Pass) obtain(ctx context.Context, r *run) (token.Token, error) {
	tok, shared, err := p.Tokens.Obtain(ctx, Waiter{Kind: r.s.Kind, Key: r.s.Key()}, r.req, func(t token.Token) bool {
		return r.now.Before(RefreshTime(r.s, t.IssuedAt, t.ExpiresAt))
	})
	if err == nil && shared {
		log.FromContext(ctx).V(1).Info("reusing a token of the same identity", "expiresAt", rfc3339(tok.ExpiresAt))
	}
	return tok, err
}

// writeAll writes each writable destination's desired Secret. A Secret that turns out to be
// foreign becomes a SecretConflict failure; the other destinations are written regardless. Write
// errors are returned, redacted of every value written, so that the workqueue retries with
// backoff; a kind that reports per namespace also records them as WriteFailed.
func (p *Pass) writeAll(ctx context.Context, r *run, desired func(Destination) secret.Desired) []error {
	w := secretWriter{deps: p.Deps, subject: r.s}
	var errs []error
	kept := r.targets[:0]
	for _, t := range r.targets {
		want := desired(t)
		if _, err := w.apply(ctx, r.s.targetKey(t.Namespace), t.Secret, want); err != nil {
			var conflict errSecretConflict
			if errors.As(err, &conflict) {
				r.failures = append(r.failures, conflictFailure(r.s, t.Namespace))
				continue
			}
			msg := writeFailedMessage(r.s.TargetName, err, want.Data)
			if r.s.PerNamespace != nil {
				r.failures = append(r.failures, v1alpha1.NamespaceFailure{Namespace: t.Namespace, Reason: v1alpha1.ReasonWriteFailed, Message: msg})
			}
			errs = append(errs, fmt.Errorf("namespace %s: %s", t.Namespace, msg))
			continue
		}
		kept = append(kept, t)
	}
	r.targets = kept
	return errs
}

// finish records the outcome of a pass that kept or wrote a token: tok is the token just written
// (nil when every destination kept its own), issued whether it is new to the credential.
func (p *Pass) finish(ctx context.Context, r *run, writeErrs []error, tok *token.Token, issued bool) (ctrl.Result, error) {
	s := r.s
	if len(writeErrs) > 0 && s.PerNamespace == nil {
		// One Secret, which could not be written: the workqueue retries with backoff, and status
		// goes on describing the Secret as it is.
		return ctrl.Result{}, kerrors.NewAggregate(writeErrs)
	}
	var issuedAt, expiresAt, next time.Time
	switch {
	case tok != nil:
		issuedAt, expiresAt, next = tok.IssuedAt, tok.ExpiresAt, RefreshTime(s, tok.IssuedAt, tok.ExpiresAt)
	case len(r.targets) > 0:
		issuedAt, expiresAt, next = r.earliestRefresh()
	}
	if !next.IsZero() {
		setTokenTimes(s.Status, s.TargetName, issuedAt, expiresAt, next)
	}
	changed := setServed(s, len(r.targets), r.failures, expiresAt, next, r.now)
	cond := readyCondition(s.Status.Conditions)
	switch {
	case changed && len(r.failures) > 0:
		p.event(s, corev1.EventTypeWarning, cond.Reason, "%s", cond.Message)
	case changed && !issued: // a new token has its own TokenRefreshed event below
		p.event(s, corev1.EventTypeNormal, cond.Reason, "%s", cond.Message)
	}
	if issued && tok != nil {
		p.announce(ctx, r, *tok, next)
	}
	if len(writeErrs) > 0 {
		return ctrl.Result{}, kerrors.NewAggregate(writeErrs) // the workqueue retries with backoff
	}
	wait := ConflictRecheck
	if !next.IsZero() {
		wait = refresh.RequeueAfter(r.now, next)
	}
	if len(r.failures) > 0 && wait > ConflictRecheck {
		wait = ConflictRecheck // a foreign Secret is not in the cache: its removal brings no event
	}
	return ctrl.Result{RequeueAfter: wait}, nil
}

// announce records a token new to the credential: a log line, an Event where it is news (the first
// token of a spec, or the first after failures — not the routine refresh of a healthy credential,
// which status.expiresAt and the metrics already show), and a Warning when renewBefore had to be
// clamped or is too short.
func (p *Pass) announce(ctx context.Context, r *run, tok token.Token, next time.Time) {
	s := r.s
	where := fmt.Sprintf("Secret %q", s.TargetName)
	if s.PerNamespace != nil {
		where += fmt.Sprintf(" in %d namespaces", len(r.targets))
	}
	if !r.routine {
		p.event(s, corev1.EventTypeNormal, v1alpha1.ReasonTokenRefreshed, "wrote a new token to %s, valid until %s; next refresh at %s",
			where, rfc3339(tok.ExpiresAt), rfc3339(next))
	}
	log.FromContext(ctx).Info("token refreshed", "secret", s.TargetName, "namespaces", len(r.targets),
		"expiresAt", rfc3339(tok.ExpiresAt), "nextRefresh", rfc3339(next))
	rb, clamped := EffectiveRenewBefore(s, tok.IssuedAt, tok.ExpiresAt)
	if clamped {
		p.event(s, corev1.EventTypeWarning, v1alpha1.ReasonRenewBeforeClamped, "renewBefore %s is not shorter than the token's lifetime %s; using %s",
			s.RenewBefore.Duration, tok.Lifetime(), rb)
	}
	if r.newSpec && rb < MinSidecarRenewBefore && tok.Lifetime() >= 2*MinSidecarRenewBefore {
		p.event(s, corev1.EventTypeWarning, v1alpha1.ReasonRenewBeforeTooShort,
			"renewBefore %s is below %s: a job that takes its tokens from the token-server sidecar may be handed a token that expires before it asks again "+
				"(the kubelet takes up to about 2m to deliver a new token, and SDK clients ask again 40s before expiry); see docs/long-runs.md",
			rb, MinSidecarRenewBefore)
	}
}

// backingOff reports whether a failed exchange for the same inputs and spec is still waiting out
// its retry delay. A spec change or new inputs (rotated secret, fixed key) retry at once, but
// not more often than FailureMemory.bypass allows.
func (p *Pass) backingOff(r *run) (time.Duration, bool) {
	st := r.s.Status
	if st.FailedRefreshAttempts == 0 || st.NextRefreshTime == nil || !r.now.Before(st.NextRefreshTime.Time) {
		return 0, false
	}
	if p.Failures.inputsChangedSinceFailure(r.s.Key(), r.s.uid(), r.inputsHash) || ReadyGeneration(st) != r.s.generation() {
		if wait, ok := p.Failures.bypass(r.s.Key(), r.s.uid(), r.now); !ok {
			return refresh.RequeueAfter(r.now, r.now.Add(wait)), true
		}
		return 0, false
	}
	return refresh.RequeueAfter(r.now, st.NextRefreshTime.Time), true
}

// waitingOut records a pass that waits out the retry delay of a failed exchange: the destinations
// keep what they hold, and one that lost its token meanwhile (a Secret deleted, a namespace that
// joined) has none, which Ready says.
func (p *Pass) waitingOut(r *run) {
	served := r.recordServed()
	why := "the last refresh failed and is retried at " + rfc3339(r.s.Status.NextRefreshTime.Time)
	if notAllServed(r.s, served, r.selected, r.failures, why, r.now) {
		cond := readyCondition(r.s.Status.Conditions)
		p.event(r.s, corev1.EventTypeWarning, cond.Reason, "%s", cond.Message)
	}
}

// describesSpec reports whether Ready already says something about the current spec (a token
// request still running says nothing yet).
func describesSpec(s *Subject) bool {
	ready := readyCondition(s.Status.Conditions)
	return ready.ObservedGeneration == s.generation() && ready.Reason != v1alpha1.ReasonTokenPending
}

// pendingRecheck is when a pass that left an exchange running looks again at the latest, should
// its notification be lost; normally the exchange's completion brings it back at once.
const pendingRecheck = time.Minute

// exchangePending records a pass that left the exchange running (a slow or hanging endpoint): the
// destinations keep what they hold, and Ready stays honest meanwhile — it turns False
// (TokenExpired) once their token has expired, at expiresAt, because the pass is requeued then
// however long the exchange takes.
func (p *Pass) exchangePending(r *run) (ctrl.Result, error) {
	s := r.s
	served := r.recordServed()
	st := s.Status
	if r.newSpec {
		// Nothing is known about this spec yet: say so, so that GitOps tools wait rather than take
		// a status without Ready, or one about an earlier spec, for the answer.
		setReady(st, s.generation(), metav1.ConditionUnknown, v1alpha1.ReasonTokenPending,
			"a token request for the current spec is in progress", r.now)
	}
	if st.ExpiresAt != nil && !r.now.Before(st.ExpiresAt.Time) && readyCondition(st.Conditions).Status == metav1.ConditionTrue {
		if setReady(st, s.generation(), metav1.ConditionFalse, v1alpha1.ReasonTokenExpired,
			fmt.Sprintf("the token in the Secret expired at %s; a refresh is in progress", rfc3339(st.ExpiresAt.Time)), r.now) {
			cond := readyCondition(st.Conditions)
			p.event(s, corev1.EventTypeWarning, cond.Reason, "%s", cond.Message)
		}
	}
	if notAllServed(s, served, r.selected, r.failures, "a refresh is in progress", r.now) {
		cond := readyCondition(st.Conditions)
		p.event(s, corev1.EventTypeWarning, cond.Reason, "%s", cond.Message)
	}
	wait := pendingRecheck
	if st.ExpiresAt != nil && r.now.Before(st.ExpiresAt.Time) {
		wait = min(wait, refresh.RequeueAfter(r.now, st.ExpiresAt.Time))
	}
	return ctrl.Result{RequeueAfter: wait}, nil
}

// exchangeFailed records a failed exchange and schedules the retry: capped exponential backoff
// for transient errors (Retry-After honoured), a slow retry for permanent ones, and never later
// than the current token's expiry, so Ready turns False on time. The tokens in the destinations
// stay; "still valid" means valid in every destination that can be written.
func (p *Pass) exchangeFailed(ctx context.Context, r *run, err error) (ctrl.Result, error) {
	s := r.s
	terr := token.AsError(err)
	p.Failures.failedFor(s.Key(), s.uid(), r.inputsHash)
	validUntil := r.validUntil()
	jitter := refresh.JitterFraction(fmt.Sprintf("%s/%d", s.uid(), s.Status.FailedRefreshAttempts))
	delay := refresh.RetryDelay(s.Status.FailedRefreshAttempts+1, terr.Transient, terr.RetryAfter, jitter)
	next := refresh.NextRetry(r.now, validUntil, delay)
	// Retry-After counts from the answer, which came after this pass began (up to --token-timeout
	// later); the provider asked us to wait, and the token's expiry does not override that.
	if earliest := p.Clock.Now().Add(terr.RetryAfter); terr.RetryAfter > 0 && next.Before(earliest) {
		next = earliest
	}
	// Status stores whole seconds; round up so that the stored retry time is never earlier than
	// the one the backoff check must honour.
	if t := next.Truncate(time.Second); !t.Equal(next) {
		next = t.Add(time.Second)
	}
	served := r.recordServed()
	prev := readyCondition(s.Status.Conditions)
	setRefreshFailed(s.Status, s.generation(), terr.Reason, terr.Transient, terr.Error(), validUntil, next, r.now)
	notAllServed(s, served, r.selected, r.failures, "refreshing failed: "+terr.Error(), r.now)
	if conditionChanged(prev, readyCondition(s.Status.Conditions)) || s.Status.FailedRefreshAttempts == 1 {
		p.event(s, corev1.EventTypeWarning, v1alpha1.ReasonRefreshFailed, "%s", terr.Error())
	}
	log.FromContext(ctx).Info("token refresh failed", "reason", terr.Reason, "transient", terr.Transient,
		"error", terr.Error(), "attempts", s.Status.FailedRefreshAttempts, "retryAt", rfc3339(next))
	return ctrl.Result{RequeueAfter: refresh.RequeueAfter(r.now, next)}, nil
}

// inputsFailed handles an unreadable client-credentials Secret, CA ConfigMap, ServiceAccount or
// spec. Missing objects and keys are fixed by the user, and the watches bring the credential back
// then. Any other error (an API error) is returned for the workqueue to retry with backoff.
func (p *Pass) inputsFailed(s *Subject, err error, now time.Time) (ctrl.Result, error) {
	var cerr *ConditionError
	if errors.As(err, &cerr) {
		return p.notReady(s, cerr.Reason, cerr.Error(), now)
	}
	var terr *token.Error
	if errors.As(err, &terr) {
		return p.notReady(s, terr.Reason, terr.Error(), now)
	}
	return ctrl.Result{}, err
}

// notReady records a problem that only the user can fix; no timer brings the credential back,
// its watches do.
func (p *Pass) notReady(s *Subject, reason, msg string, now time.Time) (ctrl.Result, error) {
	if setNotReady(s.Status, s.generation(), reason, msg, now) {
		p.event(s, corev1.EventTypeWarning, reason, "%s", msg)
	}
	return ctrl.Result{}, nil
}

func (p *Pass) event(s *Subject, eventType, reason, note string, args ...any) {
	p.Recorder.Eventf(s.Object, nil, eventType, reason, reason, note, args...)
}

// currentToken returns the times of the token in t's Secret when it was issued for the current
// inputs.
func (r *run) currentToken(t Destination) (issuedAt, expiresAt time.Time, ok bool) {
	if t.Secret == nil || t.Secret.Annotations[v1alpha1.AnnotationInputsHash] != r.inputsHash {
		return time.Time{}, time.Time{}, false
	}
	return secret.ParseTimes(t.Secret.Annotations)
}

// validUntil is when the first writable destination's token expires, when every one of them
// holds a token for the current inputs; zero otherwise.
func (r *run) validUntil() time.Time {
	var first time.Time
	for _, t := range r.targets {
		_, expiresAt, ok := r.currentToken(t)
		if !ok {
			return time.Time{}
		}
		if first.IsZero() || expiresAt.Before(first) {
			first = expiresAt
		}
	}
	return first
}

// earliestRefresh returns the token times of the destination due for refresh first.
func (r *run) earliestRefresh() (issuedAt, expiresAt, next time.Time) {
	for _, t := range r.targets {
		i, e, ok := secret.ParseTimes(t.Secret.Annotations)
		if !ok {
			continue
		}
		if n := RefreshTime(r.s, i, e); next.IsZero() || n.Before(next) {
			issuedAt, expiresAt, next = i, e, n
		}
	}
	return issuedAt, expiresAt, next
}

// recordServed records, when no token was written in this pass, how many destinations hold a
// valid token for the current inputs, and the ones that failed. It returns the count.
func (r *run) recordServed() int {
	served := 0
	for _, t := range r.targets {
		if _, expiresAt, ok := r.currentToken(t); ok && r.now.Before(expiresAt) {
			served++
		}
	}
	if r.s.PerNamespace != nil {
		setNamespaces(r.s.PerNamespace, served, r.failures)
	}
	return served
}
