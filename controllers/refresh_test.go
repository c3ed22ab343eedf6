package controllers

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/token"
	"github.com/dbtoken/databricks-token-operator/internal/token/tokentest"
)

// The refresh rule is one specification for both kinds: every spec below runs once against a
// DatabricksCredential and once against a ClusterDatabricksCredential that selects one
// namespace. They call Reconcile directly with a fake clock and a fake token provider, against
// the envtest API server (no manager runs), built exactly as Setup builds them, and step time to
// check each decision.

// kindUnderTest is one credential kind as the shared specification drives it.
type kindUnderTest struct {
	name string
	// build returns a credential of this kind (not created) with a databricks identity whose
	// client-credentials Secret is ns/sp and whose token Secret is written to namespace ns.
	build func(ns, host string) client.Object
	// rebuild returns a new credential with the same name, namespace and spec as obj (a GitOps
	// delete and re-create).
	rebuild func(obj client.Object) client.Object
	// fields points at obj's spec fields that both kinds have.
	fields func(obj client.Object) commonFields
	// status points at obj's status fields that both kinds have.
	status func(obj client.Object) *v1alpha1.DatabricksCredentialStatus
	// targetName is the name of obj's token Secret.
	targetName func(obj client.Object) string
	// reconciler returns this kind's reconciler over shared.
	reconciler func(shared *Shared, recorder events.EventRecorder) reconcile.Reconciler
}

// commonFields are the spec fields both kinds share.
type commonFields struct {
	Host        *string
	Scopes      *[]string
	RenewBefore **metav1.Duration
	Target      *v1alpha1.TargetSecret
}

var kindsUnderTest = []kindUnderTest{
	{
		name: "DatabricksCredential",
		build: func(ns, host string) client.Object {
			return databricksCredential(ns, "cred", host, "sp")
		},
		rebuild: func(obj client.Object) client.Object {
			old := obj.(*v1alpha1.DatabricksCredential)
			return &v1alpha1.DatabricksCredential{ObjectMeta: metav1.ObjectMeta{Namespace: old.Namespace, Name: old.Name}, Spec: *old.Spec.DeepCopy()}
		},
		fields: func(obj client.Object) commonFields {
			c := obj.(*v1alpha1.DatabricksCredential)
			return commonFields{Host: &c.Spec.Host, Scopes: &c.Spec.Scopes, RenewBefore: &c.Spec.RenewBefore, Target: &c.Spec.Target}
		},
		status: func(obj client.Object) *v1alpha1.DatabricksCredentialStatus {
			return &obj.(*v1alpha1.DatabricksCredential).Status
		},
		targetName: func(obj client.Object) string { return obj.(*v1alpha1.DatabricksCredential).TargetName() },
		reconciler: func(shared *Shared, recorder events.EventRecorder) reconcile.Reconciler {
			return NewDatabricksCredentialReconciler(shared, recorder)
		},
	},
	{
		name: "ClusterDatabricksCredential",
		build: func(ns, host string) client.Object {
			label := teamLabel()
			setNamespaceLabels(ns, label)
			return clusterCredential(host, ns, "sp", label)
		},
		rebuild: func(obj client.Object) client.Object {
			old := obj.(*v1alpha1.ClusterDatabricksCredential)
			return &v1alpha1.ClusterDatabricksCredential{ObjectMeta: metav1.ObjectMeta{Name: old.Name}, Spec: *old.Spec.DeepCopy()}
		},
		fields: func(obj client.Object) commonFields {
			c := obj.(*v1alpha1.ClusterDatabricksCredential)
			return commonFields{Host: &c.Spec.Host, Scopes: &c.Spec.Scopes, RenewBefore: &c.Spec.RenewBefore, Target: &c.Spec.Target}
		},
		status: func(obj client.Object) *v1alpha1.DatabricksCredentialStatus {
			return &obj.(*v1alpha1.ClusterDatabricksCredential).Status.DatabricksCredentialStatus
		},
		targetName: func(obj client.Object) string { return obj.(*v1alpha1.ClusterDatabricksCredential).TargetName() },
		reconciler: func(shared *Shared, recorder events.EventRecorder) reconcile.Reconciler {
			return NewClusterDatabricksCredentialReconciler(shared, recorder)
		},
	},
}

var _ = Describe("The refresh pass", func() {
	for _, kind := range kindsUnderTest {
		Context("of a "+kind.name, func() { refreshSpecification(kind) })
	}
})

func refreshSpecification(kind kindUnderTest) {
	var (
		ns       string
		clk      *clocktesting.FakeClock
		provider *tokentest.Provider
		recorder *events.FakeRecorder
		r        reconcile.Reconciler
		cred     client.Object
		t0       = time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	)
	const host = "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com"

	// reconcileErr runs one pass and returns its RequeueAfter and error.
	reconcileErr := func() (time.Duration, error) {
		res, err := r.Reconcile(suiteCtx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(cred)})
		return res.RequeueAfter, err
	}
	// reconcile runs one pass that must succeed and returns its RequeueAfter.
	reconcile := func() time.Duration {
		wait, err := reconcileErr()
		ExpectWithOffset(1, err).NotTo(HaveOccurred())
		return wait
	}
	// restart replaces the reconciler as a new process would: nothing in memory.
	restart := func() { r = kind.reconciler(newDirectShared(clk, provider), recorder) }
	fresh := func() client.Object {
		obj := cred.DeepCopyObject().(client.Object)
		ExpectWithOffset(1, k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(cred), obj)).To(Succeed())
		return obj
	}
	status := func() *v1alpha1.DatabricksCredentialStatus { return kind.status(fresh()) }
	readyOf := func() metav1.Condition {
		for _, c := range status().Conditions {
			if c.Type == v1alpha1.ConditionReady {
				return c
			}
		}
		return metav1.Condition{}
	}
	reason := func() string {
		c := readyOf()
		return fmt.Sprintf("%s/%s", c.Status, c.Reason)
	}
	update := func(mutate func(commonFields)) {
		obj := fresh()
		mutate(kind.fields(obj))
		ExpectWithOffset(1, k8sClient.Update(suiteCtx, obj)).To(Succeed())
	}
	target := func() *corev1.Secret { return getSecret(ns, kind.targetName(fresh())) }
	secretToken := func() string {
		s := target()
		ExpectWithOffset(1, s).NotTo(BeNil(), "no token Secret")
		return string(s.Data["DATABRICKS_TOKEN"])
	}
	eventsSeen := func() []string {
		var out []string
		for {
			select {
			case e := <-recorder.Events:
				out = append(out, e)
			default:
				return out
			}
		}
	}
	failWith := func(e *token.Error) {
		provider.TokenFunc = func(ctx context.Context, req token.Request) (token.Token, error) { return token.Token{}, e }
	}
	succeed := func() {
		provider.TokenFunc = func(ctx context.Context, req token.Request) (token.Token, error) {
			return token.Token{AccessToken: "tok-" + rand.String(20), IssuedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)}, nil
		}
	}
	create := func() { ExpectWithOffset(1, k8sClient.Create(suiteCtx, cred)).To(Succeed()) }

	BeforeEach(func() {
		ns = newNamespace()
		clk = clocktesting.NewFakeClock(t0)
		provider = trackFake(&tokentest.Provider{Clock: clk, Lifetime: time.Hour})
		recorder = events.NewFakeRecorder(100)
		restart()
		newClientSecret(ns, "sp", "client-1")
		cred = kind.build(ns, host)
		*kind.fields(cred).RenewBefore = &metav1.Duration{Duration: 20 * time.Minute}
	})
	AfterEach(func() {
		// Leave nothing for a manager started by another spec to pick up.
		Expect(client.IgnoreNotFound(k8sClient.Delete(suiteCtx, cred))).To(Succeed())
	})

	It("exchanges once, then writes nothing until the refresh time, then refreshes", func() {
		create()
		wait := reconcile()
		Expect(provider.Calls()).To(Equal(1))
		st := status()
		Expect(reason()).To(Equal("True/TokenIssued"))
		Expect(st.ExpiresAt.Time).To(BeTemporally("==", t0.Add(time.Hour)))
		Expect(st.LastRefreshTime.Time).To(BeTemporally("==", t0))
		next := st.NextRefreshTime.Time
		Expect(next).To(BeTemporally("<=", t0.Add(40*time.Minute)))
		Expect(next).To(BeTemporally(">=", t0.Add(38*time.Minute)))
		Expect(wait).To(Equal(next.Sub(t0)))
		Expect(eventsSeen()).To(ContainElement(HavePrefix("Normal TokenRefreshed")))

		By("a second pass at the same time writes nothing")
		secretRV, credRV := target().ResourceVersion, fresh().GetResourceVersion()
		reconcile()
		Expect(provider.Calls()).To(Equal(1))
		Expect(target().ResourceVersion).To(Equal(secretRV))
		Expect(fresh().GetResourceVersion()).To(Equal(credRV))

		By("one second before the refresh time nothing happens")
		clk.SetTime(next.Add(-time.Second))
		Expect(reconcile()).To(Equal(time.Second))
		Expect(provider.Calls()).To(Equal(1))

		By("at the refresh time a new token replaces the old one, quietly: a routine refresh writes no Event")
		old := secretToken()
		eventsSeen()
		clk.SetTime(next)
		reconcile()
		Expect(provider.Calls()).To(Equal(2))
		Expect(secretToken()).NotTo(Equal(old))
		Expect(status().LastRefreshTime.Time).To(BeTemporally("==", next))
		Expect(eventsSeen()).To(BeEmpty())
	})

	It("clamps a renewBefore longer than the token's lifetime to half of it, with a Warning", func() {
		*kind.fields(cred).RenewBefore = &metav1.Duration{Duration: 2 * time.Hour}
		create()
		reconcile()
		next := status().NextRefreshTime.Time
		Expect(next).To(BeTemporally("<=", t0.Add(30*time.Minute)))
		Expect(next).To(BeTemporally(">=", t0.Add(27*time.Minute)))
		Expect(eventsSeen()).To(ContainElement(HavePrefix("Warning RenewBeforeClamped")))
	})

	It("warns once per spec when renewBefore is too short for the token-server sidecar", func() {
		*kind.fields(cred).RenewBefore = &metav1.Duration{Duration: 2 * time.Minute}
		create()
		reconcile()
		Expect(eventsSeen()).To(ContainElement(And(HavePrefix("Warning RenewBeforeTooShort"), ContainSubstring("renewBefore 2m0s is below 5m0s"))))

		By("the routine refreshes of the same spec do not repeat it")
		clk.SetTime(status().NextRefreshTime.Time)
		reconcile()
		Expect(provider.Calls()).To(Equal(2))
		Expect(eventsSeen()).NotTo(ContainElement(HavePrefix("Warning RenewBeforeTooShort")))

		By("five minutes or more is quiet")
		update(func(f commonFields) {
			*f.RenewBefore = &metav1.Duration{Duration: 5 * time.Minute}
			*f.Scopes = []string{"sql"}
		})
		reconcile()
		Expect(provider.Calls()).To(Equal(3))
		Expect(eventsSeen()).NotTo(ContainElement(HavePrefix("Warning RenewBeforeTooShort")))
	})

	It("backs off on transient failures, honours Retry-After, and resets on success", func() {
		failWith(&token.Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "HTTP 503", Message: "unavailable"})
		create()
		first := reconcile()
		Expect(first).To(BeNumerically("<=", 5*time.Second))
		Expect(first).To(BeNumerically(">=", 4*time.Second))
		Expect(reason()).To(Equal("False/RefreshFailing"), "no token for the spec yet")
		Expect(status().FailedRefreshAttempts).To(Equal(int32(1)))
		Expect(target()).To(BeNil())

		By("a pass during the backoff does not call the provider")
		clk.Step(2 * time.Second)
		reconcile()
		Expect(provider.Calls()).To(Equal(1))

		By("the second failure doubles the delay")
		clk.Step(first)
		second := reconcile()
		Expect(provider.Calls()).To(Equal(2))
		Expect(second).To(BeNumerically(">=", 9*time.Second))
		Expect(second).To(BeNumerically("<=", 10*time.Second))

		By("Retry-After overrides a shorter step")
		failWith(&token.Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "HTTP 429", Message: "throttled", RetryAfter: time.Minute})
		clk.Step(second)
		Expect(reconcile()).To(Equal(time.Minute))
		clk.Step(59 * time.Second)
		reconcile()
		Expect(provider.Calls()).To(Equal(3), "no request before Retry-After has passed")

		By("success resets the failure count, and is news")
		succeed()
		eventsSeen()
		clk.Step(time.Second)
		reconcile()
		Expect(reason()).To(Equal("True/TokenIssued"))
		Expect(status().FailedRefreshAttempts).To(BeZero())
		Expect(eventsSeen()).To(ContainElement(HavePrefix("Normal TokenRefreshed")))
	})

	It("counts Retry-After from the answer, not from the start of the pass", func() {
		// A slow identity provider: its 429 arrives 20 s into the pass and asks for 30 s more.
		provider.TokenFunc = func(ctx context.Context, req token.Request) (token.Token, error) {
			clk.Step(20 * time.Second)
			return token.Token{}, &token.Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "HTTP 429", Message: "throttled", RetryAfter: 30 * time.Second}
		}
		create()
		wait := reconcile()
		answeredAt := t0.Add(20 * time.Second)
		Expect(status().NextRefreshTime.Time).To(BeTemporally(">=", answeredAt.Add(30*time.Second)),
			"the provider asked for 30 s after its answer")
		Expect(t0.Add(wait)).To(BeTemporally(">=", answeredAt.Add(30*time.Second)), "RequeueAfter counts from the start of the pass")

		By("a pass before then sends nothing")
		clk.SetTime(answeredAt.Add(29 * time.Second))
		reconcile()
		Expect(provider.Calls()).To(Equal(1))
	})

	It("keeps the last good token while refreshing fails, then reports TokenExpired", func() {
		create()
		reconcile()
		good := secretToken()
		failWith(&token.Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "timeout", Message: "no answer"})
		clk.SetTime(status().NextRefreshTime.Time)
		reconcile()
		Expect(reason()).To(Equal("True/RefreshFailing"))
		Expect(readyOf().Message).To(ContainSubstring("token still valid until 2026-11-28T19:00:00Z"))
		Expect(eventsSeen()).To(ContainElement(HavePrefix("Warning RefreshFailed")))
		Expect(secretToken()).To(Equal(good))

		By("retries grow denser towards the expiry, and one lands within a second of it")
		expiry := t0.Add(time.Hour)
		var last time.Time
		for i := 0; clk.Now().Before(expiry); i++ {
			Expect(i).To(BeNumerically("<", 100))
			last = clk.Now()
			clk.Step(reconcile())
		}
		Expect(expiry.Sub(last)).To(BeNumerically("<=", time.Second), "the last attempt before expiry")
		Expect(clk.Now().Sub(expiry)).To(BeNumerically("<", time.Second), "the first pass after expiry")
		reconcile()
		Expect(reason()).To(Equal("False/TokenExpired"))
		Expect(secretToken()).To(Equal(good), "the Secret is never emptied")
	})

	It("leaves a hanging exchange running, reports TokenExpired at the expiry meanwhile, and recovers when it answers", func() {
		create()
		reconcile()
		good := secretToken()
		answer := make(chan struct{})
		provider.TokenFunc = func(ctx context.Context, req token.Request) (token.Token, error) {
			select {
			case <-answer:
			case <-ctx.Done():
				return token.Token{}, ctx.Err()
			}
			return token.Token{AccessToken: "tok-" + rand.String(20), IssuedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)}, nil
		}
		clk.SetTime(status().NextRefreshTime.Time)
		start := time.Now()
		wait := reconcile()
		Expect(time.Since(start)).To(BeNumerically("<", 5*time.Second), "the pass does not wait for the endpoint")
		Expect(reason()).To(Equal("True/TokenIssued"), "the token is still valid")
		Expect(clk.Now().Add(wait)).To(BeTemporally("<=", t0.Add(time.Hour)), "the pass comes back at the expiry at the latest")

		By("at the expiry, with the exchange still running")
		clk.SetTime(t0.Add(time.Hour))
		reconcile()
		Expect(reason()).To(Equal("False/TokenExpired"))
		Expect(readyOf().Message).To(ContainSubstring("a refresh is in progress"))
		Expect(secretToken()).To(Equal(good), "the Secret is never emptied")
		Expect(provider.Calls()).To(Equal(2), "one exchange, still running")

		By("the endpoint answers")
		close(answer)
		Eventually(func() string { _, _ = reconcileErr(); return reason() }, 5*time.Second, 50*time.Millisecond).Should(Equal("True/TokenIssued"))
		Expect(secretToken()).NotTo(Equal(good))
		Expect(provider.Calls()).To(Equal(2))
	})

	It("retries a permanent failure slowly, but at once when the client secret is rotated", func() {
		failWith(&token.Error{Reason: v1alpha1.ReasonInvalidClient, Code: "AADSTS7000215", Message: "Invalid client secret provided.", Hint: "use the secret's Value"})
		create()
		Expect(reconcile()).To(Equal(5 * time.Minute))
		Expect(reason()).To(Equal("False/InvalidClient"))
		clk.Step(time.Minute)
		reconcile()
		Expect(provider.Calls()).To(Equal(1))

		rotateClientSecret(ns, "sp")
		provider.TokenFunc = nil
		reconcile()
		Expect(provider.Calls()).To(Equal(2))
		Expect(reason()).To(Equal("True/TokenIssued"))
	})

	It("re-renders a target change without an exchange, and exchanges on a scope change", func() {
		create()
		reconcile()
		tok := secretToken()

		update(func(f commonFields) {
			f.Target.Data = map[string]string{
				"profiles.yml":     "host: {{ .Hostname }}\ntoken: {{ .Token }}\n",
				"DATABRICKS_TOKEN": "{{ .Token }}",
			}
			f.Target.Labels = map[string]string{"team": "analytics"}
		})
		reconcile()
		Expect(provider.Calls()).To(Equal(1))
		sec := target()
		Expect(slices.Sorted(maps.Keys(sec.Data))).To(Equal([]string{"DATABRICKS_TOKEN", "profiles.yml"}), "exactly the rendered keys")
		Expect(string(sec.Data["profiles.yml"])).To(Equal("host: dbc-a1b2c3d4-e5f6.cloud.databricks.com\ntoken: " + tok + "\n"))
		Expect(sec.Labels).To(HaveKeyWithValue("team", "analytics"))

		update(func(f commonFields) { *f.Scopes = []string{"sql"} })
		reconcile()
		Expect(provider.Calls()).To(Equal(2))
		Expect(provider.Requests()[1].Scopes).To(Equal([]string{"sql"}))
	})

	It("repairs a hand-edited or deleted Secret from the current token without an exchange", func() {
		create()
		reconcile()
		tok := secretToken()

		sec := target()
		sec.Data["DATABRICKS_TOKEN"] = []byte("tampered")
		delete(sec.Annotations, v1alpha1.AnnotationExpiresAt)
		Expect(k8sClient.Update(suiteCtx, sec)).To(Succeed())
		reconcile()
		Expect(secretToken()).To(Equal(tok))
		Expect(target().Annotations).To(HaveKey(v1alpha1.AnnotationExpiresAt))

		Expect(k8sClient.Delete(suiteCtx, target())).To(Succeed())
		reconcile()
		Expect(secretToken()).To(Equal(tok))
		Expect(provider.Calls()).To(Equal(1))
	})

	It("keeps a fresh token after a restart, with no exchange and status restored from the Secret", func() {
		create()
		reconcile()
		tok := secretToken()
		obj := fresh()
		*kind.status(obj) = v1alpha1.DatabricksCredentialStatus{}
		Expect(k8sClient.Status().Update(suiteCtx, obj)).To(Succeed())

		restart()
		clk.Step(10 * time.Minute)
		reconcile()
		Expect(provider.Calls()).To(Equal(1))
		Expect(secretToken()).To(Equal(tok))
		Expect(reason()).To(Equal("True/TokenIssued"))
		Expect(status().ExpiresAt.Time).To(BeTemporally("==", t0.Add(time.Hour)))
	})

	It("adopts the Secret of a deleted earlier credential of the same name and keeps its token", func() {
		create()
		reconcile()
		tok := secretToken()
		oldUID := fresh().GetUID()

		Expect(k8sClient.Delete(suiteCtx, cred)).To(Succeed())
		cred = kind.rebuild(cred)
		create()
		restart()
		reconcile()
		sec := target()
		owner := metav1.GetControllerOf(sec)
		Expect(owner.UID).NotTo(Equal(oldUID))
		Expect(owner.UID).To(Equal(fresh().GetUID()))
		Expect(sec.OwnerReferences).To(HaveLen(1))
		Expect(secretToken()).To(Equal(tok), "same inputs: the token is kept")
		Expect(provider.Calls()).To(Equal(1))
	})

	It("refuses a bad template before any exchange and leaves the Secret untouched", func() {
		create()
		reconcile()
		rv := target().ResourceVersion
		update(func(f commonFields) { f.Target.Data = map[string]string{"profiles.yml": "token: {{ .Tokn }}"} })
		clk.Step(time.Hour) // even when a refresh is due
		Expect(reconcile()).To(BeZero())
		Expect(reason()).To(Equal("False/InvalidTemplate"))
		Expect(readyOf().Message).To(ContainSubstring("profiles.yml"))
		Expect(target().ResourceVersion).To(Equal(rv))
		Expect(provider.Calls()).To(Equal(1))
	})

	It("refuses a template that computes on the token alike for every token, before any exchange", func() {
		create()
		reconcile()
		rv := target().ResourceVersion
		first := secretToken()[:1]
		wrong := "#" // not a character of a JWT
		var messages []string
		for _, guess := range []string{first, wrong} {
			// The template oracle (issue 11): before the token rule, the right guess failed
			// (InvalidTemplate) and the wrong one rendered (TokenIssued), one character per edit.
			update(func(f commonFields) {
				f.Target.Data = map[string]string{"t": `{{ if eq (slice .Token 0 1) "` + guess + `" }}{{ index .Token 99999 }}{{ end }}`}
			})
			reconcile()
			Expect(reason()).To(Equal("False/InvalidTemplate"))
			messages = append(messages, readyOf().Message)
		}
		Expect(messages[0]).To(ContainSubstring("uses .Token other than as {{ .Token }}"))
		Expect(messages[1]).To(Equal(messages[0]))
		Expect(target().ResourceVersion).To(Equal(rv))
		Expect(provider.Calls()).To(Equal(1))
	})

	It("reports a Secret owned by someone else as SecretConflict without an exchange", func() {
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: kind.targetName(cred), Labels: map[string]string{v1alpha1.LabelCredential: cred.GetName()},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "x", UID: types.UID("123"), Controller: ptr.To(true)}}},
			Data: map[string][]byte{"a": []byte("b")},
		})).To(Succeed())
		create()
		Expect(reconcile()).To(Equal(5 * time.Minute))
		Expect(reason()).To(Equal("False/SecretConflict"))
		explained := readyOf().Message
		if cc, ok := fresh().(*v1alpha1.ClusterDatabricksCredential); ok {
			Expect(explained).To(ContainSubstring("see status.failedNamespaces"))
			Expect(cc.Status.FailedNamespaces).To(HaveLen(1))
			explained = cc.Status.FailedNamespaces[0].Message
		}
		Expect(explained).To(ContainSubstring("is not owned by this " + kind.name))
		Expect(provider.Calls()).To(BeZero())
		Expect(target().Data).To(Equal(map[string][]byte{"a": []byte("b")}))
	})

	It("never puts the token or the client secret in status, events or a returned write error", func() {
		create()
		reconcile()
		tok := secretToken()
		Expect(fmt.Sprintf("%+v", *status())).NotTo(ContainSubstring(tok))
		for _, e := range eventsSeen() {
			Expect(strings.Contains(e, tok)).To(BeFalse())
		}

		By("an admission webhook that echoes the Secret it refuses")
		direct, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		echoing := interceptor.NewClient(direct, interceptor.Funcs{
			Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
				if s, ok := obj.(*corev1.Secret); ok {
					return apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, s.Name,
						errors.New("admission webhook \"policy.example.com\" denied the request: DATABRICKS_TOKEN="+string(s.Data["DATABRICKS_TOKEN"])+
							" in "+`{"data":{"DATABRICKS_TOKEN":"`+base64.StdEncoding.EncodeToString(s.Data["DATABRICKS_TOKEN"])+`"}}`))
				}
				return cl.Patch(ctx, obj, patch, opts...)
			},
		})
		shared := newDirectSharedWith(echoing, clk, provider)
		r = kind.reconciler(shared, recorder)
		clk.SetTime(status().NextRefreshTime.Time)
		_, err = reconcileErr()
		Expect(err).To(HaveOccurred(), "the refused write is retried by the workqueue")
		Expect(err.Error()).To(ContainSubstring("DATABRICKS_TOKEN=[redacted]"))
		for _, issued := range provider.Issued() {
			Expect(err.Error()).NotTo(ContainSubstring(issued), "the error controller-runtime logs must not hold the token")
			Expect(err.Error()).NotTo(ContainSubstring(base64.StdEncoding.EncodeToString([]byte(issued))), "nor its base64")
		}
		Expect(fmt.Sprintf("%+v", *status())).NotTo(ContainSubstring(provider.Issued()[1]))
	})

	It("retries a Secret write the API server refused with a conflict, without another token request", func() {
		conflicts := 2
		direct, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		conflicting := interceptor.NewClient(direct, interceptor.Funcs{
			Create: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				if _, ok := obj.(*corev1.Secret); ok && conflicts > 0 {
					conflicts--
					return apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, obj.GetName(), nil)
				}
				return cl.Create(ctx, obj, opts...)
			},
		})
		r = kind.reconciler(newDirectSharedWith(conflicting, clk, provider), recorder)
		create()
		for range 2 {
			_, err := reconcileErr()
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring("Operation cannot be fulfilled"))
		}
		reconcile()
		Expect(provider.Calls()).To(Equal(1), "the token obtained before the conflict is written, not a new one")
		Expect(secretToken()).To(Equal(provider.Issued()[0]))
		Expect(reason()).To(Equal("True/TokenIssued"))
	})
}

var _ = Describe("Both kinds share one token cache", func() {
	It("serves a namespaced and a cluster credential with the same identity from one token request", func() {
		ns := newNamespace()
		newClientSecret(ns, "sp", "client-1")
		clk := clocktesting.NewFakeClock(time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC))
		provider := trackFake(&tokentest.Provider{Clock: clk, Lifetime: time.Hour})
		shared := newDirectShared(clk, provider)
		recorder := events.NewFakeRecorder(100)
		const host = "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com"

		namespaced := databricksCredential(ns, "cred", host, "sp")
		Expect(k8sClient.Create(suiteCtx, namespaced)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(suiteCtx, namespaced))).To(Succeed()) })
		team := newLabelledNamespace(teamLabel())
		var teamNS corev1.Namespace
		Expect(k8sClient.Get(suiteCtx, types.NamespacedName{Name: team}, &teamNS)).To(Succeed())
		cluster := clusterCredential(host, ns, "sp", teamNS.Labels)
		Expect(k8sClient.Create(suiteCtx, cluster)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(suiteCtx, cluster))).To(Succeed()) })

		_, err := NewDatabricksCredentialReconciler(shared, recorder).Reconcile(suiteCtx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(namespaced)})
		Expect(err).NotTo(HaveOccurred())
		_, err = NewClusterDatabricksCredentialReconciler(shared, recorder).Reconcile(suiteCtx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(cluster)})
		Expect(err).NotTo(HaveOccurred())

		Expect(provider.Calls()).To(Equal(1), "one exchange for the identity, whichever kind asks")
		Expect(string(getSecret(team, cluster.Name).Data["DATABRICKS_TOKEN"])).To(Equal(string(getSecret(ns, "cred").Data["DATABRICKS_TOKEN"])))
		Expect(readyReason(namespaced)).To(Equal("True/TokenIssued"))
		Expect(clusterReadyReason(cluster)).To(Equal("True/TokenIssued"))
	})
})
