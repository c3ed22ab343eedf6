package controllers

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// These specs run the ClusterDatabricksCredential controller inside a manager, against the test
// identity provider over TLS, with real time.
var _ = Describe("ClusterDatabricksCredential with a running manager", Ordered, func() {
	var (
		mgr      *managerHandle
		platform string // the platform team's namespace: client credentials and CA
		ca       *v1alpha1.ClusterCABundleReference
	)

	BeforeAll(func() {
		mgr = startManager()
		platform = newNamespace()
		newCAConfigMap(platform)
		ca = &v1alpha1.ClusterCABundleReference{Namespace: platform, Name: "idp-ca"}
	})
	AfterAll(func() {
		if mgr != nil {
			mgr.stop()
		}
	})
	// live creates a cluster credential against the test IdP with a new Databricks client, and
	// deletes it after the spec.
	live := func(selector map[string]string) (*v1alpha1.ClusterDatabricksCredential, string, string) {
		clientID := "cluster-" + rand.String(6)
		secretName := "sp-" + rand.String(5)
		clientSecret := newClientSecret(platform, secretName, clientID)
		idpServer.AddDatabricksClient(clientID, clientSecret)
		cc := clusterCredential(idpServer.URL(), platform, secretName, selector)
		cc.Spec.CABundleRef = ca
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(suiteCtx, cc))).To(Succeed()) })
		return cc, clientID, clientSecret
	}
	namespaceCount := func(cc *v1alpha1.ClusterDatabricksCredential) func() int32 {
		return func() int32 { return getClusterCred(cc).Status.NamespaceCount }
	}

	It("serves a namespace labelled later and removes the Secret when the label goes, never touching a foreign Secret", func() {
		label := teamLabel()
		served := newLabelledNamespace(label)
		cc, clientID, _ := live(label)
		Expect(k8sClient.Create(suiteCtx, cc)).To(Succeed())
		Eventually(func() string { return clusterReadyReason(cc) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		tok := string(getSecret(served, cc.Name).Data["DATABRICKS_TOKEN"])
		_, err := idpServer.ValidateToken(tok)
		Expect(err).NotTo(HaveOccurred())

		By("labelling a namespace later")
		late := newNamespace()
		setNamespaceLabels(late, label)
		Eventually(func() *corev1.Secret { return getSecret(late, cc.Name) }, 10*time.Second, 50*time.Millisecond).ShouldNot(BeNil())
		Expect(string(getSecret(late, cc.Name).Data["DATABRICKS_TOKEN"])).To(Equal(tok))
		Eventually(namespaceCount(cc), 5*time.Second).Should(Equal(int32(2)))

		By("a deleted token Secret is written again at once")
		Expect(k8sClient.Delete(suiteCtx, getSecret(late, cc.Name))).To(Succeed())
		Eventually(func() string {
			if s := getSecret(late, cc.Name); s != nil {
				return string(s.Data["DATABRICKS_TOKEN"])
			}
			return ""
		}, 5*time.Second, 50*time.Millisecond).Should(Equal(tok))

		By("a foreign Secret of the same name in a newly selected namespace is reported and left alone")
		taken := newNamespace()
		theirs := foreignSecret(taken, cc.Name)
		setNamespaceLabels(taken, label)
		Eventually(func() string { return clusterReadyReason(cc) }, 10*time.Second, 50*time.Millisecond).Should(Equal("False/SecretConflict"))
		c := getClusterCred(cc)
		Expect(c.Status.FailedNamespaces).To(ConsistOf(And(
			HaveField("Namespace", taken), HaveField("Reason", v1alpha1.ReasonSecretConflict))))
		Expect(readyCondition(c.Status.Conditions).Message).To(HavePrefix("1 of 3 selected namespaces do not hold a valid token: " + taken + " (SecretConflict)"))
		Expect(c.Status.NamespaceCount).To(Equal(int32(2)))

		By("unlabelling removes the Secret the operator wrote, and only it")
		setNamespaceLabels(late, nil)
		setNamespaceLabels(taken, nil)
		Eventually(func() *corev1.Secret { return getSecret(late, cc.Name) }, 10*time.Second, 50*time.Millisecond).Should(BeNil())
		Eventually(func() string { return clusterReadyReason(cc) }, 10*time.Second, 50*time.Millisecond).Should(Equal("True/TokenIssued"))
		Expect(getClusterCred(cc).Status.NamespaceCount).To(Equal(int32(1)))
		Expect(getClusterCred(cc).Status.FailedNamespaces).To(BeEmpty())
		Consistently(func() string { return getSecret(taken, cc.Name).ResourceVersion }, 2*time.Second).Should(Equal(theirs.ResourceVersion))
		Expect(getSecret(served, cc.Name)).NotTo(BeNil())
		Expect(requestsFor(clientID)).To(HaveLen(1), "one exchange throughout")
	})

	It("serves 20 namespaces from one token request, and no target Secret holds the client secret", func() {
		label := teamLabel()
		var namespaces []string
		for range 20 {
			namespaces = append(namespaces, newLabelledNamespace(label))
		}
		cc, clientID, clientSecret := live(label)
		cc.Spec.Target.Data = map[string]string{
			"DATABRICKS_TOKEN": "{{ .Token }}",
			"profiles.yml":     "host: {{ .Hostname }}\ntoken: {{ .Token }}\n",
		}
		Expect(k8sClient.Create(suiteCtx, cc)).To(Succeed())
		Eventually(func() string { return clusterReadyReason(cc) }, 30*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		Eventually(namespaceCount(cc), 10*time.Second).Should(Equal(int32(20)))

		Expect(requestsFor(clientID)).To(HaveLen(1), "one exchange for 20 namespaces")
		first := string(getSecret(namespaces[0], cc.Name).Data["DATABRICKS_TOKEN"])
		_, err := idpServer.ValidateToken(first)
		Expect(err).NotTo(HaveOccurred())
		for _, ns := range namespaces {
			Expect(string(getSecret(ns, cc.Name).Data["DATABRICKS_TOKEN"])).To(Equal(first), ns)
		}

		By("no Secret the operator wrote, and no Secret in any team namespace, contains the client secret")
		written := clusterSecrets(cc.Name)
		Expect(written).To(HaveLen(20))
		for _, s := range written {
			Expect(s.Namespace).NotTo(Equal(platform))
			for k, v := range s.Data {
				Expect(strings.Contains(string(v), clientSecret)).To(BeFalse(), "key %s in %s", k, s.Namespace)
			}
		}
		for _, ns := range namespaces {
			var all corev1.SecretList
			Expect(k8sClient.List(suiteCtx, &all, client.InNamespace(ns))).To(Succeed())
			for _, s := range all.Items {
				for _, v := range s.Data {
					Expect(strings.Contains(string(v), clientSecret)).To(BeFalse(), "Secret %s/%s", ns, s.Name)
				}
			}
		}

		By("kubectl shows the namespace count and waits for Ready")
		out, err := kubectl("get", "cdbcred", cc.Name)
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(strings.Fields(strings.SplitN(string(out), "\n", 2)[0])).To(Equal([]string{"NAME", "READY", "NAMESPACES", "EXPIRES", "AGE"}))
		Expect(string(out)).To(MatchRegexp(cc.Name + `\s+True\s+20\s+`))
		out, err = kubectl("wait", "--for=condition=Ready", "cdbcred/"+cc.Name, "--timeout=30s")
		Expect(err).NotTo(HaveOccurred(), string(out))

		By("events about the cluster-scoped credential are in the default namespace")
		Eventually(func() []string {
			var list eventsv1.EventList
			Expect(k8sClient.List(suiteCtx, &list, client.InNamespace(metav1.NamespaceDefault))).To(Succeed())
			var reasons []string
			for _, e := range list.Items {
				if e.Regarding.Kind == "ClusterDatabricksCredential" && e.Regarding.Name == cc.Name {
					reasons = append(reasons, e.Reason)
				}
			}
			return reasons
		}, 10*time.Second).Should(ContainElement(v1alpha1.ReasonTokenRefreshed))
	})

	It("mints a new token for every namespace within seconds when the client secret is rotated", func() {
		label := teamLabel()
		namespaces := []string{newLabelledNamespace(label), newLabelledNamespace(label)}
		cc, clientID, _ := live(label)
		Expect(k8sClient.Create(suiteCtx, cc)).To(Succeed())
		Eventually(func() string { return clusterReadyReason(cc) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))
		first := string(getSecret(namespaces[0], cc.Name).Data["DATABRICKS_TOKEN"])

		rotateDatabricksClient(clientID, platform, cc.Spec.Databricks.ClientSecretRef.Name)
		for _, ns := range namespaces {
			Eventually(func() string { return string(getSecret(ns, cc.Name).Data["DATABRICKS_TOKEN"]) }, 5*time.Second, 50*time.Millisecond).ShouldNot(Equal(first))
		}
		Expect(requestsFor(clientID)).To(HaveLen(2))
	})
})

var _ = Describe("The apiserver refuses cross-namespace references where they are not allowed", func() {
	It("refuses clientSecretRef.namespace on a namespaced DatabricksCredential", func() {
		ns := newNamespace()
		manifest := func(name string) *unstructured.Unstructured {
			u := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": v1alpha1.GroupVersion.String(),
				"kind":       "DatabricksCredential",
				"metadata":   map[string]any{"name": name, "namespace": ns},
				"spec": map[string]any{
					"host":       "https://adb-1.7.azuredatabricks.net",
					"databricks": map[string]any{"clientSecretRef": map[string]any{"name": "sp", "namespace": "platform"}},
				},
			}}
			return u
		}
		err := k8sClient.Create(suiteCtx, manifest("cross"), client.FieldValidation("Strict"))
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring(`unknown field "spec.databricks.clientSecretRef.namespace"`))

		By("kubectl apply refuses it too (strict field validation is kubectl's default)")
		data, err := manifest("cross-kubectl").MarshalJSON()
		Expect(err).NotTo(HaveOccurred())
		path := filepath.Join(GinkgoT().TempDir(), "cred.json")
		Expect(os.WriteFile(path, data, 0o600)).To(Succeed())
		out, err := kubectl("apply", "-f", path)
		Expect(err).To(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring(`unknown field "spec.databricks.clientSecretRef.namespace"`))

		By("a DatabricksCredential created without strict validation still has no way to name another namespace")
		Expect(k8sClient.Create(suiteCtx, manifest("pruned"))).To(Succeed())
		var stored v1alpha1.DatabricksCredential
		Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: "pruned"}, &stored)).To(Succeed())
		var raw unstructured.Unstructured
		raw.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("DatabricksCredential"))
		Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: "pruned"}, &raw)).To(Succeed())
		_, found, _ := unstructured.NestedFieldNoCopy(raw.Object, "spec", "databricks", "clientSecretRef", "namespace")
		Expect(found).To(BeFalse(), "the field is pruned, never stored")
		Expect(k8sClient.Delete(suiteCtx, &stored)).To(Succeed())
	})

	It("refuses a ClusterDatabricksCredential without a reference namespace, without namespaces to serve, or with a long name", func() {
		cases := map[string]struct {
			mutate func(*v1alpha1.ClusterDatabricksCredential)
			want   string
		}{
			"no reference namespace": {func(c *v1alpha1.ClusterDatabricksCredential) { c.Spec.Databricks.ClientSecretRef.Namespace = "" },
				"spec.databricks.clientSecretRef.namespace"},
			"no CA namespace": {func(c *v1alpha1.ClusterDatabricksCredential) {
				c.Spec.CABundleRef = &v1alpha1.ClusterCABundleReference{Name: "ca"}
			}, "spec.caBundleRef.namespace"},
			"no namespaces": {func(c *v1alpha1.ClusterDatabricksCredential) { c.Spec.NamespaceSelector = nil },
				"set spec.namespaceSelector, spec.namespaces or both"},
			"empty namespace list": {func(c *v1alpha1.ClusterDatabricksCredential) {
				c.Spec.NamespaceSelector, c.Spec.Namespaces = nil, []string{}
			}, "set spec.namespaceSelector, spec.namespaces or both"},
			"bad namespace name": {func(c *v1alpha1.ClusterDatabricksCredential) { c.Spec.Namespaces = []string{"Not_A_Namespace"} },
				"spec.namespaces[0]"},
			"two blocks": {func(c *v1alpha1.ClusterDatabricksCredential) {
				c.Spec.OAuth2 = &v1alpha1.ClusterOAuth2Identity{TokenURL: "https://idp.example.com/token",
					ClientSecretRef: v1alpha1.ClusterClientSecretReference{Namespace: "platform", Name: "sp"}}
			}, "exactly one identity block must be set"},
			"http host": {func(c *v1alpha1.ClusterDatabricksCredential) { c.Spec.Host = "http://adb-1.7.azuredatabricks.net" },
				"host must be an https:// URL"},
			"reserved label": {func(c *v1alpha1.ClusterDatabricksCredential) {
				c.Spec.Target.Labels = map[string]string{v1alpha1.LabelClusterCredential: "other"}
			}, "reserved dbtoken.io/ prefix"},
			"long name": {func(c *v1alpha1.ClusterDatabricksCredential) { c.Name = "c" + strings.Repeat("x", 63) },
				"metadata.name must be at most 63 characters"},
		}
		for name, tc := range cases {
			c := clusterCredential("https://adb-1.7.azuredatabricks.net", "platform", "sp", teamLabel())
			tc.mutate(c)
			err := k8sClient.Create(suiteCtx, c)
			Expect(err).To(HaveOccurred(), name)
			Expect(err.Error()).To(ContainSubstring(tc.want), name)
		}

		By("a valid one is accepted, with the defaults filled in")
		c := clusterCredential("https://adb-1.7.azuredatabricks.net", "platform", "sp", nil)
		c.Spec.NamespaceSelector = nil
		c.Spec.Namespaces = []string{"analytics"}
		Expect(k8sClient.Create(suiteCtx, c, client.FieldValidation("Strict"))).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(suiteCtx, c)).To(Succeed()) })
		Expect(getClusterCred(c).Spec.Databricks.ClientSecretRef.ClientSecretKey).To(Equal("client-secret"))
		Expect(getClusterCred(c).Namespace).To(BeEmpty())
	})
})
