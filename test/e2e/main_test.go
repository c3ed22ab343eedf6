package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/testenv"
	"github.com/dbtoken/databricks-token-operator/test/idp"
)

// Suite-wide state, set up once in TestMain. Tests that start a manager scope it with
// --namespaces to their own namespaces (except the serial restart test), so the parallel tests
// never reconcile each other's credentials.
var (
	repoRoot     string                // absolute path of the module root
	controlPlane *testenv.ControlPlane // envtest, with the manager binary built from ./cmd/manager
	k8sClient    client.Client
	idpServer    *idp.Server // the shared identity provider (1 h tokens)

	scheme = runtime.NewScheme()

	registryMu    sync.Mutex
	idps          []*idp.Server // every IdP started, for the leak checks
	clientSecrets []string      // every client secret handed to a manager
)

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) (code int) {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))

	var err error
	if repoRoot, err = testenv.ModuleRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: kubectl is needed on PATH:", err)
		return 1
	}
	if controlPlane, err = testenv.Start(context.Background(), testenv.Options{BuildManager: true}); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() {
		if err := controlPlane.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
		}
	}()
	if k8sClient, err = client.New(controlPlane.Config, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}

	if idpServer, err = idp.Start(idp.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the identity provider:", err)
		return 1
	}
	registerIdP(idpServer)
	defer func() {
		registryMu.Lock()
		all := append([]*idp.Server(nil), idps...)
		registryMu.Unlock()
		for _, s := range all {
			s.Close()
		}
	}()

	code = m.Run()
	// Status conditions and Events are the other places people look; a leak there fails the run
	// even though no single test owns it.
	if msg := leakInClusterObjects(); msg != "" {
		fmt.Fprintln(os.Stderr, "e2e: FAIL:", msg)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func registerIdP(s *idp.Server) {
	registryMu.Lock()
	defer registryMu.Unlock()
	idps = append(idps, s)
}

// startIdP starts a dedicated identity provider, for a test that changes server-wide settings
// such as the token lifetime.
func startIdP(t *testing.T) *idp.Server {
	t.Helper()
	s, err := idp.Start(idp.Options{})
	if err != nil {
		t.Fatalf("starting an identity provider: %v", err)
	}
	registerIdP(s)
	return s
}

// rememberSecret registers a client secret that must never appear in logs, events or status.
func rememberSecret(s string) string {
	registryMu.Lock()
	defer registryMu.Unlock()
	clientSecrets = append(clientSecrets, s)
	return s
}

// eventually polls cond every interval until it returns true, failing the test with cond's last
// message after timeout.
func eventually(t *testing.T, timeout, interval time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	if err := testenv.Eventually(timeout, interval, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// consistently checks cond every interval for d and fails the test on the first false.
func consistently(t *testing.T, d, interval time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if ok, msg := cond(); !ok {
			t.Fatalf("%s stopped holding: %s", what, msg)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(interval)
	}
}

// newNamespace creates a namespace for one test. envtest runs no namespace controller, so
// namespaces are not deleted; the control plane goes away with the suite.
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	return ns.Name
}

// ensureNamespace creates a namespace with a fixed name unless it exists.
func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := client.IgnoreAlreadyExists(k8sClient.Create(context.Background(), ns)); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// newClient registers a Databricks service principal with a random secret on s and stores its
// credentials in a Secret named name in ns. It returns the client ID.
func newClient(t *testing.T, s *idp.Server, ns, name string) string {
	t.Helper()
	clientID := "e2e-" + rand.String(8)
	secret := rememberSecret("s3cr3t-" + rand.String(32))
	s.AddDatabricksClient(clientID, secret)
	mustCreate(t, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string][]byte{"client-id": []byte(clientID), "client-secret": []byte(secret)},
	})
	return clientID
}

// rotateClientSecret gives the client a new secret, first on the IdP, then in the Secret.
func rotateClientSecret(t *testing.T, s *idp.Server, ns, name, clientID string) {
	t.Helper()
	secret := rememberSecret("r0tated-" + rand.String(32))
	s.AddDatabricksClient(clientID, secret)
	var sec corev1.Secret
	if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &sec); err != nil {
		t.Fatalf("reading Secret %s/%s: %v", ns, name, err)
	}
	sec.Data["client-secret"] = []byte(secret)
	if err := k8sClient.Update(context.Background(), &sec); err != nil {
		t.Fatalf("rotating Secret %s/%s: %v", ns, name, err)
	}
}

// newCAConfigMap stores s's CA in a ConfigMap, for caBundleRef.
func newCAConfigMap(t *testing.T, s *idp.Server, ns string) *v1alpha1.CABundleReference {
	t.Helper()
	mustCreate(t, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "idp-ca"},
		Data:       map[string]string{"ca.crt": string(s.CACertPEM())},
	})
	return &v1alpha1.CABundleReference{Name: "idp-ca"}
}

// newCredential creates a databricks-block credential against s, trusting s's CA.
func newCredential(t *testing.T, s *idp.Server, ns, name, secretName string, ca *v1alpha1.CABundleReference, renewBefore time.Duration) *v1alpha1.DatabricksCredential {
	t.Helper()
	cred := &v1alpha1.DatabricksCredential{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.DatabricksCredentialSpec{
			Host:        s.URL(),
			Databricks:  &v1alpha1.DatabricksIdentity{ClientSecretRef: v1alpha1.ClientSecretReference{Name: secretName}},
			CABundleRef: ca,
		},
	}
	if renewBefore > 0 {
		cred.Spec.RenewBefore = &metav1.Duration{Duration: renewBefore}
	}
	mustCreate(t, cred)
	return cred
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8sClient.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
}

func getCred(t *testing.T, ns, name string) *v1alpha1.DatabricksCredential {
	t.Helper()
	var c v1alpha1.DatabricksCredential
	if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &c); err != nil {
		t.Fatalf("reading DatabricksCredential %s/%s: %v", ns, name, err)
	}
	return &c
}

// getSecret returns the Secret, or nil if it does not exist.
func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &s)
	if err != nil {
		if client.IgnoreNotFound(err) != nil {
			t.Fatalf("reading Secret %s/%s: %v", ns, name, err)
		}
		return nil
	}
	return &s
}

// readyReason is "<status>/<reason>" of the Ready condition, or "none".
func readyReason(c *v1alpha1.DatabricksCredential) string {
	cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady)
	if cond == nil {
		return "none"
	}
	return fmt.Sprintf("%s/%s", cond.Status, cond.Reason)
}

// waitTokenIssued waits for Ready=True/TokenIssued and returns the credential.
func waitTokenIssued(t *testing.T, ns, name string, timeout time.Duration) *v1alpha1.DatabricksCredential {
	t.Helper()
	var c *v1alpha1.DatabricksCredential
	eventually(t, timeout, 100*time.Millisecond, fmt.Sprintf("%s/%s Ready=True/TokenIssued", ns, name), func() (bool, string) {
		c = getCred(t, ns, name)
		r := readyReason(c)
		return r == "True/"+v1alpha1.ReasonTokenIssued, "Ready is " + r
	})
	return c
}

// requestsFrom returns s's recorded token requests from one client.
func requestsFrom(s *idp.Server, clientID string) []idp.Request {
	var out []idp.Request
	for _, r := range s.Requests() {
		if r.ClientID == clientID && (r.Endpoint == idp.EndpointDatabricksToken || r.Endpoint == idp.EndpointEntraToken) {
			out = append(out, r)
		}
	}
	return out
}

// tokenOf is the DATABRICKS_TOKEN in the Secret, "" if there is none.
func tokenOf(s *corev1.Secret) string {
	if s == nil {
		return ""
	}
	return string(s.Data["DATABRICKS_TOKEN"])
}

// kubectl runs kubectl against the envtest apiserver as system:masters, in the module root, and
// returns what it printed (stdout, then stderr).
func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := controlPlane.Kubectl(ctx, nil, args...)
	return strings.TrimSpace(r.Stdout + r.Stderr), r.Err
}
