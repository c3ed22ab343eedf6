package controllers

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/kubecache"
	"github.com/dbtoken/databricks-token-operator/internal/metrics"
	"github.com/dbtoken/databricks-token-operator/internal/testenv"
	"github.com/dbtoken/databricks-token-operator/internal/token"
	"github.com/dbtoken/databricks-token-operator/test/idp"
)

// The suite runs the controller against a real kube-apiserver and etcd (envtest) and the test
// identity provider over TLS. Every test registers the client secrets it creates in
// clientSecrets; AfterSuite asserts that none of them, none of the tokens the identity provider
// issued and none of the ServiceAccount tokens and client assertions it received reached the
// logs, events or status.

var (
	cfg       *rest.Config
	k8sClient client.Client
	// controlPlane is the envtest kube-apiserver and etcd (internal/testenv).
	controlPlane *testenv.ControlPlane
	scheme       = runtime.NewScheme()
	idpServer    *idp.Server
	logs         = &syncBuffer{}
	suiteCtx     context.Context
	cancel       context.CancelFunc

	// referenceCache is the reference cache of the specs that call Reconcile directly.
	referenceCache client.Reader

	secretsMu     sync.Mutex
	clientSecrets []string
	extraIdPs     []*idp.Server
)

// trackIdP registers an identity provider started by one spec for the leak check.
func trackIdP(srv *idp.Server) {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	extraIdPs = append(extraIdPs, srv)
}

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controller Suite")
}

var _ = BeforeSuite(func() {
	// Debug level: routine V(1) lines are part of what must stay free of secrets.
	logf.SetLogger(zap.New(zap.WriteTo(&teeWriter{logs}), zap.UseDevMode(true), zap.Level(zapcore.Level(-2))))
	suiteCtx, cancel = context.WithCancel(context.TODO())

	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))

	var err error
	controlPlane, err = testenv.Start(suiteCtx, testenv.Options{})
	Expect(err).NotTo(HaveOccurred(), "run through `make test`, which builds the envtest binaries (hack/setup-envtest.sh)")
	cfg = controlPlane.Config
	// Registered here, these run after AfterSuite even when its leak check fails, so no
	// kube-apiserver or etcd outlives the suite.
	DeferCleanup(func() {
		cancel()
		Expect(controlPlane.Stop()).To(Succeed())
	})
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	idpServer, err = idp.Start(idp.Options{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(idpServer.Close)
	referenceCache = startReferenceCache()
})

var _ = AfterSuite(func() {
	if k8sClient != nil && idpServer != nil {
		assertNoSecretMaterialLeaked()
	}
})

// rememberSecret registers a client secret that must never appear in logs, events or status.
func rememberSecret(s string) string {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	clientSecrets = append(clientSecrets, s)
	return s
}

// assertNoSecretMaterialLeaked scans everything the controller wrote where people look (logs,
// Events, credential status) for any issued token or registered client secret.
func assertNoSecretMaterialLeaked() {
	var haystack strings.Builder
	haystack.WriteString(logs.String())
	var events eventsv1.EventList
	Expect(k8sClient.List(suiteCtx, &events)).To(Succeed())
	for _, e := range events.Items {
		haystack.WriteString(e.Note + "\n" + e.Reason + "\n")
	}
	var creds v1alpha1.DatabricksCredentialList
	Expect(k8sClient.List(suiteCtx, &creds)).To(Succeed())
	for _, c := range creds.Items {
		for _, cond := range c.Status.Conditions {
			haystack.WriteString(cond.Message + "\n")
		}
	}
	haystack.WriteString(clusterStatusText())
	text := haystack.String()
	Expect(text).NotTo(BeEmpty())
	secretsMu.Lock()
	defer secretsMu.Unlock()
	needles := append(append([]string{}, clientSecrets...), idpServer.IssuedTokens()...)
	// ServiceAccount tokens and client assertions are credentials too.
	needles = append(needles, idpServer.Assertions()...)
	for _, srv := range extraIdPs {
		needles = append(needles, srv.IssuedTokens()...)
		needles = append(needles, srv.Assertions()...)
	}
	needles = append(needles, fakeIssued()...)
	Expect(needles).NotTo(BeEmpty(), "the suite should have issued tokens and used secrets")
	for _, n := range needles {
		// Compare on a distinctive prefix too: a truncated token in a log line is still a leak.
		probe := n
		if len(probe) > 24 {
			probe = probe[len(probe)-24:]
		}
		if strings.Contains(text, probe) {
			Fail("secret material leaked into logs, events or status (value withheld)")
		}
	}
}

// managerHandle is a running manager that a test can stop, as a restart would.
type managerHandle struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (m *managerHandle) stop() {
	m.cancel()
	Eventually(m.done, 30*time.Second).Should(BeClosed())
}

// startManager runs the controller the way cmd/manager wires it: the same cache restrictions, the
// real client-credentials provider with system roots (credentials trust the test IdP through
// caBundleRef) and an allow-list of the loopback addresses.
func startManager() *managerHandle { return startManagerWithMetrics("0") }

// startManagerWithMetrics is startManager with the metrics endpoint served (plain HTTP) on addr.
func startManagerWithMetrics(addr string) *managerHandle {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: addr},
		HealthProbeBindAddress: "0",
		Cache:                  kubecache.ManagerCacheOptions(nil),
		Controller:             ctrlConfigForTests(),
	})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(suiteCtx)
	Expect(Setup(ctx, mgr, Options{
		MaxConcurrentReconciles: 2,
		TokenOptions: token.Options{
			Timeout:      5 * time.Second,
			AllowedHosts: token.MustParseHostPolicy("127.0.0.1,localhost"),
		},
	})).To(Succeed())
	h := &managerHandle{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer GinkgoRecover()
		defer close(h.done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	return h
}

// startReferenceCache runs the metadata-only reference cache the way the manager does, for the
// specs that call Reconcile directly: they read references through the same reader as production.
func startReferenceCache() client.Reader {
	refs, err := kubecache.NewReferenceCache(cfg, scheme, nil, nil, nil)
	Expect(err).NotTo(HaveOccurred())
	var objs []client.Object
	for _, kind := range kubecache.ReferenceKinds {
		objs = append(objs, kubecache.CoreMetadata(kind))
	}
	Expect(kubecache.StartInformers(suiteCtx, refs, objs...)).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(refs.Start(suiteCtx)).To(Succeed())
	}()
	Expect(refs.WaitForCacheSync(suiteCtx)).To(BeTrue())
	return refs
}

// newDirectShared builds what the reconcilers share exactly as Setup does, over the envtest API
// server without a manager (reads and writes go straight to it), with clk and provider injected.
func newDirectShared(clk clock.PassiveClock, provider token.Provider) *Shared {
	return newDirectSharedWith(k8sClient, clk, provider)
}

// newDirectSharedWith is newDirectShared with c for the reads and writes of credentials and
// target Secrets, e.g. a client whose writes fail.
func newDirectSharedWith(c client.Client, clk clock.PassiveClock, provider token.Provider) *Shared {
	return NewShared(c, k8sClient, referenceCache, scheme, clk, provider, metrics.New(k8sClient), nil, token.SharedCacheOptions{})
}

// newNamespace creates a namespace for one test.
func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "dbcred-"}}
	Expect(k8sClient.Create(suiteCtx, ns)).To(Succeed())
	return ns.Name
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// teeWriter writes logs to the buffer the leak check reads and to Ginkgo's per-spec output.
type teeWriter struct{ buf *syncBuffer }

func (t *teeWriter) Write(p []byte) (int, error) {
	_, _ = GinkgoWriter.Write(p)
	return t.buf.Write(p)
}
