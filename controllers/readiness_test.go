package controllers

import (
	"context"
	"net/http/httptest"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/dbtoken/databricks-token-operator/internal/token/tokentest"
)

var _ = Describe("Readiness", func() {
	It("reports not ready until the caches have synced, then ready", func() {
		mgr, err := ctrl.NewManager(cfg, ctrl.Options{
			Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
			Cache: CacheOptions(nil), Controller: ctrlConfigForTests(),
		})
		Expect(err).NotTo(HaveOccurred())
		ctx, cancel := context.WithCancel(suiteCtx)
		defer cancel()
		provider := &tokentest.Provider{}
		Expect((&DatabricksCredentialReconciler{Client: mgr.GetClient(), Scheme: scheme, Provider: provider}).SetupWithManager(ctx, mgr, SetupOptions{})).To(Succeed())
		Expect((&ClusterDatabricksCredentialReconciler{Client: mgr.GetClient(), Scheme: scheme, Provider: provider}).SetupWithManager(ctx, mgr, SetupOptions{})).To(Succeed())
		check := CachesSynced(mgr)
		req := httptest.NewRequest("GET", "/readyz", nil)

		Expect(check(req)).To(MatchError(ContainSubstring("has not synced yet")), "not ready before the manager starts")
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			Expect(mgr.Start(ctx)).To(Succeed())
		}()
		Eventually(func() error { return check(req) }, 20*time.Second, 50*time.Millisecond).Should(Succeed())
		cancel()
		Eventually(done, 30*time.Second).Should(BeClosed())
		Expect(check(req)).To(Succeed(), "once synced, it stays ready")
	})
})
