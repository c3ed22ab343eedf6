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
	"github.com/dbtoken/databricks-token-operator/internal/refresh"
	"github.com/dbtoken/databricks-token-operator/internal/secret"
	"github.com/dbtoken/databricks-token-operator/internal/token"
)

// ClusterControllerName names the ClusterDatabricksCredential controller, its event recorder and
// its field manager.
const ClusterControllerName = "clusterdatabrickscredential"

// ClusterDatabricksCredentialReconciler keeps the token Secret of each ClusterDatabricksCredential
// in every namespace it selects. One token serves all of them: it is obtained once per refresh
// (expiresAt − renewBefore, the same rule as DatabricksCredential) and written everywhere, so a
// cluster credential costs one exchange per refresh however many namespaces it serves. Namespaces
// that stop matching lose the Secret, and only the Secrets this controller wrote are ever deleted.
// The client secret is read from its own namespace and never written anywhere.
type ClusterDatabricksCredentialReconciler struct {
	// Client reads credentials, namespaces (metadata) and target Secrets from the cache and writes
	// through the API.
	client.Client
	// APIReader reads client-credentials Secrets and CA ConfigMaps, which are not cached, and
	// confirms cache misses of target Secrets.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	// Clock drives every time decision; tests inject a fake one.
	Clock clock.PassiveClock
	// Provider performs token exchanges; tests inject the test identity provider or a fake.
	Provider token.Provider
	// Namespaces, when set, bounds the namespaces served (the manager's --namespaces, whose cache
	// holds only their Secrets). Empty: every namespace.
	Namespaces []string

	initOnce sync.Once
	memory   *failureMemory
	shared   *token.SharedCache
	// refs reads referenced objects only when they changed; nil (direct tests) reads APIReader.
	refs *referenceReader
	// secretWrites lets the Secret watch drop the echoes of this controller's own writes.
	secretWrites *ownWrites
	// statusWrites detects a cached credential older than this controller's last status write.
	statusWrites *statusWrites
}

// references is the reader for the objects a cluster credential refers to.
func (r *ClusterDatabricksCredentialReconciler) references() client.Reader {
	if r.refs != nil {
		return r.refs
	}
	return r.APIReader
}

// +kubebuilder:rbac:groups=dbtoken.io,resources=clusterdatabrickscredentials,verbs=get;list;watch
// +kubebuilder:rbac:groups=dbtoken.io,resources=clusterdatabrickscredentials/status,verbs=get;update;patch
// finalizers/update lets the owner references set blockOwnerDeletion where the
// OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift).
// +kubebuilder:rbac:groups=dbtoken.io,resources=clusterdatabrickscredentials/finalizers,verbs=update
// Namespaces: spec.namespaceSelector is matched against namespace labels (metadata-only watch).
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// Secrets: delete exists for this controller alone. When a namespace stops matching a
// ClusterDatabricksCredential (relabelled, or the selector changed) while the credential still
// exists, garbage collection cannot remove the token Secret written there, so the controller
// deletes it: only Secrets labelled for this cluster credential whose controller owner is it (by
// UID), with a UID and resourceVersion precondition. DatabricksCredential never deletes.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete

// Reconcile brings one cluster credential's Secrets and status up to date: it resolves the client
// credentials, finds the selected namespaces, deletes our Secrets where they no longer belong,
// decides with the DatabricksCredential policy chain whether any namespace needs a token, obtains
// at most one, and writes it to every selected namespace it may write. Exactly one status write
// per pass, skipped when nothing changed.
func (r *ClusterDatabricksCredentialReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	r.initOnce.Do(func() {
		r.memory = newFailureMemory()
		r.shared = token.NewSharedCache(r.Provider, r.Clock)
		r.statusWrites = newStatusWrites(r.Clock)
	})
	ccred := &v1alpha1.ClusterDatabricksCredential{}
	if err := r.statusWrites.get(ctx, r.Client, r.APIReader, req.NamespacedName, ccred); err != nil {
		if apierrors.IsNotFound(err) {
			r.memory.forget(req.NamespacedName)
			r.statusWrites.forget(req.NamespacedName)
			forgetMetrics(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !ccred.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // the Secrets go with their owner reference; nothing to clean up
	}
	before := ccred.DeepCopy()
	defer func() {
		if err := r.patchStatus(ctx, before, ccred); err != nil {
			res, retErr = ctrl.Result{}, kerrors.NewAggregate([]error{retErr, err})
		}
	}()
	now := r.Clock.Now()
	ccred.Status.ObservedGeneration = ccred.Generation
	ccred.Status.SecretName = ccred.TargetName()
	view := credentialView(ccred)

	if err := secret.ValidateTemplates(view.Spec.Target, view.Spec.Host); err != nil {
		return r.notReady(ccred, v1alpha1.ReasonInvalidTemplate, err.Error(), now)
	}
	inputs, err := r.resolveInputs(ctx, ccred)
	if err != nil {
		return r.inputsFailed(ccred, err, now)
	}
	selected, err := r.selectedNamespaces(ctx, ccred)
	if err != nil {
		return r.inputsFailed(ccred, err, now)
	}
	inputsHash := inputs.Hash()
	p := &clusterPass{ccred: ccred, view: view, key: req.NamespacedName, now: now, inputsHash: inputsHash,
		remembered: rememberedFrom(r.shared, inputsHash), selected: len(selected)}
	stale, err := r.observe(ctx, p, selected)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.removeStale(ctx, stale); err != nil {
		return ctrl.Result{}, err
	}
	if len(selected) == 0 {
		setNamespaces(&ccred.Status, 0, nil)
		return r.notReady(ccred, v1alpha1.ReasonNoMatchingNamespaces, noNamespacesMessage, now)
	}
	tok, source, why := p.decide()
	log.FromContext(ctx).V(1).Info("decided", "namespaces", len(selected), "writable", len(p.targets), "token", source, "why", why)

	switch source {
	case tokenKept:
		return r.finish(ctx, p, r.keepAll(ctx, p), nil)
	case tokenNeeded:
		if wait, ok := r.backingOff(p); ok {
			r.waitingOut(p)
			return ctrl.Result{RequeueAfter: wait}, nil
		}
		if tok, err = r.obtain(ctx, p, inputs); err != nil {
			recordAttempt(view, false, token.AsError(err).Reason)
			return r.exchangeFailed(ctx, p, err)
		}
		recordAttempt(view, true, v1alpha1.ReasonTokenIssued)
		r.memory.forget(req.NamespacedName)
	}
	if source == tokenRemembered && !holdsToken(&ccred.Status.DatabricksCredentialStatus, tok) {
		recordAttempt(view, true, v1alpha1.ReasonTokenIssued) // shared by another credential of the same identity
	}
	desired, err := r.render(p, tok)
	if err != nil {
		return r.notReady(ccred, v1alpha1.ReasonInvalidTemplate, err.Error(), now)
	}
	return r.finish(ctx, p, r.applyAll(ctx, p, func(*namespaceTarget) secret.Desired { return desired }), &tok)
}

// obtain gets one token for every namespace: the shared one of the same identity while it is not
// due for refresh under this credential's renewBefore, or a new exchange.
func (r *ClusterDatabricksCredentialReconciler) obtain(ctx context.Context, p *clusterPass, inputs token.Request) (token.Token, error) {
	tok, shared, err := r.shared.Token(ctx, inputs, func(t token.Token) bool {
		return p.now.Before(refreshTimeFor(p.view, t.IssuedAt, t.ExpiresAt))
	})
	if err != nil {
		return token.Token{}, err
	}
	p.exchanged = !shared
	if shared {
		log.FromContext(ctx).V(1).Info("reusing a token of the same identity", "expiresAt", rfc3339(tok.ExpiresAt))
	}
	return tok, nil
}

// keepAll leaves every namespace's token in place, repairing only metadata drift (and adopting
// Secrets of an earlier incarnation). It returns the write errors that are not conflicts.
func (r *ClusterDatabricksCredentialReconciler) keepAll(ctx context.Context, p *clusterPass) []error {
	labels := clusterLabels(p.ccred)
	return r.applyAll(ctx, p, func(t *namespaceTarget) secret.Desired {
		return secret.Desired{Data: t.secret.Data, Labels: labels,
			Annotations: secret.KeptAnnotations(p.view.Spec.Target, t.secret.Annotations)}
	})
}

// render renders tok once for every namespace: the Secrets differ only in their namespace.
func (r *ClusterDatabricksCredentialReconciler) render(p *clusterPass, tok token.Token) (secret.Desired, error) {
	desired, err := secret.Render(secret.Input{
		Host: p.view.Spec.Host, Token: tok.AccessToken, IssuedAt: tok.IssuedAt, ExpiresAt: tok.ExpiresAt,
		InputsHash: p.inputsHash, CredentialName: p.ccred.Name, Target: p.view.Spec.Target,
	})
	if err != nil {
		return secret.Desired{}, err
	}
	desired.Labels = clusterLabels(p.ccred)
	return desired, nil
}

// applyAll writes each target namespace's desired Secret. A Secret that turns out to be foreign
// becomes a SecretConflict failure and an API error a WriteFailed failure; the other namespaces
// are written regardless. The errors are returned so that the workqueue retries with backoff.
func (r *ClusterDatabricksCredentialReconciler) applyAll(ctx context.Context, p *clusterPass, desired func(*namespaceTarget) secret.Desired) []error {
	w := secretWriter{Client: r.Client, APIReader: r.APIReader, Scheme: r.Scheme, Owner: p.ccred,
		Ownership: func(s *corev1.Secret) ownership { return clusterOwnershipOf(s, p.ccred) }, Writes: r.secretWrites}
	var errs []error
	kept := p.targets[:0]
	for _, t := range p.targets {
		key := types.NamespacedName{Namespace: t.namespace, Name: p.ccred.TargetName()}
		if _, err := w.apply(ctx, key, t.secret, desired(&t)); err != nil {
			var conflict errSecretConflict
			if errors.As(err, &conflict) {
				p.failures = append(p.failures, conflictFailure(t.namespace, key.Name))
				continue
			}
			msg := writeFailedMessage(key.Name, err, desired(&t).Data)
			p.failures = append(p.failures, v1alpha1.NamespaceFailure{Namespace: t.namespace, Reason: v1alpha1.ReasonWriteFailed, Message: msg})
			errs = append(errs, fmt.Errorf("namespace %s: %s", t.namespace, msg))
			continue
		}
		kept = append(kept, t)
	}
	p.targets = kept
	return errs
}

// finish records the outcome of a pass that has a token for the namespaces: tok is the token just
// written (nil when every namespace kept its own). Ready is True only when every selected
// namespace holds a valid token.
func (r *ClusterDatabricksCredentialReconciler) finish(ctx context.Context, p *clusterPass, writeErrs []error, tok *token.Token) (ctrl.Result, error) {
	cc := p.ccred
	st := &cc.Status
	var issuedAt, expiresAt, next time.Time
	switch {
	case tok != nil:
		issuedAt, expiresAt, next = tok.IssuedAt, tok.ExpiresAt, refreshTimeFor(p.view, tok.IssuedAt, tok.ExpiresAt)
	case len(p.targets) > 0:
		issuedAt, expiresAt, next = p.earliestRefresh()
	}
	if !next.IsZero() {
		setTokenTimes(&st.DatabricksCredentialStatus, cc.TargetName(), issuedAt, expiresAt, next)
		st.FailedRefreshAttempts = 0
	}
	setNamespaces(st, len(p.targets), p.failures)
	var changed bool
	if len(p.failures) == 0 {
		changed = setReady(&st.DatabricksCredentialStatus, cc.Generation, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued,
			healthyMessage(len(p.targets), expiresAt, next), p.now)
	} else {
		changed = setReady(&st.DatabricksCredentialStatus, cc.Generation, metav1.ConditionFalse, p.failures[0].Reason,
			namespacesFailingMessage(p.failures, p.selected), p.now)
	}
	switch {
	case changed && len(p.failures) > 0:
		cond := readyCondition(st.Conditions)
		r.event(cc, corev1.EventTypeWarning, cond.Reason, "%s", cond.Message)
	case changed && !p.exchanged: // an exchange has its own TokenRefreshed event below
		cond := readyCondition(st.Conditions)
		r.event(cc, corev1.EventTypeNormal, cond.Reason, "%s", cond.Message)
	}
	if p.exchanged && tok != nil {
		r.event(cc, corev1.EventTypeNormal, v1alpha1.ReasonTokenRefreshed, "wrote a new token to Secret %q in %d namespaces, valid until %s; next refresh at %s",
			cc.TargetName(), len(p.targets), rfc3339(tok.ExpiresAt), rfc3339(next))
		log.FromContext(ctx).Info("token refreshed", "secret", cc.TargetName(), "namespaces", len(p.targets),
			"expiresAt", rfc3339(tok.ExpiresAt), "nextRefresh", rfc3339(next))
		if rb, clamped := effectiveRenewBefore(p.view, tok.IssuedAt, tok.ExpiresAt); clamped {
			r.event(cc, corev1.EventTypeWarning, v1alpha1.ReasonRenewBeforeClamped, "renewBefore %s is not shorter than the token's lifetime %s; using %s",
				cc.Spec.RenewBefore.Duration, tok.Lifetime(), rb)
		}
	}
	if len(writeErrs) > 0 {
		return ctrl.Result{}, kerrors.NewAggregate(writeErrs) // the workqueue retries with backoff
	}
	wait := conflictRecheck
	if !next.IsZero() {
		wait = refresh.RequeueAfter(p.now, next)
	}
	if len(p.failures) > 0 && wait > conflictRecheck {
		wait = conflictRecheck // a foreign Secret is not in the cache: its removal brings no event
	}
	return ctrl.Result{RequeueAfter: wait}, nil
}

// backingOff reports whether a failed exchange for the same inputs and spec is still waiting out
// its retry delay. A spec change or new inputs (rotated secret, fixed key) retry at once.
func (r *ClusterDatabricksCredentialReconciler) backingOff(p *clusterPass) (time.Duration, bool) {
	st := p.ccred.Status
	if st.FailedRefreshAttempts == 0 || st.NextRefreshTime == nil || !p.now.Before(st.NextRefreshTime.Time) {
		return 0, false
	}
	if r.memory.inputsChangedSinceFailure(p.key, p.ccred.UID, p.inputsHash) || readyGeneration(p.view) != p.ccred.Generation {
		return 0, false
	}
	return refresh.RequeueAfter(p.now, st.NextRefreshTime.Time), true
}

// exchangeFailed records a failed exchange and schedules the retry, exactly as for a
// DatabricksCredential. The tokens in the namespaces stay; "still valid" means valid in every
// namespace that can be written.
func (r *ClusterDatabricksCredentialReconciler) exchangeFailed(ctx context.Context, p *clusterPass, err error) (ctrl.Result, error) {
	cc := p.ccred
	terr := token.AsError(err)
	r.memory.failedFor(p.key, cc.UID, p.inputsHash)
	validUntil := p.validUntil()
	jitter := refresh.JitterFraction(fmt.Sprintf("%s/%d", cc.UID, cc.Status.FailedRefreshAttempts))
	delay := refresh.RetryDelay(cc.Status.FailedRefreshAttempts+1, terr.Transient, terr.RetryAfter, jitter)
	next := refresh.NextRetry(p.now, validUntil, delay)
	if terr.RetryAfter > 0 && next.Before(p.now.Add(terr.RetryAfter)) {
		next = p.now.Add(terr.RetryAfter) // the provider asked us to wait; expiry does not override that
	}
	served := p.recordServed()
	prev := readyCondition(cc.Status.Conditions)
	setRefreshFailed(&cc.Status.DatabricksCredentialStatus, cc.Generation, terr.Reason, terr.Transient, terr.Error(), validUntil, next, p.now)
	notAllServed(&cc.Status, cc.Generation, served, p.selected, p.failures, "refreshing failed: "+terr.Error(), p.now)
	if conditionChanged(prev, readyCondition(cc.Status.Conditions)) || cc.Status.FailedRefreshAttempts == 1 {
		r.event(cc, corev1.EventTypeWarning, v1alpha1.ReasonRefreshFailed, "%s", terr.Error())
	}
	log.FromContext(ctx).Info("token refresh failed", "reason", terr.Reason, "transient", terr.Transient,
		"error", terr.Error(), "attempts", cc.Status.FailedRefreshAttempts, "retryAt", rfc3339(next))
	return ctrl.Result{RequeueAfter: refresh.RequeueAfter(p.now, next)}, nil
}

// waitingOut records a pass that waits out the retry delay of a failed exchange: the namespaces
// keep what they hold, and a namespace that joined meanwhile has no token yet, which Ready says.
func (r *ClusterDatabricksCredentialReconciler) waitingOut(p *clusterPass) {
	cc := p.ccred
	served := p.recordServed()
	why := "the last refresh failed and is retried at " + rfc3339(cc.Status.NextRefreshTime.Time)
	if notAllServed(&cc.Status, cc.Generation, served, p.selected, p.failures, why, p.now) {
		cond := readyCondition(cc.Status.Conditions)
		r.event(cc, corev1.EventTypeWarning, cond.Reason, "%s", cond.Message)
	}
}

// inputsFailed handles an unreadable client-credentials Secret, CA ConfigMap or spec, exactly as
// for a DatabricksCredential: the watches bring the credential back when the user fixes it.
func (r *ClusterDatabricksCredentialReconciler) inputsFailed(cc *v1alpha1.ClusterDatabricksCredential, err error, now time.Time) (ctrl.Result, error) {
	var terr *token.Error
	if !errors.As(err, &terr) {
		return ctrl.Result{}, err // an API error: let the workqueue retry with backoff
	}
	return r.notReady(cc, terr.Reason, terr.Error(), now)
}

// notReady records a problem that only the user can fix; no timer brings the credential back,
// its watches do.
func (r *ClusterDatabricksCredentialReconciler) notReady(cc *v1alpha1.ClusterDatabricksCredential, reason, msg string, now time.Time) (ctrl.Result, error) {
	if setNotReady(&cc.Status.DatabricksCredentialStatus, cc.Generation, reason, msg, now) {
		r.event(cc, corev1.EventTypeWarning, reason, "%s", msg)
	}
	return ctrl.Result{}, nil
}

// removeStale deletes Secrets this cluster credential wrote in namespaces it no longer selects
// (or under a target name it no longer uses). The preconditions make sure that exactly the Secret
// judged ours is deleted, not one re-created or changed in between.
func (r *ClusterDatabricksCredentialReconciler) removeStale(ctx context.Context, stale []corev1.Secret) error {
	var errs []error
	for i := range stale {
		s := &stale[i]
		err := r.Delete(ctx, s, client.Preconditions{UID: &s.UID, ResourceVersion: &s.ResourceVersion})
		if client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting Secret %s/%s: %w", s.Namespace, s.Name, err))
			continue
		}
		log.FromContext(ctx).Info("removed the token Secret from a namespace that is no longer selected", "namespace", s.Namespace, "secret", s.Name)
	}
	return kerrors.NewAggregate(errs)
}

func (r *ClusterDatabricksCredentialReconciler) event(cc *v1alpha1.ClusterDatabricksCredential, eventType, reason, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(cc, nil, eventType, reason, reason, note, args...)
	}
}

// patchStatus writes status once, and only when this pass changed it.
func (r *ClusterDatabricksCredentialReconciler) patchStatus(ctx context.Context, before, after *v1alpha1.ClusterDatabricksCredential) error {
	return r.statusWrites.patch(ctx, r.Client, before, after, !equality.Semantic.DeepEqual(before.Status, after.Status))
}

// credentialView is the cluster credential as a DatabricksCredential: the same name, UID,
// generation, Ready condition and spec (references without their namespace). The policy chain,
// the refresh time and its jitter are computed on it, so both kinds follow one refresh rule.
func credentialView(cc *v1alpha1.ClusterDatabricksCredential) *v1alpha1.DatabricksCredential {
	return &v1alpha1.DatabricksCredential{
		ObjectMeta: metav1.ObjectMeta{Name: cc.Name, UID: cc.UID, Generation: cc.Generation},
		Spec:       cc.Spec.CredentialSpec(),
		Status:     v1alpha1.DatabricksCredentialStatus{Conditions: cc.Status.Conditions},
	}
}

// clusterLabels are the labels of every Secret a cluster credential writes: target.labels,
// dbtoken.io/credential (which the manager's Secret cache selects on) and
// dbtoken.io/cluster-credential (which tells them apart and finds them for removal).
func clusterLabels(cc *v1alpha1.ClusterDatabricksCredential) map[string]string {
	labels := secret.Labels(cc.Name, cc.Spec.Target)
	labels[v1alpha1.LabelClusterCredential] = cc.Name
	return labels
}
