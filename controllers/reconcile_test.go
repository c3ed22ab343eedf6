package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/token"
	"github.com/dbtoken/databricks-token-operator/internal/token/tokentest"
)

// These specs call Reconcile directly with a fake clock and a fake token provider, against the
// envtest apiserver (no manager runs), stepping time to check each decision of the refresh rule.
var _ = Describe("Reconcile with a fake clock", func() {
	var (
		ns       string
		clk      *clocktesting.FakeClock
		provider *tokentest.Provider
		recorder *events.FakeRecorder
		r        *DatabricksCredentialReconciler
		cred     *v1alpha1.DatabricksCredential
		t0       = time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	)

	// reconcile runs one pass and returns its RequeueAfter.
	reconcile := func() time.Duration {
		res, err := r.Reconcile(suiteCtx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(cred)})
		ExpectWithOffset(1, err).NotTo(HaveOccurred())
		return res.RequeueAfter
	}
	secretToken := func() string {
		return string(getSecret(ns, cred.TargetName()).Data["DATABRICKS_TOKEN"])
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

	BeforeEach(func() {
		ns = newNamespace()
		clk = clocktesting.NewFakeClock(t0)
		provider = trackFake(&tokentest.Provider{Clock: clk, Lifetime: time.Hour})
		recorder = events.NewFakeRecorder(100)
		r = &DatabricksCredentialReconciler{Client: k8sClient, APIReader: k8sClient, Scheme: scheme,
			Recorder: recorder, Clock: clk, Provider: provider}
		newClientSecret(ns, "sp", "client-1")
		cred = databricksCredential(ns, "cred", "https://dbc-a1b2c3d4-e5f6.cloud.databricks.com", "sp")
		cred.Spec.RenewBefore = &metav1.Duration{Duration: 20 * time.Minute}
	})
	AfterEach(func() {
		// Leave nothing for a manager started by another spec to pick up.
		Expect(client.IgnoreNotFound(k8sClient.Delete(suiteCtx, cred))).To(Succeed())
	})
	create := func() {
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())
	}

	It("exchanges once, then writes nothing until the refresh time, then refreshes", func() {
		create()
		wait := reconcile()
		Expect(provider.Calls()).To(Equal(1))
		c := getCred(cred)
		Expect(readyReason(cred)).To(Equal("True/TokenIssued"))
		Expect(c.Status.ExpiresAt.Time).To(BeTemporally("==", t0.Add(time.Hour)))
		Expect(c.Status.LastRefreshTime.Time).To(BeTemporally("==", t0))
		next := c.Status.NextRefreshTime.Time
		Expect(next).To(BeTemporally("<=", t0.Add(40*time.Minute)))
		Expect(next).To(BeTemporally(">=", t0.Add(38*time.Minute)))
		Expect(wait).To(Equal(next.Sub(t0)))
		Expect(eventsSeen()).To(ContainElement(HavePrefix("Normal TokenRefreshed")))

		By("a second pass at the same time writes nothing")
		secretRV, credRV := getSecret(ns, "cred").ResourceVersion, getCred(cred).ResourceVersion
		reconcile()
		Expect(provider.Calls()).To(Equal(1))
		Expect(getSecret(ns, "cred").ResourceVersion).To(Equal(secretRV))
		Expect(getCred(cred).ResourceVersion).To(Equal(credRV))

		By("one second before the refresh time nothing happens")
		clk.SetTime(next.Add(-time.Second))
		Expect(reconcile()).To(Equal(time.Second))
		Expect(provider.Calls()).To(Equal(1))

		By("at the refresh time a new token replaces the old one")
		old := secretToken()
		clk.SetTime(next)
		reconcile()
		Expect(provider.Calls()).To(Equal(2))
		Expect(secretToken()).NotTo(Equal(old))
		Expect(getCred(cred).Status.LastRefreshTime.Time).To(BeTemporally("==", next))
	})

	It("clamps a renewBefore longer than the token's lifetime to half of it, with a Warning", func() {
		cred.Spec.RenewBefore = &metav1.Duration{Duration: 2 * time.Hour}
		create()
		reconcile()
		next := getCred(cred).Status.NextRefreshTime.Time
		Expect(next).To(BeTemporally("<=", t0.Add(30*time.Minute)))
		Expect(next).To(BeTemporally(">=", t0.Add(27*time.Minute)))
		Expect(eventsSeen()).To(ContainElement(HavePrefix("Warning RenewBeforeClamped")))
	})

	It("backs off on transient failures, honours Retry-After, and resets on success", func() {
		fail := true
		provider.TokenFunc = func(ctx context.Context, req token.Request) (token.Token, error) {
			if fail {
				return token.Token{}, &token.Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "HTTP 503", Message: "unavailable"}
			}
			return token.Token{AccessToken: "tok-" + rand.String(20), IssuedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)}, nil
		}
		create()
		first := reconcile()
		Expect(first).To(BeNumerically("<=", 5*time.Second))
		Expect(first).To(BeNumerically(">=", 4*time.Second))
		Expect(readyReason(cred)).To(Equal("False/RefreshFailing"), "no token for the spec yet")
		Expect(getCred(cred).Status.FailedRefreshAttempts).To(Equal(int32(1)))
		Expect(getSecret(ns, "cred")).To(BeNil())

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
		provider.TokenFunc = func(ctx context.Context, req token.Request) (token.Token, error) {
			return token.Token{}, &token.Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "HTTP 429", Message: "throttled", RetryAfter: time.Minute}
		}
		clk.Step(second)
		Expect(reconcile()).To(Equal(time.Minute))
		clk.Step(59 * time.Second)
		reconcile()
		Expect(provider.Calls()).To(Equal(3), "no request before Retry-After has passed")

		By("success resets the failure count")
		fail = false
		provider.TokenFunc = func(ctx context.Context, req token.Request) (token.Token, error) {
			return token.Token{AccessToken: "tok-" + rand.String(20), IssuedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)}, nil
		}
		clk.Step(time.Second)
		reconcile()
		Expect(readyReason(cred)).To(Equal("True/TokenIssued"))
		Expect(getCred(cred).Status.FailedRefreshAttempts).To(BeZero())
	})

	It("keeps the last good token while refreshing fails, then reports TokenExpired", func() {
		create()
		reconcile()
		good := secretToken()
		provider.TokenFunc = func(ctx context.Context, req token.Request) (token.Token, error) {
			return token.Token{}, &token.Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "timeout", Message: "no answer"}
		}
		clk.SetTime(getCred(cred).Status.NextRefreshTime.Time)
		reconcile()
		Expect(readyReason(cred)).To(Equal("True/RefreshFailing"))
		Expect(ready(getCred(cred)).Message).To(ContainSubstring("token still valid until 2026-11-28T19:00:00Z"))
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
		Expect(readyReason(cred)).To(Equal("False/TokenExpired"))
		Expect(secretToken()).To(Equal(good), "the Secret is never emptied")
	})

	It("retries a permanent failure slowly, but at once when the client secret is rotated", func() {
		provider.TokenFunc = func(ctx context.Context, req token.Request) (token.Token, error) {
			return token.Token{}, &token.Error{Reason: v1alpha1.ReasonInvalidClient, Code: "AADSTS7000215", Message: "Invalid client secret provided.", Hint: "use the secret's Value"}
		}
		create()
		Expect(reconcile()).To(Equal(5 * time.Minute))
		Expect(readyReason(cred)).To(Equal("False/InvalidClient"))
		clk.Step(time.Minute)
		reconcile()
		Expect(provider.Calls()).To(Equal(1))

		rotateClientSecret(ns, "sp")
		provider.TokenFunc = nil
		reconcile()
		Expect(provider.Calls()).To(Equal(2))
		Expect(readyReason(cred)).To(Equal("True/TokenIssued"))
	})

	It("re-renders a target or azure host change without an exchange, and exchanges on a scope change", func() {
		create()
		reconcile()
		tok := secretToken()

		c := getCred(cred)
		c.Spec.Target.Data = map[string]string{
			"profiles.yml":     "host: {{ .Hostname }}\ntoken: {{ .Token }}\n",
			"DATABRICKS_TOKEN": "{{ .Token }}",
		}
		c.Spec.Target.Labels = map[string]string{"team": "analytics"}
		Expect(k8sClient.Update(suiteCtx, c)).To(Succeed())
		reconcile()
		Expect(provider.Calls()).To(Equal(1))
		sec := getSecret(ns, "cred")
		Expect(sec.Data).To(HaveLen(2), "exactly the rendered keys")
		Expect(string(sec.Data["profiles.yml"])).To(Equal("host: dbc-a1b2c3d4-e5f6.cloud.databricks.com\ntoken: " + tok + "\n"))
		Expect(sec.Labels).To(HaveKeyWithValue("team", "analytics"))

		c = getCred(cred)
		c.Spec.Scopes = []string{"sql"}
		Expect(k8sClient.Update(suiteCtx, c)).To(Succeed())
		reconcile()
		Expect(provider.Calls()).To(Equal(2))
		Expect(provider.Requests()[1].Scopes).To(Equal([]string{"sql"}))
	})

	It("repairs a hand-edited or deleted Secret from the current token without an exchange", func() {
		create()
		reconcile()
		tok := secretToken()

		sec := getSecret(ns, "cred")
		sec.Data["DATABRICKS_TOKEN"] = []byte("tampered")
		delete(sec.Annotations, v1alpha1.AnnotationExpiresAt)
		Expect(k8sClient.Update(suiteCtx, sec)).To(Succeed())
		reconcile()
		Expect(secretToken()).To(Equal(tok))
		Expect(getSecret(ns, "cred").Annotations).To(HaveKey(v1alpha1.AnnotationExpiresAt))

		Expect(k8sClient.Delete(suiteCtx, getSecret(ns, "cred"))).To(Succeed())
		reconcile()
		Expect(secretToken()).To(Equal(tok))
		Expect(provider.Calls()).To(Equal(1))
	})

	It("keeps a fresh token after a restart, with no exchange and status restored from the Secret", func() {
		create()
		reconcile()
		tok := secretToken()
		c := getCred(cred)
		c.Status = v1alpha1.DatabricksCredentialStatus{}
		Expect(k8sClient.Status().Update(suiteCtx, c)).To(Succeed())

		restarted := &DatabricksCredentialReconciler{Client: k8sClient, APIReader: k8sClient, Scheme: scheme,
			Recorder: recorder, Clock: clk, Provider: provider}
		clk.Step(10 * time.Minute)
		_, err := restarted.Reconcile(suiteCtx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(cred)})
		Expect(err).NotTo(HaveOccurred())
		Expect(provider.Calls()).To(Equal(1))
		Expect(secretToken()).To(Equal(tok))
		Expect(readyReason(cred)).To(Equal("True/TokenIssued"))
		Expect(getCred(cred).Status.ExpiresAt.Time).To(BeTemporally("==", t0.Add(time.Hour)))
	})

	It("adopts the Secret of a deleted earlier credential of the same name and keeps its token", func() {
		create()
		reconcile()
		tok := secretToken()
		oldUID := getCred(cred).UID

		Expect(k8sClient.Delete(suiteCtx, cred)).To(Succeed())
		cred = databricksCredential(ns, "cred", cred.Spec.Host, "sp")
		cred.Spec.RenewBefore = &metav1.Duration{Duration: 20 * time.Minute}
		create()
		restarted := &DatabricksCredentialReconciler{Client: k8sClient, APIReader: k8sClient, Scheme: scheme,
			Recorder: recorder, Clock: clk, Provider: provider}
		_, err := restarted.Reconcile(suiteCtx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(cred)})
		Expect(err).NotTo(HaveOccurred())
		sec := getSecret(ns, "cred")
		owner := metav1.GetControllerOf(sec)
		Expect(owner.UID).NotTo(Equal(oldUID))
		Expect(owner.UID).To(Equal(getCred(cred).UID))
		Expect(sec.OwnerReferences).To(HaveLen(1))
		Expect(secretToken()).To(Equal(tok), "same inputs: the token is kept")
		Expect(provider.Calls()).To(Equal(1))
	})

	It("refuses a bad template before any exchange and leaves the Secret untouched", func() {
		create()
		reconcile()
		rv := getSecret(ns, "cred").ResourceVersion
		c := getCred(cred)
		c.Spec.Target.Data = map[string]string{"profiles.yml": "token: {{ .Tokn }}"}
		Expect(k8sClient.Update(suiteCtx, c)).To(Succeed())
		clk.Step(time.Hour) // even when a refresh is due
		Expect(reconcile()).To(BeZero())
		Expect(readyReason(cred)).To(Equal("False/InvalidTemplate"))
		Expect(ready(getCred(cred)).Message).To(ContainSubstring("profiles.yml"))
		Expect(getSecret(ns, "cred").ResourceVersion).To(Equal(rv))
		Expect(provider.Calls()).To(Equal(1))
	})

	It("reports a Secret owned by someone else as SecretConflict without an exchange", func() {
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cred", Labels: map[string]string{v1alpha1.LabelCredential: "cred"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "x", UID: types.UID("123"), Controller: ptr.To(true)}}},
			Data: map[string][]byte{"a": []byte("b")},
		})).To(Succeed())
		create()
		Expect(reconcile()).To(Equal(5 * time.Minute))
		Expect(readyReason(cred)).To(Equal("False/SecretConflict"))
		Expect(provider.Calls()).To(BeZero())
		Expect(getSecret(ns, "cred").Data).To(Equal(map[string][]byte{"a": []byte("b")}))
	})

	It("never puts the token in status, events or the condition message", func() {
		create()
		reconcile()
		tok := secretToken()
		c := getCred(cred)
		Expect(fmt.Sprintf("%+v", c.Status)).NotTo(ContainSubstring(tok))
		for _, e := range eventsSeen() {
			Expect(strings.Contains(e, tok)).To(BeFalse())
		}
	})
})
