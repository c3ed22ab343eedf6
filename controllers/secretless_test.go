package controllers

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/credential"
	"github.com/dbtoken/databricks-token-operator/internal/token"
	"github.com/dbtoken/databricks-token-operator/test/idp"
)

// These specs run the identities that need no client secret — Databricks OAuth token federation,
// Entra workload identity and Entra certificates — with a running manager, the envtest API
// server issuing real ServiceAccount tokens (TokenRequest API) and the test IdP verifying them
// against the API server's published keys.
var _ = Describe("Secretless identities with a running manager", Ordered, func() {
	var (
		mgr    *managerHandle
		issuer string // the API server's service-account issuer
		jwks   []byte // and its keys, as a federation policy's jwks_json holds them
	)

	BeforeAll(func() {
		mgr = startManager()
		issuer, jwks = serviceAccountIssuer()
	})
	AfterAll(func() {
		if mgr != nil {
			mgr.stop()
		}
	})

	It("exchanges a ServiceAccount token for a Databricks token, with no client secret anywhere", func() {
		ns := newNamespace()
		newServiceAccount(ns, "dbt-runner")
		spID := newGUID()
		audience := "databricks-" + utilrand.String(8)
		subject := "system:serviceaccount:" + ns + ":dbt-runner"
		Expect(idpServer.AddFederationPolicy(idp.FederationPolicy{Issuer: issuer, Audiences: []string{"the-account-id", audience},
			Subject: subject, JWKS: jwks, ClientID: spID})).To(Succeed())
		cred := federationCredential(ns, "dbt-fed", "dbt-runner", audience, spID)
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())

		Eventually(func() string { return readyReason(cred) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		sec := getSecret(ns, "dbt-fed")
		claims, err := idpServer.ValidateToken(string(sec.Data["DATABRICKS_TOKEN"]))
		Expect(err).NotTo(HaveOccurred(), "the Secret must hold a token the IdP issued")
		Expect(claims.Subject).To(Equal(spID))

		By("the IdP verified the ServiceAccount token: signature with the API server's keys, issuer, subject, audience, expiry")
		reqs := requestsFor(spID)
		Expect(reqs).To(HaveLen(1))
		r := reqs[0]
		Expect(r.Path).To(Equal("/oidc/v1/token"))
		Expect(r.GrantType).To(Equal(token.GrantTypeTokenExchange))
		Expect(r.FormKeys).To(ConsistOf("client_id", "grant_type", "scope", "subject_token", "subject_token_type"))
		Expect(r.Scope).To(Equal("all-apis"))
		Expect(r.AssertionType).To(Equal("subject_token"))
		Expect(r.AssertionVerified).To(BeTrue())
		Expect(r.AssertionIssuer).To(Equal(issuer))
		Expect(r.AssertionSubject).To(Equal(subject))
		Expect(r.AssertionAudience).To(Equal([]string{audience}))
		Expect(r.AssertionExpiresAt.Sub(r.AssertionIssuedAt)).To(Equal(time.Hour), "expirationSeconds defaults to 3600")
		Expect(r.SecretPresent).To(BeFalse())

		By("the Databricks token lives no longer than the ServiceAccount token")
		Expect(annotationTime(sec, v1alpha1.AnnotationExpiresAt)).To(BeTemporally("<=", r.AssertionExpiresAt))

		By("no client secret exists in the namespace")
		expectNoClientSecrets(ns)
	})

	It("serves an account-wide federation policy (no client ID)", func() {
		ns := newNamespace()
		newServiceAccount(ns, "dbt")
		audience := "account-" + utilrand.String(8)
		subject := "system:serviceaccount:" + ns + ":dbt"
		Expect(idpServer.AddFederationPolicy(idp.FederationPolicy{Issuer: issuer, Audiences: []string{audience}, Subject: subject, JWKS: jwks})).To(Succeed())
		cred := federationCredential(ns, "dbt-account", "dbt", audience, "")
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())

		Eventually(func() string { return readyReason(cred) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		claims, err := idpServer.ValidateToken(string(getSecret(ns, "dbt-account").Data["DATABRICKS_TOKEN"]))
		Expect(err).NotTo(HaveOccurred())
		Expect(claims.Subject).To(Equal(subject), "an account-wide policy maps the token's subject")
		reqs := requestsBySubject(subject)
		Expect(reqs).To(HaveLen(1))
		Expect(reqs[0].FormKeys).To(ConsistOf("grant_type", "scope", "subject_token", "subject_token_type"))
		Expect(reqs[0].AssertionVerified).To(BeTrue())
	})

	It("never shares a token between ServiceAccounts of the same name in two namespaces", func() {
		spID := newGUID()
		audience := "shared-" + utilrand.String(8)
		var creds []*v1alpha1.DatabricksCredential
		for range 2 {
			ns := newNamespace()
			newServiceAccount(ns, "dbt")
			Expect(idpServer.AddFederationPolicy(idp.FederationPolicy{Issuer: issuer, Audiences: []string{audience},
				Subject: "system:serviceaccount:" + ns + ":dbt", JWKS: jwks, ClientID: spID})).To(Succeed())
			c := federationCredential(ns, "dbt", "dbt", audience, spID)
			Expect(k8sClient.Create(suiteCtx, c)).To(Succeed())
			creds = append(creds, c)
		}
		for _, c := range creds {
			Eventually(func() string { return readyReason(c) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		}
		reqs := requestsFor(spID)
		Expect(reqs).To(HaveLen(2), "each namespace's ServiceAccount is its own identity: one exchange each")
		Expect(reqs[0].AssertionSubject).NotTo(Equal(reqs[1].AssertionSubject))
	})

	It("reports a federation policy that expects another audience", func() {
		ns := newNamespace()
		newServiceAccount(ns, "dbt-runner")
		spID := newGUID()
		Expect(idpServer.AddFederationPolicy(idp.FederationPolicy{Issuer: issuer, Audiences: []string{"the-account-id"},
			Subject: "system:serviceaccount:" + ns + ":dbt-runner", JWKS: jwks, ClientID: spID})).To(Succeed())
		cred := federationCredential(ns, "wrong-aud", "dbt-runner", "databricks-elsewhere", spID)
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())

		Eventually(func() string { return readyReason(cred) }, 20*time.Second, 100*time.Millisecond).Should(Equal("False/InvalidClient"))
		msg := ready(getCred(cred)).Message
		Expect(msg).To(ContainSubstring("invalid_grant"))
		Expect(msg).To(ContainSubstring(`audience "databricks-elsewhere"`))
		Expect(msg).To(ContainSubstring("spec.federation.audience"), "the hint says what to check")
		reqs := requestsFor(spID)
		Expect(reqs).NotTo(BeEmpty())
		Expect(reqs[0].AssertionVerified).To(BeFalse())
		Expect(getSecret(ns, "wrong-aud")).To(BeNil())
	})

	It("never sends a ServiceAccount token that the Kubernetes API accepts", func() {
		// envtest's API server accepts tokens for its issuer URL (https://127.0.0.1:<port>/ here;
		// on managed clusters their own URLs), which the schema cannot know. A federation policy
		// that trusts that audience would make the exchange succeed: the token must not leave.
		ns := newNamespace()
		newServiceAccount(ns, "dbt-runner")
		spID := newGUID()
		subject := "system:serviceaccount:" + ns + ":dbt-runner"
		Expect(idpServer.AddFederationPolicy(idp.FederationPolicy{Issuer: issuer, Audiences: []string{issuer},
			Subject: subject, JWKS: jwks, ClientID: spID})).To(Succeed())
		cred := federationCredential(ns, "api-audience", "dbt-runner", issuer, spID)
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())

		Eventually(func() string { return readyReason(cred) }, 20*time.Second, 100*time.Millisecond).Should(Equal("False/InvalidSpec"))
		msg := ready(getCred(cred)).Message
		Expect(msg).To(ContainSubstring("is accepted by this cluster's Kubernetes API, so it is never sent"))
		Expect(msg).To(ContainSubstring("spec.federation.audience"), "the hint says what to change")
		Consistently(func() []idp.Request { return requestsBySubject(subject) }, 2*time.Second, 200*time.Millisecond).Should(BeEmpty(),
			"the identity provider never received the token")
		Expect(requestsFor(spID)).To(BeEmpty())
		Expect(getSecret(ns, "api-audience")).To(BeNil())
	})

	It("checks every minted ServiceAccount token with a TokenReview, for federation and workload identity audiences", func() {
		ns := newNamespace()
		newServiceAccount(ns, "dbt")
		direct, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		mint := func(c client.Client, audience string) (string, error) {
			return credential.ServiceAccountTokens(c)(suiteCtx, token.ServiceAccountToken{Namespace: ns, Name: "dbt", Audience: audience, ExpirationSeconds: 600})
		}

		By("a token for another audience is not accepted by the API, and is handed out")
		tok, err := mint(direct, token.AzureTokenExchangeAudience)
		Expect(err).NotTo(HaveOccurred())
		Expect(tok).NotTo(BeEmpty())

		By("a token the API accepts is refused, whichever audience it carries")
		_, err = mint(direct, issuer)
		Expect(token.AsError(err).Reason).To(Equal(v1alpha1.ReasonInvalidSpec))
		accepting := interceptor.NewClient(direct, interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if review, ok := obj.(*authenticationv1.TokenReview); ok {
				review.Status.Authenticated = true // a cluster whose --api-audiences include api://AzureADTokenExchange
				return nil
			}
			return c.Create(ctx, obj, opts...)
		}})
		tok, err = mint(accepting, token.AzureTokenExchangeAudience)
		Expect(tok).To(BeEmpty())
		e := token.AsError(err)
		Expect(e.Reason).To(Equal(v1alpha1.ReasonInvalidSpec))
		Expect(e.Error()).To(ContainSubstring(`audience "api://AzureADTokenExchange" is accepted by this cluster's Kubernetes API`))
		Expect(e.Error()).To(ContainSubstring("--api-audiences"))

		By("a TokenReview that cannot be made sends nothing")
		forbidden := interceptor.NewClient(direct, interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if _, ok := obj.(*authenticationv1.TokenReview); ok {
				return apierrors.NewForbidden(authenticationv1.Resource("tokenreviews"), "", errors.New("RBAC"))
			}
			return c.Create(ctx, obj, opts...)
		}})
		tok, err = mint(forbidden, token.AzureTokenExchangeAudience)
		Expect(tok).To(BeEmpty())
		Expect(token.AsError(err).Reason).To(Equal(v1alpha1.ReasonUnauthorized))
		Expect(err.Error()).To(ContainSubstring("tokenreviews.authentication.k8s.io"))
		failing := interceptor.NewClient(direct, interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if _, ok := obj.(*authenticationv1.TokenReview); ok {
				return apierrors.NewServiceUnavailable("etcd is gone")
			}
			return c.Create(ctx, obj, opts...)
		}})
		tok, err = mint(failing, token.AzureTokenExchangeAudience)
		Expect(tok).To(BeEmpty())
		Expect(token.AsError(err).Transient).To(BeTrue())
		Expect(err.Error()).NotTo(ContainSubstring("etcd is gone"), "API error texts are not quoted")
	})

	It("reports a ServiceAccount that does not exist, and uses it as soon as it appears", func() {
		ns := newNamespace()
		spID := newGUID()
		audience := "late-" + utilrand.String(8)
		Expect(idpServer.AddFederationPolicy(idp.FederationPolicy{Issuer: issuer, Audiences: []string{audience},
			Subject: "system:serviceaccount:" + ns + ":not-yet", JWKS: jwks, ClientID: spID})).To(Succeed())
		cred := federationCredential(ns, "late", "not-yet", audience, spID)
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())

		Eventually(func() string { return readyReason(cred) }, 20*time.Second, 100*time.Millisecond).Should(Equal("False/SecretNotFound"))
		Expect(ready(getCred(cred)).Message).To(ContainSubstring(`ServiceAccount "not-yet" does not exist in namespace "` + ns + `"`))
		Expect(requestsFor(spID)).To(BeEmpty(), "nothing is exchanged without the ServiceAccount")

		newServiceAccount(ns, "not-yet")
		Eventually(func() string { return readyReason(cred) }, 10*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
	})

	It("authenticates to Entra with a ServiceAccount token (workload identity)", func() {
		ns := newNamespace()
		newServiceAccount(ns, "dbt-wi")
		tenant, appID := newGUID(), newGUID()
		subject := "system:serviceaccount:" + ns + ":dbt-wi"
		Expect(idpServer.AddAzureFederatedCredential(tenant, appID, issuer, subject, "api://AzureADTokenExchange", jwks)).To(Succeed())
		cred := azureSecretlessCredential(ns, "dbt-wi", tenant, appID)
		cred.Spec.Azure.WorkloadIdentity = &v1alpha1.AzureWorkloadIdentity{ServiceAccountName: "dbt-wi"}
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())

		Eventually(func() string { return readyReason(cred) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		claims, err := idpServer.ValidateToken(string(getSecret(ns, "dbt-wi").Data["DATABRICKS_TOKEN"]))
		Expect(err).NotTo(HaveOccurred())
		Expect(claims.ClientID).To(Equal(appID))
		Expect(claims.TenantID).To(Equal(tenant))

		reqs := requestsFor(appID)
		Expect(reqs).To(HaveLen(1))
		r := reqs[0]
		Expect(r.Path).To(Equal("/" + tenant + "/oauth2/v2.0/token"))
		Expect(r.GrantType).To(Equal("client_credentials"))
		Expect(r.FormKeys).To(ConsistOf("client_assertion", "client_assertion_type", "client_id", "grant_type", "scope"))
		Expect(r.AssertionType).To(Equal("client_assertion"))
		Expect(r.AssertionVerified).To(BeTrue())
		Expect(r.AssertionIssuer).To(Equal(issuer))
		Expect(r.AssertionSubject).To(Equal(subject))
		Expect(r.AssertionAudience).To(Equal([]string{"api://AzureADTokenExchange"}))
		Expect(r.AssertionExpiresAt.Sub(r.AssertionIssuedAt)).To(Equal(10*time.Minute), "the shortest token the TokenRequest API issues")
		Expect(r.SecretPresent).To(BeFalse())
		expectNoClientSecrets(ns)
	})

	It("authenticates to Entra with a client certificate", func() {
		ns := newNamespace()
		tenant, appID := newGUID(), newGUID()
		certPEM, keyPEM, der := newClientCertificate(time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		newTLSSecret(ns, "dbt-cert-tls", certPEM, keyPEM)
		Expect(idpServer.AddAzureCertificate(tenant, appID, certPEM)).To(Succeed())
		cred := azureSecretlessCredential(ns, "dbt-cert", tenant, appID)
		cred.Spec.Azure.ClientCertificateRef = &v1alpha1.ClientCertificateReference{Name: "dbt-cert-tls"}
		Expect(k8sClient.Create(suiteCtx, cred)).To(Succeed())

		Eventually(func() string { return readyReason(cred) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		_, err := idpServer.ValidateToken(string(getSecret(ns, "dbt-cert").Data["DATABRICKS_TOKEN"]))
		Expect(err).NotTo(HaveOccurred())

		reqs := requestsFor(appID)
		Expect(reqs).To(HaveLen(1))
		r := reqs[0]
		Expect(r.FormKeys).To(ConsistOf("client_assertion", "client_assertion_type", "client_id", "grant_type", "scope"))
		Expect(r.AssertionVerified).To(BeTrue())
		Expect(r.AssertionAlg).To(Equal("PS256"))
		Expect(r.AssertionThumbprint).To(Equal(token.Thumbprint(der)))
		Expect(r.AssertionIssuer).To(Equal(appID))
		Expect(r.AssertionSubject).To(Equal(appID))
		Expect(r.AssertionAudience).To(Equal([]string{idpServer.URL() + "/" + tenant + "/oauth2/v2.0/token"}))
		Expect(r.AssertionExpiresAt.Sub(r.AssertionIssuedAt)).To(Equal(5 * time.Minute))
		Expect(r.SecretPresent).To(BeFalse())
	})

	It("refuses an expired certificate before sending it, and reports one Entra does not know", func() {
		ns := newNamespace()
		tenant := newGUID()

		By("an expired certificate: InvalidSpec, and nothing is sent")
		expiredApp := newGUID()
		certPEM, keyPEM, _ := newClientCertificate(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
		newTLSSecret(ns, "expired-tls", certPEM, keyPEM)
		Expect(idpServer.AddAzureCertificate(tenant, expiredApp, certPEM)).To(Succeed())
		expired := azureSecretlessCredential(ns, "expired", tenant, expiredApp)
		expired.Spec.Azure.ClientCertificateRef = &v1alpha1.ClientCertificateReference{Name: "expired-tls"}
		Expect(k8sClient.Create(suiteCtx, expired)).To(Succeed())
		Eventually(func() string { return readyReason(expired) }, 20*time.Second, 100*time.Millisecond).Should(Equal("False/InvalidSpec"))
		msg := ready(getCred(expired)).Message
		Expect(msg).To(ContainSubstring("the certificate in tls.crt expired at"))
		Expect(msg).To(ContainSubstring("renew it"))
		Expect(requestsFor(expiredApp)).To(BeEmpty())

		By("a certificate the app registration does not have: AADSTS700027, InvalidClient")
		otherApp := newGUID()
		registered, _, _ := newClientCertificate(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		Expect(idpServer.AddAzureCertificate(tenant, otherApp, registered)).To(Succeed())
		certPEM, keyPEM, _ = newClientCertificate(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		newTLSSecret(ns, "unknown-tls", certPEM, keyPEM)
		unknown := azureSecretlessCredential(ns, "unknown", tenant, otherApp)
		unknown.Spec.Azure.ClientCertificateRef = &v1alpha1.ClientCertificateReference{Name: "unknown-tls"}
		Expect(k8sClient.Create(suiteCtx, unknown)).To(Succeed())
		Eventually(func() string { return readyReason(unknown) }, 20*time.Second, 100*time.Millisecond).Should(Equal("False/InvalidClient"))
		msg = ready(getCred(unknown)).Message
		Expect(msg).To(ContainSubstring("AADSTS700027"))
		Expect(msg).To(ContainSubstring("upload tls.crt"))
		Expect(msg).NotTo(ContainSubstring("Trace ID"))

		By("a key that does not belong to the certificate: InvalidSpec before any exchange")
		_, otherKey, _ := newClientCertificate(time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		newTLSSecret(ns, "mismatch-tls", certPEM, otherKey)
		mismatch := azureSecretlessCredential(ns, "mismatch", tenant, otherApp)
		mismatch.Spec.Azure.ClientCertificateRef = &v1alpha1.ClientCertificateReference{Name: "mismatch-tls"}
		Expect(k8sClient.Create(suiteCtx, mismatch)).To(Succeed())
		Eventually(func() string { return readyReason(mismatch) }, 20*time.Second, 100*time.Millisecond).Should(Equal("False/InvalidSpec"))
		Expect(ready(getCred(mismatch)).Message).To(ContainSubstring("tls.key does not belong to the certificate"))

		By("a Secret without tls.key: SecretKeyMissing")
		Expect(k8sClient.Create(suiteCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-key-tls"},
			Data: map[string][]byte{"tls.crt": certPEM}})).To(Succeed())
		nokey := azureSecretlessCredential(ns, "nokey", tenant, otherApp)
		nokey.Spec.Azure.ClientCertificateRef = &v1alpha1.ClientCertificateReference{Name: "no-key-tls"}
		Expect(k8sClient.Create(suiteCtx, nokey)).To(Succeed())
		Eventually(func() string { return readyReason(nokey) }, 20*time.Second, 100*time.Millisecond).Should(Equal("False/SecretKeyMissing"))
		Expect(ready(getCred(nokey)).Message).To(ContainSubstring(`"tls.key"`))
	})
})

var _ = Describe("The apiserver validates secretless identities", func() {
	It("refuses ambiguous or incomplete identities with a clear message", func() {
		ns := newNamespace()
		appID := newGUID()
		azure := func(mutate func(a *v1alpha1.AzureIdentity)) func(c *v1alpha1.DatabricksCredential) {
			return func(c *v1alpha1.DatabricksCredential) {
				c.Spec.Federation = nil
				c.Spec.Azure = &v1alpha1.AzureIdentity{TenantID: "t"}
				mutate(c.Spec.Azure)
			}
		}
		cases := map[string]struct {
			mutate func(*v1alpha1.DatabricksCredential)
			want   string
		}{
			"federation and databricks": {func(c *v1alpha1.DatabricksCredential) {
				c.Spec.Databricks = &v1alpha1.DatabricksIdentity{ClientSecretRef: v1alpha1.ClientSecretReference{Name: "sp"}}
			}, "exactly one identity block must be set: azure, databricks, oauth2 or federation"},
			"azure without any credential": {azure(func(a *v1alpha1.AzureIdentity) {}),
				"azure needs exactly one of clientSecretRef, workloadIdentity and clientCertificateRef"},
			"azure with a secret and a certificate": {azure(func(a *v1alpha1.AzureIdentity) {
				a.ClientSecretRef = &v1alpha1.ClientSecretReference{Name: "sp"}
				a.ClientCertificateRef = &v1alpha1.ClientCertificateReference{Name: "cert"}
			}), "azure needs exactly one of clientSecretRef, workloadIdentity and clientCertificateRef"},
			"azure workload identity without clientID": {azure(func(a *v1alpha1.AzureIdentity) {
				a.WorkloadIdentity = &v1alpha1.AzureWorkloadIdentity{ServiceAccountName: "dbt"}
			}), "azure.clientID is required with workloadIdentity and clientCertificateRef"},
			"azure client secret with clientID": {azure(func(a *v1alpha1.AzureIdentity) {
				a.ClientSecretRef = &v1alpha1.ClientSecretReference{Name: "sp"}
				a.ClientID = appID
			}), "not allowed with clientSecretRef"},
			"azure clientID not a GUID": {azure(func(a *v1alpha1.AzureIdentity) {
				a.ClientCertificateRef = &v1alpha1.ClientCertificateReference{Name: "cert"}
				a.ClientID = "my-app"
			}), "spec.azure.clientID"},
			"federation lifetime below the TokenRequest minimum": {func(c *v1alpha1.DatabricksCredential) { c.Spec.Federation.ExpirationSeconds = 300 },
				"spec.federation.expirationSeconds: Invalid value: 300: spec.federation.expirationSeconds in body should be greater than or equal to 600"},
			"federation ServiceAccount name not DNS-1123": {func(c *v1alpha1.DatabricksCredential) { c.Spec.Federation.ServiceAccountName = "DBT_Runner" },
				"spec.federation.serviceAccountName in body should match"},
			"federation without audience": {func(c *v1alpha1.DatabricksCredential) { c.Spec.Federation.Audience = "" },
				"spec.federation.audience"},
			"federation with the API server's audience": {func(c *v1alpha1.DatabricksCredential) {
				c.Spec.Federation.Audience = "https://kubernetes.default.svc.cluster.local"
			}, "federation.audience must not be the Kubernetes API server's audience"},
			"workload identity ServiceAccount name not DNS-1123": {azure(func(a *v1alpha1.AzureIdentity) {
				a.ClientID = appID
				a.WorkloadIdentity = &v1alpha1.AzureWorkloadIdentity{ServiceAccountName: "-dbt"}
			}), "spec.azure.workloadIdentity.serviceAccountName in body should match"},
		}
		for name, tc := range cases {
			c := federationCredential(ns, "bad-"+utilrand.String(5), "dbt", "databricks", "")
			tc.mutate(c)
			err := k8sClient.Create(suiteCtx, c)
			Expect(err).To(HaveOccurred(), name)
			Expect(err.Error()).To(ContainSubstring(tc.want), name)
		}

		By("a valid federation block gets expirationSeconds 3600 by default")
		ok := federationCredential(ns, "ok", "dbt", "databricks", "")
		Expect(k8sClient.Create(suiteCtx, ok)).To(Succeed())
		Expect(getCred(ok).Spec.Federation.ExpirationSeconds).To(Equal(int64(3600)))
		Expect(k8sClient.Delete(suiteCtx, ok)).To(Succeed())

		By("kubectl explain documents the new fields")
		out, err := kubectl("explain", "databrickscredentials.spec.federation.audience")
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring("federation policy"))
		out, err = kubectl("explain", "databrickscredentials.spec.azure.clientCertificateRef")
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring("kubernetes.io/tls"))
	})
})

// serviceAccountIssuer reads the envtest API server's service-account issuer and its keys, as
// an admin would for a federation policy: kubectl get --raw /.well-known/openid-configuration
// and /openid/v1/jwks.
func serviceAccountIssuer() (string, []byte) {
	cs, err := kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	discovery, err := cs.RESTClient().Get().AbsPath("/.well-known/openid-configuration").DoRaw(suiteCtx)
	Expect(err).NotTo(HaveOccurred())
	var doc struct {
		Issuer string `json:"issuer"`
	}
	Expect(json.Unmarshal(discovery, &doc)).To(Succeed())
	Expect(doc.Issuer).NotTo(BeEmpty())
	jwks, err := cs.RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(suiteCtx)
	Expect(err).NotTo(HaveOccurred())
	return doc.Issuer, jwks
}

func newServiceAccount(ns, name string) {
	Expect(k8sClient.Create(suiteCtx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
}

func newGUID() string { return string(uuid.NewUUID()) }

func federationCredential(ns, name, serviceAccount, audience, clientID string) *v1alpha1.DatabricksCredential {
	return &v1alpha1.DatabricksCredential{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.DatabricksCredentialSpec{
			Host:        idpServer.URL(),
			Federation:  &v1alpha1.FederationIdentity{ServiceAccountName: serviceAccount, Audience: audience, ClientID: clientID},
			CABundleRef: newCAConfigMapOnce(ns),
		},
	}
}

// azureSecretlessCredential is an azure block without its credential, which the caller sets.
func azureSecretlessCredential(ns, name, tenant, clientID string) *v1alpha1.DatabricksCredential {
	return &v1alpha1.DatabricksCredential{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.DatabricksCredentialSpec{
			Host:        "https://adb-1234567890123456.7.azuredatabricks.net",
			Azure:       &v1alpha1.AzureIdentity{TenantID: tenant, ClientID: clientID, AuthorityHost: idpServer.URL()},
			CABundleRef: newCAConfigMapOnce(ns),
		},
	}
}

// newCAConfigMapOnce creates the IdP CA ConfigMap unless the namespace has it.
func newCAConfigMapOnce(ns string) *v1alpha1.CABundleReference {
	var cm corev1.ConfigMap
	if err := k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: "idp-ca"}, &cm); err == nil {
		return &v1alpha1.CABundleReference{Name: "idp-ca"}
	}
	return newCAConfigMap(ns)
}

// newClientCertificate returns a self-signed certificate and its RSA key (PKCS#8), PEM-encoded,
// and the certificate's DER.
func newClientCertificate(notBefore, notAfter time.Time) (certPEM, keyPEM, der []byte) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	Expect(err).NotTo(HaveOccurred())
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "dbt client certificate"}, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	Expect(err).NotTo(HaveOccurred())
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), der
}

// newTLSSecret creates a kubernetes.io/tls Secret; its private key must never be logged. The leak
// check looks for a line from the middle of the key (its random part; the PEM's first and last
// lines are the same for every key).
func newTLSSecret(ns, name string, certPEM, keyPEM []byte) {
	rememberSecret(strings.Split(string(keyPEM), "\n")[3])
	Expect(k8sClient.Create(suiteCtx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	})).To(Succeed())
}

// expectNoClientSecrets asserts that no Secret in ns holds a client secret: only the token Secret
// the operator wrote.
func expectNoClientSecrets(ns string) {
	var list corev1.SecretList
	Expect(k8sClient.List(suiteCtx, &list, client.InNamespace(ns))).To(Succeed())
	for _, s := range list.Items {
		for k := range s.Data {
			Expect(strings.ToLower(k)).NotTo(ContainSubstring("client-secret"), "Secret %s", s.Name)
		}
		Expect(s.Labels).To(HaveKey(v1alpha1.LabelCredential), "Secret %s is not a token Secret", s.Name)
	}
}

// requestsBySubject returns the IdP's recorded requests whose assertion had this subject.
func requestsBySubject(subject string) []idp.Request {
	var out []idp.Request
	for _, r := range idpServer.Requests() {
		if r.AssertionSubject == subject {
			out = append(out, r)
		}
	}
	return out
}
