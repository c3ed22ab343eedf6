package controllers

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/test/idp"
)

// Fault injection: the identity provider fails, throttles, hangs or answers garbage, and the
// promise still holds: while the provider answers at least once before the token expires, the
// Secret never holds an expired token; when it cannot be kept, status says why. Each spec runs
// its own identity provider, so injected failures reach no other spec.
var _ = Describe("Identity-provider faults with a running manager", Ordered, func() {
	var mgr *managerHandle
	BeforeAll(func() { mgr = startManager() })
	AfterAll(func() {
		if mgr != nil {
			mgr.stop()
		}
	})

	// ownIdP starts an identity provider for one spec, with a Databricks client, and returns a
	// credential against it (not yet created) in a fresh namespace.
	ownIdP := func(lifetime, renewBefore time.Duration) (*idp.Server, *v1alpha1.DatabricksCredential, string) {
		srv, err := idp.Start(idp.Options{TokenLifetime: lifetime})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Close)
		trackIdP(srv)
		ns := newNamespace()
		clientID := "fault-" + rand.String(6)
		srv.AddDatabricksClient(clientID, newClientSecret(ns, "sp", clientID))
		Expect(k8sClient.Create(suiteCtx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "idp-ca"},
			Data:       map[string]string{"ca.crt": string(srv.CACertPEM())},
		})).To(Succeed())
		cred := databricksCredential(ns, "faulty", srv.URL(), "sp")
		cred.Spec.CABundleRef = &v1alpha1.CABundleReference{Name: "idp-ca"}
		cred.Spec.RenewBefore = &metav1.Duration{Duration: renewBefore}
		return srv, cred, ns
	}

	It("keeps a valid token through an outage of 2/3 of the token lifetime, then recovers", func() {
		srv, cred, ns := ownIdP(12*time.Second, 8*time.Second)
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())
		Eventually(func() string { return readyReason(cred) }, 10*time.Second, 50*time.Millisecond).Should(Equal("True/TokenIssued"))
		first := string(getSecret(ns, "faulty").Data["DATABRICKS_TOKEN"])

		srv.FailNext(0, idp.Failure{Status: 500})
		outageEnds := time.Now().Add(8 * time.Second)
		reasons := map[string]bool{}
		for time.Now().Before(outageEnds.Add(7 * time.Second)) {
			if time.Now().After(outageEnds) {
				srv.ClearFailures()
			}
			tok := string(getSecret(ns, "faulty").Data["DATABRICKS_TOKEN"])
			_, err := srv.ValidateToken(tok)
			Expect(err).NotTo(HaveOccurred(), "the Secret held an expired or foreign token")
			r := readyReason(cred)
			Expect(r).To(HavePrefix("True/"), "Ready must stay True while the token lives")
			reasons[r] = true
			time.Sleep(100 * time.Millisecond)
		}
		Expect(reasons).To(HaveKey("True/RefreshFailing"))
		Eventually(func() string { return readyReason(cred) }, 10*time.Second, 50*time.Millisecond).Should(Equal("True/TokenIssued"))
		Expect(string(getSecret(ns, "faulty").Data["DATABRICKS_TOKEN"])).NotTo(Equal(first))
		Expect(getCred(cred).Status.FailedRefreshAttempts).To(BeZero())
	})

	It("sends no request before Retry-After has passed", func() {
		srv, cred, _ := ownIdP(time.Hour, 20*time.Minute)
		srv.FailNext(1, idp.Failure{Status: 429, RetryAfter: "5"})
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())
		Eventually(func() string { return readyReason(cred) }, 20*time.Second, 50*time.Millisecond).Should(Equal("True/TokenIssued"))
		reqs := srv.Requests()
		Expect(reqs).To(HaveLen(2))
		Expect(reqs[0].Status).To(Equal(429))
		Expect(reqs[1].Time.Sub(reqs[0].Time)).To(BeNumerically(">=", 5*time.Second))
	})

	It("keeps other credentials refreshing on time while one identity provider hangs", func() {
		hanging, stuck, _ := ownIdP(time.Hour, 20*time.Minute)
		hanging.FailNext(0, idp.Failure{Delay: time.Minute})
		healthy, fresh, ns := ownIdP(6*time.Second, 3*time.Second)
		Expect(k8sClient.Create(suiteCtx, stuck)).To(Succeed())
		Expect(k8sClient.Create(suiteCtx, fresh)).To(Succeed())
		Eventually(func() *corev1.Secret { return getSecret(ns, "faulty") }, 10*time.Second, 50*time.Millisecond).ShouldNot(BeNil())

		seen := map[string]bool{}
		for deadline := time.Now().Add(14 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			tok := string(getSecret(ns, "faulty").Data["DATABRICKS_TOKEN"])
			_, err := healthy.ValidateToken(tok)
			Expect(err).NotTo(HaveOccurred(), "a hanging endpoint delayed another credential's refresh")
			seen[tok] = true
		}
		Expect(len(seen)).To(BeNumerically(">=", 4))
		Eventually(func() string { return readyReason(stuck) }, 10*time.Second).Should(Equal("False/RefreshFailing"))
		Expect(ready(getCred(stuck)).Message).To(ContainSubstring("no answer from"))
	})

	It("keeps other credentials fresh, new ones fast and Ready honest while eight credentials hang on one endpoint", func() {
		// An endpoint that answers nobody: eight credentials (eight identities) wait on it, and a
		// loop edits their specs to make them retry, more than the manager has workers.
		hanging, err := idp.Start(idp.Options{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(hanging.Close)
		trackIdP(hanging)
		hanging.FailNext(0, idp.Failure{Delay: 2 * time.Minute})
		hangNS := newNamespace()
		Expect(k8sClient.Create(suiteCtx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: hangNS, Name: "idp-ca"},
			Data: map[string]string{"ca.crt": string(hanging.CACertPEM())}})).To(Succeed())
		var stuck []*v1alpha1.DatabricksCredential
		for i := range 8 {
			name := fmt.Sprintf("hang-%d", i)
			clientID := name + "-" + rand.String(6)
			hanging.AddDatabricksClient(clientID, newClientSecret(hangNS, "sp-"+name, clientID))
			c := databricksCredential(hangNS, name, hanging.URL(), "sp-"+name)
			c.Spec.CABundleRef = &v1alpha1.CABundleReference{Name: "idp-ca"}
			Expect(k8sClient.Create(suiteCtx, c)).To(Succeed())
			stuck = append(stuck, c)
		}
		stop := make(chan struct{})
		edits := make(chan int, 1)
		go func() {
			defer GinkgoRecover()
			n := 0
			defer func() { edits <- n }()
			for {
				for _, c := range stuck {
					select {
					case <-stop:
						return
					case <-time.After(40 * time.Millisecond):
					}
					cur := getCred(c)
					cur.Spec.Scopes = []string{fmt.Sprintf("scope-%d", n)}
					if k8sClient.Update(suiteCtx, cur) == nil {
						n++
					}
				}
			}
		}()

		By("a credential of a healthy endpoint with 12-second tokens stays fresh, and Ready never lies")
		healthy, victim, ns := ownIdP(12*time.Second, 6*time.Second)
		Expect(k8sClient.Create(suiteCtx, victim)).To(Succeed())
		Eventually(func() string { return readyReason(victim) }, 10*time.Second, 50*time.Millisecond).Should(Equal("True/TokenIssued"))
		var newcomerReady time.Duration
		samples, expired := 0, 0
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if samples == 50 {
				// A new credential while the endpoint hangs: Ready within a second or so.
				newcomer := databricksCredential(ns, "newcomer", healthy.URL(), "sp")
				newcomer.Spec.CABundleRef = victim.Spec.CABundleRef
				start := time.Now()
				Expect(k8sClient.Create(suiteCtx, newcomer)).To(Succeed())
				Eventually(func() string { return readyReason(newcomer) }, 10*time.Second, 20*time.Millisecond).Should(Equal("True/TokenIssued"))
				newcomerReady = time.Since(start)
			}
			samples++
			sec := getSecret(ns, "faulty")
			expiresAt := annotationTime(sec, v1alpha1.AnnotationExpiresAt)
			_, validErr := healthy.ValidateToken(string(sec.Data["DATABRICKS_TOKEN"]))
			if !time.Now().Before(expiresAt) || validErr != nil {
				expired++
				Expect(readyReason(victim)).NotTo(HavePrefix("True/"), "Ready says True while the Secret holds an expired token")
			}
		}
		close(stop)
		for _, c := range stuck {
			Expect(getSecret(hangNS, c.Name)).To(BeNil(), "the hanging endpoint never answered")
		}
		GinkgoWriter.Printf("victim: %d samples, %d with an expired token; newcomer Ready after %s; %d spec edits of the hanging credentials\n",
			samples, expired, newcomerReady.Round(time.Millisecond), <-edits)
		Expect(expired).To(BeZero(), "the victim's Secret held an expired token")
		Expect(newcomerReady).To(BeNumerically("<", 5*time.Second), "a hanging endpoint delayed a new credential")
	})

	It("reports unreadable answers and an untrusted certificate while keeping the last good token", func() {
		cases := map[string]struct {
			failure idp.Failure
			want    string
		}{
			"malformed JSON":  {idp.Failure{Status: 200, Body: `{"access_token":`}, "could not be read"},
			"no access_token": {idp.Failure{Status: 200, Body: `{"token_type":"Bearer","expires_in":3600}`}, "could not be read"},
			"no expiry":       {idp.Failure{Status: 200, Body: `{"access_token":"opaque-token-without-expiry","token_type":"Bearer"}`}, "no expires_in"},
			"HTML page":       {idp.Failure{Status: 200, Body: "<html><body>Access denied</body></html>", ContentType: "text/html"}, "non-JSON answer: text/html"},
		}
		for name, tc := range cases {
			By(name)
			srv, cred, ns := ownIdP(8*time.Second, 6*time.Second)
			Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())
			Eventually(func() string { return readyReason(cred) }, 10*time.Second, 50*time.Millisecond).Should(Equal("True/TokenIssued"))
			good := string(getSecret(ns, "faulty").Data["DATABRICKS_TOKEN"])
			srv.FailNext(0, tc.failure)
			Eventually(func() string { return readyReason(cred) }, 10*time.Second, 50*time.Millisecond).Should(Equal("True/RefreshFailing"), name)
			Expect(ready(getCred(cred)).Message).To(ContainSubstring(tc.want), name)
			Expect(string(getSecret(ns, "faulty").Data["DATABRICKS_TOKEN"])).To(Equal(good), name)
			srv.ClearFailures()
		}

		By("a certificate from an unknown CA")
		other, err := idp.Start(idp.Options{})
		Expect(err).NotTo(HaveOccurred())
		defer other.Close()
		_, cred, ns := ownIdP(time.Hour, 20*time.Minute)
		Expect(k8sClient.Create(suiteCtx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wrong-ca"},
			Data:       map[string]string{"ca.crt": string(other.CACertPEM())},
		})).To(Succeed())
		cred.Spec.CABundleRef = &v1alpha1.CABundleReference{Name: "wrong-ca"}
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())
		Eventually(func() string { return readyReason(cred) }, 10*time.Second, 50*time.Millisecond).Should(Equal("False/RefreshFailing"))
		Expect(ready(getCred(cred).DeepCopy()).Message).To(ContainSubstring("not trusted"))
		Expect(ready(getCred(cred)).Message).To(ContainSubstring("caBundleRef"))
	})
})
