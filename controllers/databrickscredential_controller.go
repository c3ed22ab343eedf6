// Package controllers holds the DatabricksCredential reconciler: read the spec, decide whether the
// token in the target Secret is still good, exchange when it is not, write the Secret and status.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/refresh"
	"github.com/dbtoken/databricks-token-operator/internal/secret"
	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// ControllerName names the controller, its event recorder and its field manager.
const ControllerName = "databrickscredential"

// conflictRecheck is how often a SecretConflict is re-checked: the foreign Secret is not in the
// cache (it lacks our label), so its deletion produces no event.
const conflictRecheck = refresh.PermanentBackoff

// DatabricksCredentialReconciler keeps each DatabricksCredential's target Secret holding a token
// that is valid for the current spec and client secret, and replaces it at expiresAt −
// renewBefore. It never removes a token from the Secret: a failed refresh leaves the last good
// token in place until it expires, and status says why.
type DatabricksCredentialReconciler struct {
	// Client reads credentials and target Secrets from the cache and writes through the API.
	client.Client
	// APIReader reads client-credentials Secrets and CA ConfigMaps, which are not cached.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	// Clock drives every time decision; tests inject a fake one.
	Clock clock.PassiveClock
	// Provider performs token exchanges; tests inject the test identity provider or a fake.
	Provider token.Provider

	initOnce sync.Once
	memory   *failureMemory
	// shared lets credentials with the same identity share one exchange and token.
	shared *token.SharedCache
	// refs reads referenced objects only when they changed; nil (direct tests) reads APIReader.
	refs *referenceReader
	// secretWrites lets the Secret watch drop the echoes of this controller's own writes.
	secretWrites *ownWrites
	// statusWrites detects a cached credential older than this controller's last status write.
	statusWrites *statusWrites
}

// references is the reader for the objects a credential refers to.
func (r *DatabricksCredentialReconciler) references() client.Reader {
	if r.refs != nil {
		return r.refs
	}
	return r.APIReader
}

// +kubebuilder:rbac:groups=dbtoken.io,resources=databrickscredentials,verbs=get;list;watch
// +kubebuilder:rbac:groups=dbtoken.io,resources=databrickscredentials/status,verbs=get;update;patch
// finalizers/update lets the owner reference set blockOwnerDeletion where the
// OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift).
// +kubebuilder:rbac:groups=dbtoken.io,resources=databrickscredentials/finalizers,verbs=update
// Secrets: get/list/watch for the client credentials (metadata watch, direct reads) and the
// target Secrets (cached by label); create/update/patch to write target Secrets. No delete: the
// garbage collector removes a target Secret through its owner reference.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// ConfigMaps: caBundleRef is read directly and watched by metadata.
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// ServiceAccounts of federation and azure.workloadIdentity blocks: get to report a missing one
// before any exchange, list/watch by metadata to retry as soon as it appears, and create on
// serviceaccounts/token (the TokenRequest API) to mint the short-lived token that is exchanged.
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=serviceaccounts/token,verbs=create
// TokenReviews prove that a minted ServiceAccount token is not accepted by the Kubernetes API
// before it is sent anywhere (refuseAPIValidToken).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// Events record refreshes and failures.
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one credential's Secret and status up to date and returns when to look again:
// at the next refresh time, at the next retry after a failure, or never for problems that only a
// watched change can fix. Exactly one status write per pass, skipped when nothing changed.
func (r *DatabricksCredentialReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	r.initOnce.Do(func() {
		r.memory = newFailureMemory()
		r.shared = token.NewSharedCache(r.Provider, r.Clock)
		r.statusWrites = newStatusWrites(r.Clock)
	})
	cred := &v1alpha1.DatabricksCredential{}
	if err := r.statusWrites.get(ctx, r.Client, r.APIReader, req.NamespacedName, cred); err != nil {
		if apierrors.IsNotFound(err) {
			r.memory.forget(req.NamespacedName)
			r.statusWrites.forget(req.NamespacedName)
			forgetMetrics(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !cred.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // the Secret goes with its owner reference; nothing to clean up
	}
	before := cred.DeepCopy()
	defer func() {
		if err := r.patchStatus(ctx, before, cred); err != nil {
			res, retErr = ctrl.Result{}, kerrors.NewAggregate([]error{retErr, err})
		}
	}()
	now := r.Clock.Now()
	cred.Status.ObservedGeneration = cred.Generation
	cred.Status.SecretName = cred.TargetName()

	if err := secret.ValidateTemplates(cred.Spec.Target, cred.Spec.Host); err != nil {
		return r.notReady(cred, v1alpha1.ReasonInvalidTemplate, err.Error(), now)
	}
	inputs, err := r.resolveInputs(ctx, cred)
	if err != nil {
		return r.inputsFailed(cred, err, now)
	}
	target, err := r.getTarget(ctx, cred)
	if err != nil {
		return ctrl.Result{}, err
	}
	if ownershipOf(target, cred) == foreign {
		return r.conflict(cred, target.Name, now)
	}
	inputsHash := inputs.Hash()
	o := observed{key: req.NamespacedName, cred: cred, now: now, inputsHash: inputsHash, target: target,
		remembered: rememberedFrom(r.shared, inputsHash)}
	d := decide(o)
	log.FromContext(ctx).V(1).Info("decided", "action", d.action, "why", d.why)

	var tok token.Token
	switch d.action {
	case keep:
		return r.keep(ctx, cred, target, now)
	case rerender:
		tok = o.remembered.token
	case exchange:
		if wait, ok := r.backingOff(o); ok {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
		if tok, err = r.obtain(ctx, o, inputs); err != nil {
			recordAttempt(cred, false, token.AsError(err).Reason)
			return r.exchangeFailed(ctx, o, err)
		}
		r.memory.forget(req.NamespacedName)
	}
	// A token the credential did not hold yet — from an exchange, or shared by another credential
	// of the same identity — is counted and announced; re-rendering the token it already holds
	// (after a deleted or hand-edited Secret, a new host or target) is a quiet repair.
	issued := d.action == exchange || !holdsToken(&cred.Status, tok)
	if issued {
		recordAttempt(cred, true, v1alpha1.ReasonTokenIssued)
	}
	return r.write(ctx, o, tok, issued)
}

// holdsToken reports whether status already records tok (status keeps whole seconds).
func holdsToken(st *v1alpha1.DatabricksCredentialStatus, tok token.Token) bool {
	return st.ExpiresAt != nil && st.ExpiresAt.Unix() == tok.ExpiresAt.Unix()
}

// keep leaves the token in place, repairing only metadata drift, and refreshes status from the
// Secret's annotations (after a restart, status may be older than the Secret).
func (r *DatabricksCredentialReconciler) keep(ctx context.Context, cred *v1alpha1.DatabricksCredential, target *corev1.Secret, now time.Time) (ctrl.Result, error) {
	issuedAt, expiresAt, _ := secret.ParseTimes(target.Annotations)
	desired := secret.Desired{
		Data:        target.Data,
		Labels:      secret.Labels(cred.Name, cred.Spec.Target),
		Annotations: secret.KeptAnnotations(cred.Spec.Target, target.Annotations),
	}
	if _, err := r.applySecret(ctx, cred, target, desired); err != nil {
		return r.writeFailed(cred, err, now)
	}
	next := refreshTimeFor(cred, issuedAt, expiresAt)
	setTokenTimes(&cred.Status, cred.TargetName(), issuedAt, expiresAt, next)
	if setHealthy(&cred.Status, cred.Generation, expiresAt, next, now) {
		r.event(cred, corev1.EventTypeNormal, v1alpha1.ReasonTokenIssued, "token in Secret %q is valid until %s", cred.TargetName(), rfc3339(expiresAt))
	}
	return ctrl.Result{RequeueAfter: refresh.RequeueAfter(now, next)}, nil
}

// write renders tok into the target Secret and records it in status; issued announces a token the
// credential did not hold before.
func (r *DatabricksCredentialReconciler) write(ctx context.Context, o observed, tok token.Token, issued bool) (ctrl.Result, error) {
	cred := o.cred
	desired, err := secret.Render(secret.Input{
		Host: cred.Spec.Host, Token: tok.AccessToken, IssuedAt: tok.IssuedAt, ExpiresAt: tok.ExpiresAt,
		InputsHash: o.inputsHash, CredentialName: cred.Name, Target: cred.Spec.Target,
	})
	if err != nil {
		return r.notReady(cred, v1alpha1.ReasonInvalidTemplate, err.Error(), o.now)
	}
	if _, err := r.applySecret(ctx, cred, o.target, desired); err != nil {
		return r.writeFailed(cred, err, o.now)
	}
	rb, clamped := effectiveRenewBefore(cred, tok.IssuedAt, tok.ExpiresAt)
	next := refreshTimeFor(cred, tok.IssuedAt, tok.ExpiresAt)
	setTokenTimes(&cred.Status, cred.TargetName(), tok.IssuedAt, tok.ExpiresAt, next)
	setHealthy(&cred.Status, cred.Generation, tok.ExpiresAt, next, o.now)
	if issued {
		r.event(cred, corev1.EventTypeNormal, v1alpha1.ReasonTokenRefreshed, "wrote a new token to Secret %q, valid until %s; next refresh at %s", cred.TargetName(), rfc3339(tok.ExpiresAt), rfc3339(next))
		log.FromContext(ctx).Info("token refreshed", "secret", cred.TargetName(), "expiresAt", rfc3339(tok.ExpiresAt), "nextRefresh", rfc3339(next))
		if clamped {
			r.event(cred, corev1.EventTypeWarning, v1alpha1.ReasonRenewBeforeClamped, "renewBefore %s is not shorter than the token's lifetime %s; using %s", cred.Spec.RenewBefore.Duration, tok.Lifetime(), rb)
		}
	}
	return ctrl.Result{RequeueAfter: refresh.RequeueAfter(o.now, next)}, nil
}

// obtain gets a token for inputs: one that another credential with the same identity obtained and
// that is not yet due for refresh under this credential's renewBefore, or a new exchange, shared
// with any concurrent pass for the same identity.
func (r *DatabricksCredentialReconciler) obtain(ctx context.Context, o observed, inputs token.Request) (token.Token, error) {
	tok, shared, err := r.shared.Token(ctx, inputs, func(t token.Token) bool {
		return o.now.Before(refreshTimeFor(o.cred, t.IssuedAt, t.ExpiresAt))
	})
	if err == nil && shared {
		log.FromContext(ctx).V(1).Info("reusing a token of the same identity", "expiresAt", rfc3339(tok.ExpiresAt))
	}
	return tok, err
}

// backingOff reports whether a failed exchange for the same inputs and spec is still waiting out
// its retry delay. A spec change or new inputs (rotated secret, fixed key) retry at once.
func (r *DatabricksCredentialReconciler) backingOff(o observed) (time.Duration, bool) {
	st := o.cred.Status
	if st.FailedRefreshAttempts == 0 || st.NextRefreshTime == nil || !o.now.Before(st.NextRefreshTime.Time) {
		return 0, false
	}
	if r.memory.inputsChangedSinceFailure(o.key, o.cred.UID, o.inputsHash) || readyGeneration(o.cred) != o.cred.Generation {
		return 0, false
	}
	return refresh.RequeueAfter(o.now, st.NextRefreshTime.Time), true
}

// exchangeFailed records a failed exchange and schedules the retry: capped exponential backoff
// for transient errors (Retry-After honoured), a slow retry for permanent ones, and never later
// than the current token's expiry, so Ready turns False on time.
func (r *DatabricksCredentialReconciler) exchangeFailed(ctx context.Context, o observed, err error) (ctrl.Result, error) {
	cred := o.cred
	terr := token.AsError(err)
	r.memory.failedFor(o.key, cred.UID, o.inputsHash)
	var validUntil time.Time
	if o.target != nil && o.target.Annotations[v1alpha1.AnnotationInputsHash] == o.inputsHash {
		_, validUntil, _ = secret.ParseTimes(o.target.Annotations)
	}
	jitter := refresh.JitterFraction(fmt.Sprintf("%s/%d", cred.UID, cred.Status.FailedRefreshAttempts))
	delay := refresh.RetryDelay(cred.Status.FailedRefreshAttempts+1, terr.Transient, terr.RetryAfter, jitter)
	next := refresh.NextRetry(o.now, validUntil, delay)
	// Retry-After counts from the answer, which came after this pass began; the provider asked us
	// to wait, and the token's expiry does not override that.
	if earliest := r.Clock.Now().Add(terr.RetryAfter); terr.RetryAfter > 0 && next.Before(earliest) {
		next = earliest
	}
	// Status stores whole seconds; round up so that the stored retry time is never earlier than
	// the one the backoff check must honour.
	if t := next.Truncate(time.Second); !t.Equal(next) {
		next = t.Add(time.Second)
	}
	changed := setRefreshFailed(&cred.Status, cred.Generation, terr.Reason, terr.Transient, terr.Error(), validUntil, next, o.now)
	if changed || cred.Status.FailedRefreshAttempts == 1 {
		r.event(cred, corev1.EventTypeWarning, v1alpha1.ReasonRefreshFailed, "%s", terr.Error())
	}
	log.FromContext(ctx).Info("token refresh failed", "reason", terr.Reason, "transient", terr.Transient,
		"error", terr.Error(), "attempts", cred.Status.FailedRefreshAttempts, "retryAt", rfc3339(next))
	return ctrl.Result{RequeueAfter: refresh.RequeueAfter(o.now, next)}, nil
}

// inputsFailed handles an unreadable client-credentials Secret, CA ConfigMap or spec. Missing
// objects and keys are fixed by the user, and the watches bring the credential back then.
func (r *DatabricksCredentialReconciler) inputsFailed(cred *v1alpha1.DatabricksCredential, err error, now time.Time) (ctrl.Result, error) {
	var terr *token.Error
	if !errors.As(err, &terr) {
		return ctrl.Result{}, err // an API error: let the workqueue retry with backoff
	}
	return r.notReady(cred, terr.Reason, terr.Error(), now)
}

func (r *DatabricksCredentialReconciler) writeFailed(cred *v1alpha1.DatabricksCredential, err error, now time.Time) (ctrl.Result, error) {
	var conflict errSecretConflict
	if errors.As(err, &conflict) {
		return r.conflict(cred, conflict.name, now)
	}
	return ctrl.Result{}, err // API errors (conflicts, timeouts): the workqueue retries with backoff
}

func (r *DatabricksCredentialReconciler) conflict(cred *v1alpha1.DatabricksCredential, name string, now time.Time) (ctrl.Result, error) {
	msg := errSecretConflict{name: name}.Error() + " (hint: delete or rename that Secret, or set spec.target.name to another name)"
	if setNotReady(&cred.Status, cred.Generation, v1alpha1.ReasonSecretConflict, msg, now) {
		r.event(cred, corev1.EventTypeWarning, v1alpha1.ReasonSecretConflict, "%s", msg)
	}
	return ctrl.Result{RequeueAfter: conflictRecheck}, nil
}

// notReady records a problem that only the user can fix; no timer brings the credential back,
// its watches do.
func (r *DatabricksCredentialReconciler) notReady(cred *v1alpha1.DatabricksCredential, reason, msg string, now time.Time) (ctrl.Result, error) {
	if setNotReady(&cred.Status, cred.Generation, reason, msg, now) {
		r.event(cred, corev1.EventTypeWarning, reason, "%s", msg)
	}
	return ctrl.Result{}, nil
}

func (r *DatabricksCredentialReconciler) event(cred *v1alpha1.DatabricksCredential, eventType, reason, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(cred, nil, eventType, reason, reason, note, args...)
	}
}

// patchStatus writes status once, and only when this pass changed it.
func (r *DatabricksCredentialReconciler) patchStatus(ctx context.Context, before, after *v1alpha1.DatabricksCredential) error {
	return r.statusWrites.patch(ctx, r.Client, before, after, !equality.Semantic.DeepEqual(before.Status, after.Status))
}

func readyGeneration(cred *v1alpha1.DatabricksCredential) int64 {
	for _, c := range cred.Status.Conditions {
		if c.Type == v1alpha1.ConditionReady {
			return c.ObservedGeneration
		}
	}
	return 0
}
