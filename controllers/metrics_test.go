package controllers

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// The manager's metrics endpoint, scraped as Prometheus would after issuing and failing refreshes.
var _ = Describe("Metrics", Ordered, func() {
	var (
		mgr      *managerHandle
		endpoint string
	)
	BeforeAll(func() {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		addr := l.Addr().String()
		Expect(l.Close()).To(Succeed())
		endpoint = "http://" + addr + "/metrics"
		mgr = startManagerWithMetrics(addr)
	})
	AfterAll(func() {
		if mgr != nil {
			mgr.stop()
		}
	})

	// sample returns the value of the series of family whose labels include want, or an error.
	sample := func(family string, want map[string]string) (float64, error) {
		resp, err := http.Get(endpoint)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			return 0, err
		}
		mf, ok := families[family]
		if !ok {
			return 0, fmt.Errorf("no family %s", family)
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			return value(mf.GetType(), m), nil
		}
		return 0, fmt.Errorf("no series of %s with %v", family, want)
	}

	It("exports expiry, next refresh, Ready, attempts by reason and request durations", func() {
		ns := newNamespace()
		ca := newCAConfigMap(ns)
		clientID := "metrics-" + rand.String(6)
		newDatabricksClient(ns, "sp", clientID)
		good := databricksCredential(ns, "good", idpServer.URL(), "sp")
		good.Spec.CABundleRef = ca
		Expect(k8sClient.Create(suiteCtx, good)).To(Succeed())
		Eventually(func() string { return readyReason(good) }, 20*time.Second, 100*time.Millisecond).Should(Equal("True/TokenIssued"))

		c := getCred(good)
		id := map[string]string{"namespace": ns, "name": "good", "identity": "databricks"}
		Eventually(func() (float64, error) { return sample("dbtoken_credential_expiration_timestamp_seconds", id) }, 5*time.Second).
			Should(Equal(float64(c.Status.ExpiresAt.Unix())), "the expiry gauge equals status.expiresAt")
		Expect(sample("dbtoken_credential_next_refresh_timestamp_seconds", id)).To(Equal(float64(c.Status.NextRefreshTime.Unix())))
		Expect(sample("dbtoken_credential_ready_status", with(id, "condition", "True"))).To(Equal(1.0))
		Expect(sample("dbtoken_credential_ready_status", with(id, "condition", "False"))).To(Equal(0.0))
		Expect(sample("dbtoken_credential_refresh_attempts_total", with(with(id, "result", "success"), "reason", "TokenIssued"))).To(Equal(1.0))
		Expect(sample("dbtoken_token_request_duration_seconds", map[string]string{"identity": "databricks", "status_class": "2xx"})).To(BeNumerically(">=", 1))

		By("a failing credential counts failures with their reason")
		tenant := "metrics-tenant-" + rand.String(6)
		appID := "metrics-app-" + rand.String(6)
		newClientSecret(ns, "wrong", appID)
		idpServer.AddAzureApp(tenant, appID, rememberSecret("real-"+rand.String(16)))
		bad := azureCredential(ns, "bad", "https://adb-1.7.azuredatabricks.net", idpServer.URL(), tenant, "wrong")
		bad.Spec.CABundleRef = ca
		Expect(k8sClient.Create(suiteCtx, bad)).To(Succeed())
		badID := map[string]string{"namespace": ns, "name": "bad", "identity": "azure"}
		failures := with(with(badID, "result", "failure"), "reason", v1alpha1.ReasonInvalidClient)
		Eventually(func() (float64, error) { return sample("dbtoken_credential_refresh_attempts_total", failures) }, 10*time.Second).Should(Equal(1.0))
		// The gauges come from the manager's cache, which sees the status write a moment later.
		Eventually(func() (float64, error) {
			return sample("dbtoken_credential_ready_status", with(badID, "condition", "False"))
		}, 5*time.Second).Should(Equal(1.0))
		Eventually(func() (float64, error) { return sample("dbtoken_credential_consecutive_failures", badID) }, 5*time.Second).Should(Equal(1.0))
		Expect(sample("dbtoken_credential_consecutive_failures", id)).To(Equal(0.0))
		Expect(sample("dbtoken_token_request_duration_seconds", map[string]string{"identity": "azure", "status_class": "4xx"})).To(BeNumerically(">=", 1))

		rotateClientSecret(ns, "wrong") // still not the registered secret: a second failure, at once
		Eventually(func() (float64, error) { return sample("dbtoken_credential_refresh_attempts_total", failures) }, 10*time.Second).Should(Equal(2.0))

		By("deleting a credential removes its series")
		Expect(k8sClient.Delete(suiteCtx, bad)).To(Succeed())
		Eventually(func() error {
			_, err := sample("dbtoken_credential_ready_status", badID)
			return err
		}, 10*time.Second).Should(MatchError(ContainSubstring("no series")))

		By("no token, client secret or host is exported")
		resp, err := http.Get(endpoint)
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		Expect(err).NotTo(HaveOccurred())
		text := string(body)
		Expect(text).To(ContainSubstring("dbtoken_credential_expiration_timestamp_seconds"))
		Expect(strings.Contains(text, string(getSecret(ns, "good").Data["DATABRICKS_TOKEN"]))).To(BeFalse())
		Expect(text).NotTo(ContainSubstring("s3cr3t-"))
		Expect(text).NotTo(ContainSubstring(tenant), "no tenant IDs in labels")
		Expect(text).NotTo(ContainSubstring(clientID), "no client IDs in labels")
	})
})

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for key, val := range m {
		out[key] = val
	}
	return out
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}
