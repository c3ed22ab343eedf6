package controllers

import (
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/config"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/kubecache"
	"github.com/dbtoken/databricks-token-operator/internal/token/tokentest"
)

// ctrlConfigForTests lets several managers (a restart) run the same controller name in one process.
func ctrlConfigForTests() config.Controller {
	return config.Controller{SkipNameValidation: ptr.To(true)}
}

var (
	fakesMu sync.Mutex
	fakes   []*tokentest.Provider
)

// trackFake registers a fake provider whose tokens the leak check looks for.
func trackFake(p *tokentest.Provider) *tokentest.Provider {
	fakesMu.Lock()
	defer fakesMu.Unlock()
	fakes = append(fakes, p)
	return p
}

func fakeIssued() []string {
	fakesMu.Lock()
	defer fakesMu.Unlock()
	var out []string
	for _, f := range fakes {
		out = append(out, f.Issued()...)
	}
	return out
}

// newClientSecret creates a client-credentials Secret with a random, remembered secret.
func newClientSecret(ns, name, clientID string) string {
	return newClientSecretWith(ns, name, clientID, rememberSecret("s3cr3t-"+rand.String(32)))
}

// newDatabricksClient registers a Databricks client at the test IdP, then creates its
// client-credentials Secret: the order an admin follows, so that a credential already waiting for
// the Secret never exchanges a secret the IdP does not know yet (and backs off for minutes).
func newDatabricksClient(ns, name, clientID string) string {
	secret := rememberSecret("s3cr3t-" + rand.String(32))
	idpServer.AddDatabricksClient(clientID, secret)
	return newClientSecretWith(ns, name, clientID, secret)
}

func newClientSecretWith(ns, name, clientID, secret string) string {
	createReference(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string][]byte{"client-id": []byte(clientID), "client-secret": []byte(secret)},
	})
	return secret
}

// createReference creates an object credentials refer to (a Secret or ConfigMap) and waits
// until the reference cache has seen it.
func createReference(obj client.Object) {
	ExpectWithOffset(1, k8sClient.Create(suiteCtx, obj)).To(Succeed())
	awaitReferenceCache(obj)
}

// awaitReferenceCache waits until the reference cache of the specs that call Reconcile directly
// has seen obj at its current resourceVersion. Reconcilers learn of a changed reference from that
// cache's watch, a moment after the write; a pass run in that moment still sees the old object,
// as it would in production, where the watch event then triggers another pass.
func awaitReferenceCache(obj client.Object) {
	gvk, err := apiutil.GVKForObject(obj, scheme)
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	seen := kubecache.CoreMetadata(gvk.Kind)
	EventuallyWithOffset(2, func() (string, error) {
		err := referenceCache.Get(suiteCtx, client.ObjectKeyFromObject(obj), seen)
		return seen.ResourceVersion, err
	}, 10*time.Second, 10*time.Millisecond).Should(Equal(obj.GetResourceVersion()))
}

// rotateClientSecret replaces the secret value in an existing client-credentials Secret.
func rotateClientSecret(ns, name string) string {
	return rotateClientSecretTo(ns, name, rememberSecret("r0tated-"+rand.String(32)))
}

// rotateDatabricksClient rotates a Databricks client's secret the way an admin does: first at
// the identity provider, then in the Secret. The other order races the controller, which may
// exchange the new secret before the provider knows it and then back off for minutes.
func rotateDatabricksClient(clientID, ns, name string) {
	secret := rememberSecret("r0tated-" + rand.String(32))
	idpServer.AddDatabricksClient(clientID, secret)
	rotateClientSecretTo(ns, name, secret)
}

func rotateClientSecretTo(ns, name, secret string) string {
	var s corev1.Secret
	Expect(k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, &s)).To(Succeed())
	s.Data["client-secret"] = []byte(secret)
	Expect(k8sClient.Update(suiteCtx, &s)).To(Succeed())
	awaitReferenceCache(&s)
	return secret
}

// newCAConfigMap puts the test IdP's CA where caBundleRef can find it.
func newCAConfigMap(ns string) *v1alpha1.CABundleReference {
	createReference(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "idp-ca"},
		Data:       map[string]string{"ca.crt": string(idpServer.CACertPEM())},
	})
	return &v1alpha1.CABundleReference{Name: "idp-ca"}
}

func databricksCredential(ns, name, host, secretName string) *v1alpha1.DatabricksCredential {
	return &v1alpha1.DatabricksCredential{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.DatabricksCredentialSpec{
			Host:       host,
			Databricks: &v1alpha1.DatabricksIdentity{ClientSecretRef: v1alpha1.ClientSecretReference{Name: secretName}},
		},
	}
}

func azureCredential(ns, name, host, authority, tenant, secretName string) *v1alpha1.DatabricksCredential {
	return &v1alpha1.DatabricksCredential{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.DatabricksCredentialSpec{
			Host: host,
			Azure: &v1alpha1.AzureIdentity{TenantID: tenant, AuthorityHost: authority,
				ClientSecretRef: &v1alpha1.ClientSecretReference{Name: secretName}},
		},
	}
}

func getCred(c *v1alpha1.DatabricksCredential) *v1alpha1.DatabricksCredential {
	out := &v1alpha1.DatabricksCredential{}
	ExpectWithOffset(1, k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(c), out)).To(Succeed())
	return out
}

func getSecret(ns, name string) *corev1.Secret {
	s := &corev1.Secret{}
	if err := k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
		return nil
	}
	return s
}

func ready(c *v1alpha1.DatabricksCredential) *metav1.Condition {
	return meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady)
}

// readyReason is "<status>/<reason>" of the Ready condition, for readable Eventually checks.
func readyReason(c *v1alpha1.DatabricksCredential) string {
	cond := ready(getCred(c))
	if cond == nil {
		return "none"
	}
	return fmt.Sprintf("%s/%s", cond.Status, cond.Reason)
}

func annotationTime(s *corev1.Secret, key string) time.Time {
	t, err := time.Parse(time.RFC3339, s.Annotations[key])
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return t
}
