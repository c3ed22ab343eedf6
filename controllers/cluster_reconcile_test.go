package controllers

import (
	"context"
	"fmt"
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

// These specs call the ClusterDatabricksCredential Reconcile directly with a fake clock and a fake
// token provider, against the envtest apiserver (no manager runs), for what only the cluster kind
// does: serve several namespaces, follow the selector, and report per namespace. The refresh rule
// itself is specified for both kinds at once in refresh_test.go.
var _ = Describe("ClusterDatabricksCredential Reconcile with a fake clock", func() {
	var (
		platform string // the namespace of the client-credentials Secret
		label    map[string]string
		clk      *clocktesting.FakeClock
		provider *tokentest.Provider
		recorder *events.FakeRecorder
		r        *ClusterDatabricksCredentialReconciler
		cc       *v1alpha1.ClusterDatabricksCredential
		secret   string
		t0       = time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	)

	newReconciler := func() *ClusterDatabricksCredentialReconciler {
		return NewClusterDatabricksCredentialReconciler(newDirectShared(clk, provider), recorder)
	}
	reconcile := func() time.Duration {
		res, err := r.Reconcile(suiteCtx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(cc)})
		ExpectWithOffset(1, err).NotTo(HaveOccurred())
		return res.RequeueAfter
	}
	tokenIn := func(ns string) string {
		s := getSecret(ns, cc.TargetName())
		ExpectWithOffset(1, s).NotTo(BeNil(), "no Secret in namespace %s", ns)
		return string(s.Data["DATABRICKS_TOKEN"])
	}
	teams := func(n int) []string {
		var out []string
		for range n {
			out = append(out, newLabelledNamespace(label))
		}
		return out
	}

	BeforeEach(func() {
		platform = newNamespace()
		label = teamLabel()
		clk = clocktesting.NewFakeClock(t0)
		provider = trackFake(&tokentest.Provider{Clock: clk, Lifetime: time.Hour})
		recorder = events.NewFakeRecorder(100)
		r = newReconciler()
		secret = newClientSecret(platform, "sp", "client-1")
		cc = clusterCredential("https://dbc-a1b2c3d4-e5f6.cloud.databricks.com", platform, "sp", label)
		cc.Spec.RenewBefore = &metav1.Duration{Duration: 20 * time.Minute}
	})
	AfterEach(func() {
		// Leave nothing for a manager started by another spec to pick up.
		Expect(client.IgnoreNotFound(k8sClient.Delete(suiteCtx, cc))).To(Succeed())
	})
	create := func() {
		ExpectWithOffset(1, k8sClient.Create(suiteCtx, cc)).To(Succeed())
	}

	It("exchanges once for every selected namespace, writes nothing until the refresh time, then refreshes them all", func() {
		namespaces := teams(3)
		create()
		wait := reconcile()
		Expect(provider.Calls()).To(Equal(1))
		Expect(provider.Requests()[0].ClientSecret).To(Equal(secret), "the client secret is read from its own namespace")
		first := tokenIn(namespaces[0])
		c := getClusterCred(cc)
		for _, ns := range namespaces {
			s := getSecret(ns, cc.TargetName())
			Expect(string(s.Data["DATABRICKS_TOKEN"])).To(Equal(first), "one token for all namespaces")
			Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.LabelCredential, cc.Name))
			Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.LabelClusterCredential, cc.Name))
			owner := metav1.GetControllerOf(s)
			Expect(owner).NotTo(BeNil())
			Expect(owner.Kind).To(Equal("ClusterDatabricksCredential"))
			Expect(owner.UID).To(Equal(c.UID))
		}
		Expect(clusterReadyReason(cc)).To(Equal("True/TokenIssued"))
		Expect(readyCondition(c.Status.Conditions).Message).To(ContainSubstring("in all 3 selected namespaces"))
		Expect(c.Status.NamespaceCount).To(Equal(int32(3)))
		Expect(c.Status.FailedNamespaces).To(BeEmpty())
		Expect(c.Status.SecretName).To(Equal(cc.Name))
		Expect(c.Status.ExpiresAt.Time).To(BeTemporally("==", t0.Add(time.Hour)))
		Expect(c.Status.LastRefreshTime.Time).To(BeTemporally("==", t0))
		next := c.Status.NextRefreshTime.Time
		Expect(next).To(BeTemporally("<=", t0.Add(40*time.Minute)))
		Expect(next).To(BeTemporally(">=", t0.Add(38*time.Minute)))
		Expect(wait).To(Equal(next.Sub(t0)))

		By("a second pass writes nothing")
		rv := map[string]string{}
		for _, ns := range namespaces {
			rv[ns] = getSecret(ns, cc.TargetName()).ResourceVersion
		}
		credRV := getClusterCred(cc).ResourceVersion
		clk.SetTime(next.Add(-time.Second))
		Expect(reconcile()).To(Equal(time.Second))
		Expect(provider.Calls()).To(Equal(1))
		for _, ns := range namespaces {
			Expect(getSecret(ns, cc.TargetName()).ResourceVersion).To(Equal(rv[ns]))
		}
		Expect(getClusterCred(cc).ResourceVersion).To(Equal(credRV))

		By("at the refresh time one exchange replaces the token everywhere")
		clk.SetTime(next)
		reconcile()
		Expect(provider.Calls()).To(Equal(2))
		second := tokenIn(namespaces[0])
		Expect(second).NotTo(Equal(first))
		for _, ns := range namespaces {
			Expect(tokenIn(ns)).To(Equal(second))
		}
		Expect(getClusterCred(cc).Status.LastRefreshTime.Time).To(BeTemporally("==", next))
	})

	It("serves a namespace labelled later without an exchange and deletes only its own Secret from one unlabelled", func() {
		namespaces := teams(2)
		create()
		reconcile()
		tok := tokenIn(namespaces[0])

		By("a namespace labelled later receives the current token")
		late := newNamespace()
		setNamespaceLabels(late, label)
		reconcile()
		Expect(tokenIn(late)).To(Equal(tok))
		Expect(provider.Calls()).To(Equal(1))
		Expect(getClusterCred(cc).Status.NamespaceCount).To(Equal(int32(3)))

		By("in a namespace that is no longer selected, our Secret goes and a Secret of someone else stays")
		lookalike := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespaces[1], Name: "copied", Labels: map[string]string{v1alpha1.LabelClusterCredential: cc.Name}},
			Data:       map[string][]byte{"a": []byte("b")},
		}
		Expect(k8sClient.Create(suiteCtx, lookalike)).To(Succeed())
		setNamespaceLabels(namespaces[1], nil)
		reconcile()
		Expect(getSecret(namespaces[1], cc.TargetName())).To(BeNil())
		Expect(getSecret(namespaces[1], "copied")).NotTo(BeNil(), "labelled like ours but not owned: never deleted")
		Expect(tokenIn(namespaces[0])).To(Equal(tok))
		Expect(tokenIn(late)).To(Equal(tok))
		Expect(getClusterCred(cc).Status.NamespaceCount).To(Equal(int32(2)))

		By("a changed target name moves the Secret")
		c := getClusterCred(cc)
		c.Spec.Target.Name = "renamed"
		Expect(k8sClient.Update(suiteCtx, c)).To(Succeed())
		cc = getClusterCred(cc)
		reconcile()
		Expect(getSecret(namespaces[0], "renamed")).NotTo(BeNil())
		Expect(getSecret(namespaces[0], c.Name)).To(BeNil())
		Expect(provider.Calls()).To(Equal(1))
	})

	It("reports foreign Secrets per namespace, at most 20 of them, and serves the others", func() {
		namespaces := teams(24)
		var conflicting []string
		for _, ns := range namespaces[:22] {
			foreignSecret(ns, cc.Name)
			conflicting = append(conflicting, ns)
		}
		create()
		Expect(reconcile()).To(BeNumerically("<=", 5*time.Minute))
		c := getClusterCred(cc)
		Expect(clusterReadyReason(cc)).To(Equal("False/SecretConflict"))
		msg := readyCondition(c.Status.Conditions).Message
		Expect(msg).To(HavePrefix("22 of 24 selected namespaces do not hold a valid token: "))
		Expect(msg).To(ContainSubstring("and 19 more"))
		Expect(c.Status.NamespaceCount).To(Equal(int32(2)))
		Expect(c.Status.FailedNamespaces).To(HaveLen(v1alpha1.MaxFailedNamespaces))
		for i, f := range c.Status.FailedNamespaces {
			Expect(f.Reason).To(Equal(v1alpha1.ReasonSecretConflict))
			Expect(f.Message).To(ContainSubstring("not owned by this ClusterDatabricksCredential"))
			if i > 0 {
				Expect(f.Namespace > c.Status.FailedNamespaces[i-1].Namespace).To(BeTrue(), "sorted by namespace")
			}
		}
		for _, ns := range conflicting {
			Expect(tokenIn(ns)).To(Equal("somebody-elses-pat"))
		}
		Expect(provider.Calls()).To(Equal(1), "the two free namespaces get a token")

		By("removing the foreign Secrets lets the operator serve those namespaces")
		for _, ns := range conflicting {
			Expect(k8sClient.Delete(suiteCtx, getSecret(ns, cc.Name))).To(Succeed())
		}
		reconcile()
		c = getClusterCred(cc)
		Expect(clusterReadyReason(cc)).To(Equal("True/TokenIssued"))
		Expect(c.Status.NamespaceCount).To(Equal(int32(24)))
		Expect(c.Status.FailedNamespaces).To(BeEmpty())
		Expect(provider.Calls()).To(Equal(1))
	})

	It("requests no token while no namespace is selected", func() {
		cc.Spec.NamespaceSelector = nil
		cc.Spec.Namespaces = []string{"does-not-exist-" + rand.String(5)}
		create()
		Expect(reconcile()).To(BeZero())
		Expect(clusterReadyReason(cc)).To(Equal("False/NoMatchingNamespaces"))
		Expect(provider.Calls()).To(BeZero())
		Expect(getClusterCred(cc).Status.NamespaceCount).To(BeZero())

		By("a namespace listed by name is served once it exists")
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cc.Spec.Namespaces[0]}}
		Expect(k8sClient.Create(suiteCtx, ns)).To(Succeed())
		reconcile()
		Expect(clusterReadyReason(cc)).To(Equal("True/TokenIssued"))
		Expect(tokenIn(ns.Name)).NotTo(BeEmpty())
	})

	It("reports a missing client-credentials Secret in its namespace before looking at namespaces", func() {
		teams(1)
		cc.Spec.Databricks.ClientSecretRef.Name = "missing"
		create()
		Expect(reconcile()).To(BeZero())
		Expect(clusterReadyReason(cc)).To(Equal("False/SecretNotFound"))
		Expect(readyCondition(getClusterCred(cc).Status.Conditions).Message).To(ContainSubstring(fmt.Sprintf("in namespace %q", platform)))
		Expect(provider.Calls()).To(BeZero())
	})

	It("keeps the tokens while refreshing fails, then reports TokenExpired", func() {
		namespaces := teams(2)
		create()
		reconcile()
		good := tokenIn(namespaces[0])
		provider.TokenFunc = func(ctx context.Context, req token.Request) (token.Token, error) {
			return token.Token{}, &token.Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "HTTP 503", Message: "unavailable"}
		}
		clk.SetTime(getClusterCred(cc).Status.NextRefreshTime.Time)
		wait := reconcile()
		Expect(wait).To(BeNumerically("<=", 5*time.Second))
		Expect(clusterReadyReason(cc)).To(Equal("True/RefreshFailing"))
		c := getClusterCred(cc)
		Expect(c.Status.FailedRefreshAttempts).To(Equal(int32(1)))
		Expect(c.Status.NamespaceCount).To(Equal(int32(2)))

		By("a pass during the backoff does not call the provider")
		clk.Step(time.Second)
		reconcile()
		Expect(provider.Calls()).To(Equal(2))

		By("past the expiry")
		clk.SetTime(t0.Add(time.Hour))
		reconcile()
		Expect(clusterReadyReason(cc)).To(Equal("False/TokenExpired"))
		Expect(getClusterCred(cc).Status.NamespaceCount).To(BeZero())
		for _, ns := range namespaces {
			Expect(tokenIn(ns)).To(Equal(good), "the Secrets are never emptied")
		}
	})

	It("is Ready only while every selected namespace holds a token, also while refreshing fails", func() {
		namespaces := teams(2)
		create()
		reconcile()
		failing := func(ctx context.Context, req token.Request) (token.Token, error) {
			return token.Token{}, &token.Error{Reason: v1alpha1.ReasonRefreshFailing, Transient: true, Code: "HTTP 503", Message: "unavailable"}
		}
		provider.TokenFunc = failing
		clk.SetTime(getClusterCred(cc).Status.NextRefreshTime.Time)
		reconcile()
		Expect(clusterReadyReason(cc)).To(Equal("True/RefreshFailing"), "both namespaces still hold a valid token")

		By("a namespace that joins during the backoff has no token yet")
		late := newLabelledNamespace(label)
		clk.Step(time.Second)
		reconcile()
		Expect(provider.Calls()).To(Equal(2), "the backoff holds")
		c := getClusterCred(cc)
		Expect(clusterReadyReason(cc)).To(Equal("False/RefreshFailing"))
		Expect(readyCondition(c.Status.Conditions).Message).To(HavePrefix("1 of 3 selected namespaces do not hold a valid token, and the last refresh failed"))
		Expect(c.Status.NamespaceCount).To(Equal(int32(2)))
		Expect(getSecret(late, cc.TargetName())).To(BeNil())

		By("a foreign Secret in a namespace keeps Ready False through the next failure, with its reason")
		foreignSecret(late, cc.TargetName())
		clk.SetTime(c.Status.NextRefreshTime.Time)
		reconcile()
		Expect(provider.Calls()).To(Equal(3))
		c = getClusterCred(cc)
		Expect(clusterReadyReason(cc)).To(Equal("False/SecretConflict"))
		Expect(readyCondition(c.Status.Conditions).Message).To(ContainSubstring("1 of 3 selected namespaces do not hold a valid token, and refreshing failed: HTTP 503"))
		Expect(c.Status.FailedNamespaces).To(ConsistOf(HaveField("Namespace", late)))

		By("recovery serves the others")
		provider.TokenFunc = nil
		clk.SetTime(getClusterCred(cc).Status.NextRefreshTime.Time)
		reconcile()
		Expect(clusterReadyReason(cc)).To(Equal("False/SecretConflict"))
		Expect(getClusterCred(cc).Status.NamespaceCount).To(Equal(int32(2)))
		Expect(getClusterCred(cc).Status.FailedRefreshAttempts).To(BeZero())
		Expect(tokenIn(namespaces[0])).To(Equal(tokenIn(namespaces[1])))
	})

	It("keeps fresh tokens after a restart; a new namespace then costs one exchange and all namespaces converge", func() {
		namespaces := teams(2)
		create()
		reconcile()
		first := tokenIn(namespaces[0])

		r = newReconciler()
		clk.Step(10 * time.Minute)
		reconcile()
		Expect(provider.Calls()).To(Equal(1), "fresh tokens are kept")
		Expect(clusterReadyReason(cc)).To(Equal("True/TokenIssued"))

		r = newReconciler()
		late := newLabelledNamespace(label)
		reconcile()
		Expect(provider.Calls()).To(Equal(2), "the raw token is not remembered after a restart")
		second := tokenIn(late)
		Expect(second).NotTo(Equal(first))
		for _, ns := range namespaces {
			Expect(tokenIn(ns)).To(Equal(second))
		}
	})

	It("treats the Secret of a namespaced DatabricksCredential as foreign, and the reverse", func() {
		ns := teams(1)[0]
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.Name, Labels: map[string]string{v1alpha1.LabelCredential: cc.Name},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "DatabricksCredential",
					Name: cc.Name, UID: types.UID("namespaced-uid"), Controller: ptr.To(true)}}},
			Data: map[string][]byte{"DATABRICKS_TOKEN": []byte("namespaced")},
		})).To(Succeed())
		create()
		reconcile()
		Expect(clusterReadyReason(cc)).To(Equal("False/SecretConflict"))
		Expect(tokenIn(ns)).To(Equal("namespaced"))

		By("a DatabricksCredential of the same name never adopts a cluster credential's Secret")
		other := teams(1)[0]
		create2 := clusterCredential(cc.Spec.Host, platform, "sp", nil)
		create2.Spec.NamespaceSelector, create2.Spec.Namespaces = nil, []string{other}
		Expect(k8sClient.Create(suiteCtx, create2)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(suiteCtx, create2))).To(Succeed()) })
		_, err := newReconciler().Reconcile(suiteCtx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(create2)})
		Expect(err).NotTo(HaveOccurred())
		clusterToken := tokenInNamespace(other, create2.Name)
		newClientSecret(other, "sp", "client-1")
		namespaced := databricksCredential(other, create2.Name, cc.Spec.Host, "sp")
		Expect(k8sClient.Create(suiteCtx, namespaced)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(suiteCtx, namespaced))).To(Succeed()) })
		_, err = NewDatabricksCredentialReconciler(newDirectShared(clk, provider), recorder).Reconcile(suiteCtx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(namespaced)})
		Expect(err).NotTo(HaveOccurred())
		Expect(readyReason(namespaced)).To(Equal("False/SecretConflict"))
		Expect(tokenInNamespace(other, create2.Name)).To(Equal(clusterToken))
	})
})
