package monitoring

import (
	"bytes"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	metricsServiceFile = "config/default/metrics_service.yaml"
	// The metrics Service's name once config/default has prefixed it.
	metricsServiceName = "databricks-token-operator-controller-manager-metrics-service"
)

// decodeStrict decodes one YAML document into out, failing on fields the Go type does not have,
// which is how a typo in a ServiceMonitor (e.g. `bearerTokenfile`) would otherwise go unnoticed
// until prometheus-operator ignores it.
func decodeStrict(t *testing.T, file string, b []byte, out any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(b, out); err != nil {
		t.Fatalf("%s does not decode strictly into %T: %v", file, out, err)
	}
}

// TestPrometheusRuleDecodes decodes the PrometheusRule into prometheus-operator's Go type.
func TestPrometheusRuleDecodes(t *testing.T) {
	var pr monitoringv1.PrometheusRule
	decodeStrict(t, ruleFile, readFile(t, ruleFile), &pr)
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != monitoringv1.PrometheusRuleKind {
		t.Errorf("%s is %s %s, want monitoring.coreos.com/v1 PrometheusRule", ruleFile, pr.APIVersion, pr.Kind)
	}
	n := 0
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			n++
			if r.Expr.Type != intstr.String || strings.TrimSpace(r.Expr.StrVal) == "" {
				t.Errorf("group %s, rule %s%s: expr must be a non-empty string", g.Name, r.Alert, r.Record)
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s has no rules", ruleFile)
	}
}

// TestServiceMonitorMatchesMetricsService decodes the ServiceMonitor into prometheus-operator's Go
// type and checks it against config/default's metrics Service: the selector matches the Service's
// labels, the endpoint's port is one of its ports, and the scrape is HTTPS with the scraper's
// ServiceAccount token (the manager serves metrics with --metrics-secure).
func TestServiceMonitorMatchesMetricsService(t *testing.T) {
	var sm monitoringv1.ServiceMonitor
	decodeStrict(t, monitorFile, readFile(t, monitorFile), &sm)
	var svc corev1.Service
	decodeStrict(t, metricsServiceFile, readFile(t, metricsServiceFile), &svc)

	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatalf("%s: selector: %v", monitorFile, err)
	}
	if sel.Empty() {
		t.Fatalf("%s: the selector is empty and would match every Service", monitorFile)
	}
	if !sel.Matches(labels.Set(svc.Labels)) {
		t.Errorf("%s: selector %s does not match the labels %v of %s", monitorFile, sel, svc.Labels, metricsServiceFile)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("%s: %d endpoints, want 1", monitorFile, len(sm.Spec.Endpoints))
	}
	ep := sm.Spec.Endpoints[0]
	found := false
	for _, p := range svc.Spec.Ports {
		found = found || p.Name == ep.Port
	}
	if !found {
		t.Errorf("%s: endpoint port %q is not a port name of %s", monitorFile, ep.Port, metricsServiceFile)
	}
	if ep.Scheme == nil || !strings.EqualFold(string(*ep.Scheme), "https") {
		t.Errorf("%s: scheme %v, want https", monitorFile, ep.Scheme)
	}
	//nolint:staticcheck // bearerTokenFile is deprecated upstream but is what sends Prometheus's own token.
	if ep.BearerTokenFile != "/var/run/secrets/kubernetes.io/serviceaccount/token" {
		t.Errorf("%s: bearerTokenFile %q, want the ServiceAccount token file", monitorFile, ep.BearerTokenFile)
	}
	if !ep.HonorLabels {
		t.Errorf("%s: honorLabels must be true, or the credential's namespace label becomes exported_namespace", monitorFile)
	}
	if ep.TLSConfig == nil {
		t.Errorf("%s: no tlsConfig: the manager's certificate is self-signed", monitorFile)
	}
}

// renderPrometheusConfig renders config/prometheus with kubectl's kustomize.
func renderPrometheusConfig(t *testing.T) []byte {
	t.Helper()
	r := run(t, "", nil, "kubectl", "kustomize", "config/prometheus")
	if r.Err != nil {
		t.Fatalf("kubectl kustomize config/prometheus: %s", r)
	}
	return []byte(r.Stdout)
}

// TestPrometheusConfigRenders: config/prometheus puts both objects into the operator's namespace
// with the operator's name prefix, as config/default does, and only those two objects.
func TestPrometheusConfigRenders(t *testing.T) {
	docs := bytes.Split(renderPrometheusConfig(t), []byte("\n---\n"))
	kinds := map[string]string{}
	for _, d := range docs {
		var obj metav1.PartialObjectMetadata
		if err := yaml.Unmarshal(d, &obj); err != nil {
			t.Fatal(err)
		}
		kinds[obj.Kind] = obj.Name
		if obj.Namespace != operatorNamespace {
			t.Errorf("%s %s is in namespace %q, want %s", obj.Kind, obj.Name, obj.Namespace, operatorNamespace)
		}
		if !strings.HasPrefix(obj.Name, "databricks-token-operator-") {
			t.Errorf("%s %s lacks the databricks-token-operator- prefix", obj.Kind, obj.Name)
		}
		if obj.Labels["app.kubernetes.io/part-of"] != "databricks-token-operator" {
			t.Errorf("%s %s lacks the app.kubernetes.io/part-of label", obj.Kind, obj.Name)
		}
	}
	if len(kinds) != 2 || kinds["ServiceMonitor"] == "" || kinds["PrometheusRule"] == "" {
		t.Errorf("config/prometheus renders %v, want one ServiceMonitor and one PrometheusRule", kinds)
	}
}

// TestServerSideApply applies config/prometheus and config/grafana to an envtest apiserver with
// the monitoring.coreos.com CRDs (generated from prometheus-operator's types) using
// `kubectl apply --dry-run=server`, so the CRD schemas and strict field validation judge them.
// A rule with a malformed `for` and a ServiceMonitor with an unknown field must be refused, which
// shows that the schemas are really enforced.
func TestServerSideApply(t *testing.T) {
	// A dry run creates nothing, so the namespace the objects go into must exist.
	if r := kubectl(t, nil, "create", "namespace", operatorNamespace); r.Err != nil && !strings.Contains(r.Stderr, "AlreadyExists") {
		t.Fatalf("creating namespace %s: %s", operatorNamespace, r)
	}
	for _, dir := range []string{"config/prometheus", "config/grafana"} {
		t.Run(dir, func(t *testing.T) {
			if r := kubectl(t, nil, "apply", "--dry-run=server", "-k", dir); r.Err != nil {
				t.Fatalf("kubectl apply --dry-run=server -k %s: %s", dir, r)
			}
		})
	}

	rendered := string(renderPrometheusConfig(t))
	for name, tc := range map[string]struct{ old, new, wantErr string }{
		"malformed for": {
			old: "for: 15m", new: "for: 15 minutes", wantErr: "spec.groups[1].rules[1].for",
		},
		"unknown field": {
			old: "honorLabels: true", new: "honorLabels: true\n    bearerTokenfile: /x", wantErr: "bearerTokenfile",
		},
	} {
		t.Run("refused/"+name, func(t *testing.T) {
			if !strings.Contains(rendered, tc.old) {
				t.Fatalf("the rendered config has no %q to break", tc.old)
			}
			broken := strings.Replace(rendered, tc.old, tc.new, 1)
			r := kubectl(t, []byte(broken), "apply", "--dry-run=server", "-f", "-")
			if r.Err == nil {
				t.Fatalf("the apiserver accepted a broken manifest (%s → %s):\n%s", tc.old, tc.new, r.Stdout)
			}
			if !strings.Contains(r.Stderr, tc.wantErr) {
				t.Errorf("refused, but the error does not mention %q: %s", tc.wantErr, r.Stderr)
			}
		})
	}
}
