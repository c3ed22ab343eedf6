package controllers

import (
	"fmt"
	"maps"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/test/idp"
)

// These specs run the controller inside a manager, against the test identity provider over TLS,
// with real time: what a user sees after `kubectl apply`.
var _ = Describe("DatabricksCredential with a running manager", Ordered, func() {
	var mgr *managerHandle

	BeforeAll(func() { mgr = startManager() })
	AfterAll(func() {
		if mgr != nil {
			mgr.stop()
		}
	})

	It("issues a Databricks token over the exact wire shape and reports it in status", func() {
		ns := newNamespace()
		clientID := "db-sp-" + rand.String(6)
		newDatabricksClient(ns, "dbt-sp", clientID)
		cred := databricksCredential(ns, "dbt-prod", idpServer.URL(), "dbt-sp")
		cred.Spec.CABundleRef = newCAConfigMap(ns)
		cred.Spec.RenewBefore = &metav1.Duration{Duration: 20 * time.Minute}
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())

		Eventually(func() string { return readyReason(cred) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		sec := getSecret(ns, "dbt-prod")
		Expect(sec).NotTo(BeNil())
		Expect(sec.Type).To(Equal(corev1.SecretTypeOpaque))
		// Keys only: a failure must not print the token.
		Expect(slices.Sorted(maps.Keys(sec.Data))).To(Equal([]string{"DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_TOKEN_EXPIRES_AT"}))
		Expect(string(sec.Data["DATABRICKS_HOST"])).To(Equal(idpServer.URL()))
		Expect(string(sec.Data["DATABRICKS_TOKEN_EXPIRES_AT"])).To(Equal(sec.Annotations[v1alpha1.AnnotationExpiresAt]))
		claims, err := idpServer.ValidateToken(string(sec.Data["DATABRICKS_TOKEN"]))
		Expect(err).NotTo(HaveOccurred(), "the Secret must hold a token the IdP issued and still accepts")
		Expect(claims.Subject).To(Equal(clientID))

		By("the identity provider saw the Databricks wire shape")
		reqs := requestsFor(clientID)
		Expect(reqs).To(HaveLen(1))
		Expect(reqs[0].Path).To(Equal("/oidc/v1/token"))
		Expect(reqs[0].Method).To(Equal("POST"))
		Expect(reqs[0].ContentType).To(HavePrefix("application/x-www-form-urlencoded"))
		Expect(reqs[0].GrantType).To(Equal("client_credentials"))
		Expect(reqs[0].Scope).To(Equal("all-apis"))
		Expect(reqs[0].AuthMethod).To(Equal("basic"))
		Expect(reqs[0].FormKeys).To(ConsistOf("grant_type", "scope"), "with Basic auth the secret must not also be in the form")

		By("the Secret is owned, labelled and annotated")
		c := getCred(cred)
		owner := metav1.GetControllerOf(sec)
		Expect(owner).NotTo(BeNil())
		Expect(owner.UID).To(Equal(c.UID))
		Expect(*owner.BlockOwnerDeletion).To(BeTrue())
		Expect(sec.Labels).To(HaveKeyWithValue(v1alpha1.LabelCredential, "dbt-prod"))
		Expect(sec.Annotations).To(HaveKey(v1alpha1.AnnotationInputsHash))
		Expect(annotationTime(sec, v1alpha1.AnnotationExpiresAt)).To(BeTemporally("~", claims.ExpiresAt, time.Second))

		By("status: expiresAt is the token's expiry and nextRefreshTime is expiry - renewBefore, minus at most 10% jitter")
		Expect(c.Status.ObservedGeneration).To(Equal(c.Generation))
		Expect(c.Status.SecretName).To(Equal("dbt-prod"))
		Expect(c.Status.ExpiresAt.Time).To(BeTemporally("~", claims.ExpiresAt, time.Second))
		Expect(c.Status.LastRefreshTime.Time).To(BeTemporally("~", claims.IssuedAt, time.Second))
		target := c.Status.ExpiresAt.Add(-20 * time.Minute)
		Expect(c.Status.NextRefreshTime.Time).To(BeTemporally("<=", target))
		Expect(c.Status.NextRefreshTime.Time).To(BeTemporally(">=", target.Add(-2*time.Minute-time.Second)))

		By("kubectl wait --for=condition=Ready returns")
		out, err := kubectl("wait", "--for=condition=Ready", "-n", ns, "dbcred/dbt-prod", "--timeout=30s")
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring("condition met"))

		By("a Normal TokenRefreshed event was recorded")
		Eventually(func() []string { return eventReasons(ns) }, 10*time.Second).Should(ContainElement(v1alpha1.ReasonTokenRefreshed))
	})

	It("issues an Entra ID token over the exact wire shape", func() {
		ns := newNamespace()
		tenant := "f4da2730-4463-4910-98a7-" + rand.String(12)
		clientID := "9a3b" + rand.String(8)
		idpServer.AddAzureApp(tenant, clientID, newClientSecret(ns, "azure-sp", clientID))
		cred := azureCredential(ns, "dbt-azure", "https://adb-1234567890123456.7.azuredatabricks.net/", idpServer.URL(), tenant, "azure-sp")
		cred.Spec.CABundleRef = newCAConfigMap(ns)
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())

		Eventually(func() string { return readyReason(cred) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		sec := getSecret(ns, "dbt-azure")
		Expect(string(sec.Data["DATABRICKS_HOST"])).To(Equal("https://adb-1234567890123456.7.azuredatabricks.net"), "no trailing slash")
		claims, err := idpServer.ValidateToken(string(sec.Data["DATABRICKS_TOKEN"]))
		Expect(err).NotTo(HaveOccurred())
		Expect(claims.TenantID).To(Equal(tenant))
		Expect(claims.Audience).To(Equal("2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"))

		reqs := requestsFor(clientID)
		Expect(reqs).To(HaveLen(1))
		Expect(reqs[0].Path).To(Equal("/" + tenant + "/oauth2/v2.0/token"))
		Expect(reqs[0].GrantType).To(Equal("client_credentials"))
		Expect(reqs[0].Scope).To(Equal("2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"))
		Expect(reqs[0].AuthMethod).To(Equal("form"))
		Expect(reqs[0].FormKeys).To(ConsistOf("grant_type", "scope", "client_id", "client_secret"))

		By("default renewBefore is half the lifetime")
		c := getCred(cred)
		half := c.Status.ExpiresAt.Sub(c.Status.LastRefreshTime.Time) / 2
		target := c.Status.ExpiresAt.Add(-half)
		Expect(c.Status.NextRefreshTime.Time).To(BeTemporally("<=", target))
		Expect(c.Status.NextRefreshTime.Time).To(BeTemporally(">=", target.Add(-half/10-time.Second)))
	})

	It("refreshes short-lived tokens before they expire, repeatedly", func() {
		ns := newNamespace()
		clientID := "short-" + rand.String(6)
		newDatabricksClient(ns, "sp", clientID)
		idpServer.SetTokenLifetime(6 * time.Second)
		DeferCleanup(func() { idpServer.SetTokenLifetime(idp.DefaultTokenLifetime) })
		cred := databricksCredential(ns, "short", idpServer.URL(), "sp")
		cred.Spec.CABundleRef = newCAConfigMap(ns)
		cred.Spec.RenewBefore = &metav1.Duration{Duration: 3 * time.Second}
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())
		Eventually(func() *corev1.Secret { return getSecret(ns, "short") }, 20*time.Second, 50*time.Millisecond).ShouldNot(BeNil())

		seen := map[string]bool{}
		deadline := time.Now().Add(16 * time.Second)
		for time.Now().Before(deadline) {
			sec := getSecret(ns, "short")
			tok := string(sec.Data["DATABRICKS_TOKEN"])
			_, err := idpServer.ValidateToken(tok)
			Expect(err).NotTo(HaveOccurred(), "the Secret held a token the IdP no longer accepts")
			Expect(annotationTime(sec, v1alpha1.AnnotationExpiresAt)).To(BeTemporally(">", time.Now()))
			seen[tok] = true
			time.Sleep(200 * time.Millisecond)
		}
		Expect(len(seen)).To(BeNumerically(">=", 4), "a 6s token with renewBefore 3s is replaced about every 3s")
		Expect(readyReason(cred)).To(Equal("True/TokenIssued"))
	})

	It("mints a new token within seconds when the client secret is rotated or the spec changes", func() {
		ns := newNamespace()
		clientID := "rot-" + rand.String(6)
		newDatabricksClient(ns, "sp", clientID)
		cred := databricksCredential(ns, "rot", idpServer.URL(), "sp")
		cred.Spec.CABundleRef = newCAConfigMap(ns)
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())
		Eventually(func() string { return readyReason(cred) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		first := string(getSecret(ns, "rot").Data["DATABRICKS_TOKEN"])

		By("rotating the client secret")
		rotateDatabricksClient(clientID, ns, "sp")
		Eventually(func() string { return string(getSecret(ns, "rot").Data["DATABRICKS_TOKEN"]) }, 5*time.Second, 50*time.Millisecond).ShouldNot(Equal(first))
		second := string(getSecret(ns, "rot").Data["DATABRICKS_TOKEN"])
		_, err := idpServer.ValidateToken(second)
		Expect(err).NotTo(HaveOccurred())
		Expect(requestsFor(clientID)).To(HaveLen(2))

		By("editing the spec (scopes)")
		var c *v1alpha1.DatabricksCredential
		// The running controller writes status concurrently: retry on a conflict, as kubectl edit would.
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			c = getCred(cred)
			c.Spec.Scopes = []string{"sql", "unity-catalog"}
			return k8sClient.Update(suiteCtx, c)
		})).To(Succeed())
		Eventually(func() string { return string(getSecret(ns, "rot").Data["DATABRICKS_TOKEN"]) }, 5*time.Second, 50*time.Millisecond).ShouldNot(Equal(second))
		reqs := requestsFor(clientID)
		Expect(reqs).To(HaveLen(3))
		Expect(reqs[2].Scope).To(Equal("sql unity-catalog"))
		Eventually(func() int64 { return getCred(cred).Status.ObservedGeneration }, 5*time.Second).Should(Equal(c.Generation))
	})

	It("reports bad input with the documented reason, a hint and an event", func() {
		ns := newNamespace()
		ca := newCAConfigMap(ns)

		By("a missing client-credentials Secret, which is picked up as soon as it appears")
		missing := databricksCredential(ns, "missing", idpServer.URL(), "not-yet")
		missing.Spec.CABundleRef = ca
		Expect(k8sClient.Create(suiteCtx, missing)).To(Succeed())
		Eventually(func() string { return readyReason(missing) }, 10*time.Second).Should(Equal("False/SecretNotFound"))
		Expect(ready(getCred(missing)).Message).To(ContainSubstring(`Secret "not-yet"`))
		clientID := "late-" + rand.String(6)
		newDatabricksClient(ns, "not-yet", clientID)
		Eventually(func() string { return readyReason(missing) }, 5*time.Second, 50*time.Millisecond).Should(Equal("True/TokenIssued"))

		By("a Secret without the referenced key")
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-key"},
			Data:       map[string][]byte{"client-id": []byte("x")},
		})).To(Succeed())
		nokey := databricksCredential(ns, "nokey", idpServer.URL(), "no-key")
		nokey.Spec.CABundleRef = ca
		Expect(k8sClient.Create(suiteCtx, nokey)).To(Succeed())
		Eventually(func() string { return readyReason(nokey) }, 10*time.Second).Should(Equal("False/SecretKeyMissing"))
		Expect(ready(getCred(nokey)).Message).To(ContainSubstring(`"client-secret"`))

		By("Entra answering AADSTS7000215 (wrong secret)")
		tenant := "tenant-" + rand.String(6)
		appID := "app-" + rand.String(6)
		newClientSecret(ns, "wrong-secret", appID)
		idpServer.AddAzureApp(tenant, appID, rememberSecret("the-real-secret-"+rand.String(16)))
		wrong := azureCredential(ns, "wrong", "https://adb-1.7.azuredatabricks.net", idpServer.URL(), tenant, "wrong-secret")
		wrong.Spec.CABundleRef = ca
		Expect(k8sClient.Create(suiteCtx, wrong)).To(Succeed())
		Eventually(func() string { return readyReason(wrong) }, 10*time.Second).Should(Equal("False/InvalidClient"))
		msg := ready(getCred(wrong)).Message
		Expect(msg).To(ContainSubstring("AADSTS7000215"))
		Expect(msg).To(ContainSubstring("not its Secret ID"))
		Expect(msg).NotTo(ContainSubstring("Trace ID"))
		Expect(msg).NotTo(ContainSubstring("{"))

		By("an unknown tenant")
		newClientSecret(ns, "other", appID)
		unknown := azureCredential(ns, "unknown-tenant", "https://adb-1.7.azuredatabricks.net", idpServer.URL(), "no-such-tenant", "other")
		unknown.Spec.CABundleRef = ca
		Expect(k8sClient.Create(suiteCtx, unknown)).To(Succeed())
		Eventually(func() string { return readyReason(unknown) }, 10*time.Second).Should(Equal("False/NotFound"))
		Expect(ready(getCred(unknown)).Message).To(ContainSubstring("AADSTS90002"))
		Expect(ready(getCred(unknown)).Message).To(ContainSubstring("tenantID"))

		By("each failure left a Warning event")
		Eventually(func() []string { return eventReasons(ns) }, 10*time.Second).Should(ContainElements(
			v1alpha1.ReasonSecretNotFound, v1alpha1.ReasonSecretKeyMissing, v1alpha1.ReasonRefreshFailed))
	})

	It("leaves a pre-existing Secret it does not own untouched", func() {
		ns := newNamespace()
		clientID := "conflict-" + rand.String(6)
		newDatabricksClient(ns, "sp", clientID)
		theirs := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"},
			Data:       map[string][]byte{"DATABRICKS_TOKEN": []byte("somebody-elses-pat")},
		}
		Expect(k8sClient.Create(suiteCtx, theirs)).To(Succeed())
		cred := databricksCredential(ns, "taken", idpServer.URL(), "sp")
		cred.Spec.CABundleRef = newCAConfigMap(ns)
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())

		Eventually(func() string { return readyReason(cred) }, 10*time.Second).Should(Equal("False/SecretConflict"))
		Consistently(func() string { return getSecret(ns, "taken").ResourceVersion }, 2*time.Second).Should(Equal(theirs.ResourceVersion))
		Expect(string(getSecret(ns, "taken").Data["DATABRICKS_TOKEN"])).To(Equal("somebody-elses-pat"))
		Expect(requestsFor(clientID)).To(BeEmpty(), "no token is requested for a Secret we cannot write")
	})

	It("serves credentials with the same identity from one exchange", func() {
		ns := newNamespace()
		ca := newCAConfigMap(ns)
		tenant := "shared-" + rand.String(6)
		clientID := "shared-app-" + rand.String(6)
		idpServer.AddAzureApp(tenant, clientID, newClientSecret(ns, "sp", clientID))
		var creds []*v1alpha1.DatabricksCredential
		for i := range 5 {
			c := azureCredential(ns, "workspace-"+string(rune('a'+i)), "https://adb-"+rand.String(8)+".7.azuredatabricks.net", idpServer.URL(), tenant, "sp")
			c.Spec.CABundleRef = ca
			Expect(k8sClient.Create(suiteCtx, c)).To(Succeed())
			creds = append(creds, c)
		}
		for _, c := range creds {
			Eventually(func() string { return readyReason(c) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		}
		Expect(requestsFor(clientID)).To(HaveLen(1), "one exchange for five workspaces of one service principal")
		first := string(getSecret(ns, "workspace-a").Data["DATABRICKS_TOKEN"])
		for _, c := range creds[1:] {
			Expect(string(getSecret(ns, c.Name).Data["DATABRICKS_TOKEN"])).To(Equal(first))
		}
	})

	It("issues a burst of credentials with one Secret write, one status write and one Event each", func() {
		ns := newNamespace()
		ca := newCAConfigMap(ns)
		wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		credWatch, err := wc.Watch(suiteCtx, &v1alpha1.DatabricksCredentialList{}, client.InNamespace(ns))
		Expect(err).NotTo(HaveOccurred())
		defer credWatch.Stop()
		secretWatch, err := wc.Watch(suiteCtx, &corev1.SecretList{}, client.InNamespace(ns), client.HasLabels{v1alpha1.LabelCredential})
		Expect(err).NotTo(HaveOccurred())
		defer secretWatch.Stop()

		const n = 24
		var creds []*v1alpha1.DatabricksCredential
		var clientIDs []string
		for i := range 2 {
			clientID := "burst-" + rand.String(6)
			clientIDs = append(clientIDs, clientID)
			spName := fmt.Sprintf("sp-%d", i)
			newDatabricksClient(ns, spName, clientID)
			for j := range n / 2 {
				c := databricksCredential(ns, fmt.Sprintf("burst-%d-%02d", i, j), idpServer.URL(), spName)
				c.Spec.CABundleRef = ca
				creds = append(creds, c)
			}
		}
		for _, c := range creds {
			Expect(k8sClient.Create(suiteCtx, c)).To(Succeed())
		}
		for _, c := range creds {
			Eventually(func() string { return readyReason(c) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		}
		// The echo of each Secret write, and of each status write, arrives within milliseconds; a
		// second pass that repeated a write or an Event would show well within this quiet time.
		credWrites, secretWrites := map[string]int{}, map[string]int{}
		count := func(w watch.Interface, into map[string]int, quiet time.Duration) {
			for {
				select {
				case ev := <-w.ResultChan():
					obj := ev.Object.(client.Object)
					into[obj.GetName()+"/"+string(ev.Type)]++
				case <-time.After(quiet):
					return
				}
			}
		}
		count(credWatch, credWrites, 3*time.Second)
		count(secretWatch, secretWrites, 100*time.Millisecond)
		events := map[string][]string{}
		var list eventsv1.EventList
		Expect(k8sClient.List(suiteCtx, &list, client.InNamespace(ns))).To(Succeed())
		for _, e := range list.Items {
			events[e.Regarding.Name] = append(events[e.Regarding.Name], e.Reason)
		}
		for _, c := range creds {
			Expect(credWrites[c.Name+"/ADDED"]).To(Equal(1), c.Name)
			Expect(credWrites[c.Name+"/MODIFIED"]).To(Equal(1), "one status write for %s", c.Name)
			Expect(secretWrites[c.Name+"/ADDED"]).To(Equal(1), "one Secret create for %s", c.Name)
			Expect(secretWrites[c.Name+"/MODIFIED"]).To(Equal(0), "no Secret update for %s", c.Name)
			Expect(events[c.Name]).To(Equal([]string{v1alpha1.ReasonTokenRefreshed}), "one Event for %s", c.Name)
		}
		for _, id := range clientIDs {
			Expect(requestsFor(id)).To(HaveLen(1), "one exchange per identity")
		}
	})

	It("makes no token request after a restart while the token is fresh", func() {
		ns := newNamespace()
		clientID := "restart-" + rand.String(6)
		newDatabricksClient(ns, "sp", clientID)
		cred := databricksCredential(ns, "restart", idpServer.URL(), "sp")
		cred.Spec.CABundleRef = newCAConfigMap(ns)
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())
		Eventually(func() string { return readyReason(cred) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		tok := string(getSecret(ns, "restart").Data["DATABRICKS_TOKEN"])

		mgr.stop()
		By("wiping the status while the manager is down, so the new manager visibly reconciles")
		c := getCred(cred)
		c.Status = v1alpha1.DatabricksCredentialStatus{}
		Expect(k8sClient.Status().Update(suiteCtx, c)).To(Succeed())
		mgr = startManager()

		Eventually(func() string { return readyReason(cred) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		Expect(requestsFor(clientID)).To(HaveLen(1), "the fresh token was kept: no exchange after restart")
		Expect(string(getSecret(ns, "restart").Data["DATABRICKS_TOKEN"])).To(Equal(tok))
		Expect(getCred(cred).Status.ExpiresAt).NotTo(BeNil())
	})
})

var _ = Describe("The apiserver refuses invalid DatabricksCredentials", func() {
	It("refuses an http:// host, two identity blocks and a non-positive renewBefore with a clear message", func() {
		ns := newNamespace()
		cases := map[string]struct {
			mutate func(*v1alpha1.DatabricksCredential)
			want   string
		}{
			"http host": {func(c *v1alpha1.DatabricksCredential) { c.Spec.Host = "http://adb-1.7.azuredatabricks.net" },
				"host must be an https:// URL"},
			"two blocks": {func(c *v1alpha1.DatabricksCredential) {
				c.Spec.Azure = &v1alpha1.AzureIdentity{TenantID: "t", ClientSecretRef: &v1alpha1.ClientSecretReference{Name: "sp"}}
			}, "exactly one identity block must be set"},
			"no block":         {func(c *v1alpha1.DatabricksCredential) { c.Spec.Databricks = nil }, "exactly one identity block must be set"},
			"zero renewBefore": {func(c *v1alpha1.DatabricksCredential) { c.Spec.RenewBefore = &metav1.Duration{} }, "renewBefore must be a positive duration"},
			"http tokenURL": {func(c *v1alpha1.DatabricksCredential) {
				c.Spec.Databricks = nil
				c.Spec.OAuth2 = &v1alpha1.OAuth2Identity{TokenURL: "http://idp.example.com/token", ClientSecretRef: v1alpha1.ClientSecretReference{Name: "sp"}}
			}, "tokenURL must be an https:// URL"},
			"bad key name": {func(c *v1alpha1.DatabricksCredential) { c.Spec.Target.Data = map[string]string{"bad/key": "x"} },
				"target.data keys must be valid Secret keys"},
			"reserved label": {func(c *v1alpha1.DatabricksCredential) {
				c.Spec.Target.Labels = map[string]string{"dbtoken.io/credential": "other"}
			}, "reserved dbtoken.io/ prefix"},
		}
		for name, tc := range cases {
			c := databricksCredential(ns, "bad-"+rand.String(5), "https://adb-1.7.azuredatabricks.net", "sp")
			tc.mutate(c)
			err := k8sClient.Create(suiteCtx, c)
			Expect(err).To(HaveOccurred(), name)
			Expect(err.Error()).To(ContainSubstring(tc.want), name)
		}
	})
})

var _ = Describe("The apiserver refuses host names that are not plain ASCII", func() {
	// The allow-list judges the name that is dialled; a Unicode name is dialled as another one (its
	// xn-- form), so the schema refuses them outright, raw or percent-encoded, in every URL field.
	nonASCII := []string{
		"https://x.azuredatabr\u0130cks.net",
		"https://x.azuredatabr%C4%B0cks.net",
		"https://x.\uff41zuredatabricks.net",
		"https://evil\u3002azuredatabricks.net:8443",
		"https://x.azuredata\u00adbricks.net",
	}
	const want = "must name its host in plain ASCII"

	It("refuses them in host, oauth2.tokenURL and azure.authorityHost of both kinds, and accepts the xn-- form", func() {
		ns := newNamespace()
		for _, origin := range nonASCII {
			namespaced := map[string]func(*v1alpha1.DatabricksCredential){
				"host": func(c *v1alpha1.DatabricksCredential) { c.Spec.Host = origin },
				"tokenURL": func(c *v1alpha1.DatabricksCredential) {
					c.Spec.Databricks = nil
					c.Spec.OAuth2 = &v1alpha1.OAuth2Identity{TokenURL: origin + "/token", ClientSecretRef: v1alpha1.ClientSecretReference{Name: "sp"}}
				},
				"authorityHost": func(c *v1alpha1.DatabricksCredential) {
					c.Spec.Databricks = nil
					c.Spec.Azure = &v1alpha1.AzureIdentity{TenantID: "t", AuthorityHost: origin, ClientSecretRef: &v1alpha1.ClientSecretReference{Name: "sp"}}
				},
			}
			for field, mutate := range namespaced {
				c := databricksCredential(ns, "bad-"+rand.String(5), "https://adb-1.7.azuredatabricks.net", "sp")
				mutate(c)
				err := k8sClient.Create(suiteCtx, c)
				Expect(err).To(HaveOccurred(), "%s = %q", field, origin)
				Expect(err.Error()).To(ContainSubstring(field+" "+want), "%s = %q", field, origin)
			}
			cluster := map[string]func(*v1alpha1.ClusterDatabricksCredential){
				"host": func(c *v1alpha1.ClusterDatabricksCredential) { c.Spec.Host = origin },
				"tokenURL": func(c *v1alpha1.ClusterDatabricksCredential) {
					c.Spec.OAuth2 = &v1alpha1.ClusterOAuth2Identity{TokenURL: origin + "/token", ClientSecretRef: c.Spec.Databricks.ClientSecretRef}
					c.Spec.Databricks = nil
				},
				"authorityHost": func(c *v1alpha1.ClusterDatabricksCredential) {
					ref := c.Spec.Databricks.ClientSecretRef
					c.Spec.Azure = &v1alpha1.ClusterAzureIdentity{TenantID: "t", AuthorityHost: origin, ClientSecretRef: ref}
					c.Spec.Databricks = nil
				},
			}
			for field, mutate := range cluster {
				c := clusterCredential("https://adb-1.7.azuredatabricks.net", "platform", "sp", teamLabel())
				mutate(c)
				err := k8sClient.Create(suiteCtx, c)
				Expect(err).To(HaveOccurred(), "cluster %s = %q", field, origin)
				Expect(err.Error()).To(ContainSubstring(field+" "+want), "cluster %s = %q", field, origin)
			}
		}

		By("the ASCII spellings are accepted: xn-- names, IP addresses and ports")
		for _, origin := range []string{"https://x.xn--azuredatabricks-eqi.net", "https://127.0.0.1:8443", "https://[::1]:8443", "https://ADB-1.7.AzureDatabricks.net"} {
			c := databricksCredential(ns, "ok-"+rand.String(5), origin, "sp")
			Expect(k8sClient.Create(suiteCtx, c)).To(Succeed(), origin)
		}
	})
})

// requestsFor returns the IdP's recorded token requests from one client.
func requestsFor(clientID string) []idp.Request {
	var out []idp.Request
	for _, r := range idpServer.Requests() {
		if r.ClientID == clientID {
			out = append(out, r)
		}
	}
	return out
}

func eventReasons(ns string) []string {
	var list eventsv1.EventList
	Expect(k8sClient.List(suiteCtx, &list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Reason)
	}
	return out
}

// kubectl runs the kubectl on PATH against the envtest apiserver as an admin.
func kubectl(args ...string) ([]byte, error) {
	res := controlPlane.Kubectl(suiteCtx, nil, args...)
	return []byte(res.Stdout + res.Stderr), res.Err
}
