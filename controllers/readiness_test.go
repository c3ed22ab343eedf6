package controllers

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/kubecache"
	"github.com/dbtoken/databricks-token-operator/internal/token/tokentest"
)

var _ = Describe("Readiness", func() {
	It("is ready within seconds as a standby that does not lead, with the caches a leader needs synced", func() {
		// Another replica holds the Lease for an hour: this manager stays a standby throughout.
		ns := newNamespace()
		id := "readiness-" + rand.String(6)
		now := metav1.NewMicroTime(time.Now())
		Expect(k8sClient.Create(suiteCtx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: id},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("the-other-replica"), LeaseDurationSeconds: ptr.To(int32(3600)),
				AcquireTime: &now, RenewTime: &now},
		})).To(Succeed())

		probes := freeAddress()
		mgr, err := ctrl.NewManager(cfg, ctrl.Options{
			Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: probes,
			LeaderElection: true, LeaderElectionID: id, LeaderElectionNamespace: ns,
			Cache: kubecache.ManagerCacheOptions(nil), Controller: ctrlConfigForTests(),
		})
		Expect(err).NotTo(HaveOccurred())
		ctx, cancel := context.WithCancel(suiteCtx)
		defer cancel()
		Expect(Setup(ctx, mgr, Options{Provider: &tokentest.Provider{}})).To(Succeed())

		done := make(chan struct{})
		start := time.Now()
		go func() {
			defer GinkgoRecover()
			defer close(done)
			Expect(mgr.Start(ctx)).To(Succeed())
		}()
		readyz := func() int {
			resp, err := http.Get("http://" + probes + "/readyz/caches")
			if err != nil {
				return 0
			}
			_ = resp.Body.Close()
			return resp.StatusCode
		}
		Eventually(readyz, 10*time.Second, 20*time.Millisecond).Should(Equal(http.StatusOK))
		GinkgoWriter.Printf("standby ready %s after start\n", time.Since(start).Round(time.Millisecond))
		Consistently(readyz, time.Second, 100*time.Millisecond).Should(Equal(http.StatusOK), "once synced it stays ready")

		By("the caches a leader reads are warm on the standby")
		for _, obj := range []client.Object{&corev1.Secret{}, &v1alpha1.DatabricksCredential{}, &v1alpha1.ClusterDatabricksCredential{}} {
			inf, err := mgr.GetCache().GetInformer(ctx, obj)
			Expect(err).NotTo(HaveOccurred())
			Expect(inf.HasSynced()).To(BeTrue(), "%T", obj)
		}
		var lease coordinationv1.Lease
		Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: id}, &lease)).To(Succeed())
		Expect(*lease.Spec.HolderIdentity).To(Equal("the-other-replica"), "the manager never led")
		cancel()
		Eventually(done, 30*time.Second).Should(BeClosed())
	})
})

// freeAddress is a loopback address with a port nobody listens on.
func freeAddress() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = l.Close() }()
	return fmt.Sprintf("127.0.0.1:%d", l.Addr().(*net.TCPAddr).Port)
}
