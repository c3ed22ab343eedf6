package monitoring

import (
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// ruleGroups returns the PrometheusRule's .spec.groups as a Prometheus rule file (`groups: ...`),
// taken verbatim from the manifest (no round trip through Go types that could drop a field).
func ruleGroups(t *testing.T) []byte {
	t.Helper()
	var obj struct {
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(readFile(t, ruleFile), &obj); err != nil {
		t.Fatalf("%s: %v", ruleFile, err)
	}
	if len(obj.Spec.Groups) == 0 {
		t.Fatalf("%s has no .spec.groups", ruleFile)
	}
	b, err := yaml.Marshal(map[string]any{"groups": obj.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeRules writes the rule file and promtool's unit tests side by side into a temporary
// directory and returns it.
func writeRules(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), ruleGroups(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), readFile(t, ruleTests), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRulesCheck runs `promtool check rules` (syntax of every expression, template and duration,
// duplicate rules) on the PrometheusRule's groups.
func TestRulesCheck(t *testing.T) {
	dir := writeRules(t)
	r := run(t, dir, nil, promtool(t), "check", "rules", "rules.yaml")
	if r.Err != nil {
		t.Fatalf("promtool check rules: %s", r)
	}
	t.Log(strings.TrimSpace(r.Stdout))
}

// TestRulesUnit runs `promtool test rules` on testdata/alerts_test.yaml: input series and the
// alerts expected (and not expected) at given times, for every alert.
func TestRulesUnit(t *testing.T) {
	dir := writeRules(t)
	r := run(t, dir, nil, promtool(t), "test", "rules", "alerts_test.yaml")
	if r.Err != nil {
		t.Fatalf("promtool test rules: %s", r)
	}
	t.Log(strings.TrimSpace(r.Stdout))
}

type rule struct {
	Record      string            `json:"record"`
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func parseRules(t *testing.T) []rule {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []rule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(ruleGroups(t), &f); err != nil {
		t.Fatal(err)
	}
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// wantAlerts are the alerts docs/monitoring.md promises (issue 7). Removing or renaming one is a
// change for users' Alertmanager routes and silences, so it must be made here too.
var wantAlerts = []string{"DatabricksTokenExpiringSoon", "DatabricksTokenRefreshFailing", "DatabricksCredentialNotReady"}

// TestRulesConventions checks what promtool does not: every alert has a severity, a summary and
// description that name the credential, a runbook_url that resolves to a heading of
// docs/troubleshooting.md, only the operator's metrics in its expression, a firing and a
// not-firing case in the unit tests, and a section in docs/monitoring.md.
func TestRulesConventions(t *testing.T) {
	rules := parseRules(t)
	series := seriesIndex(t)
	// Recording rules' outputs may be used by later rules; they keep the grouping labels.
	for _, r := range rules {
		if r.Record != "" {
			series[r.Record] = []string{"namespace", "name", "identity"}
		}
	}
	tests := parseRuleTests(t)
	doc := string(readFile(t, metricsDoc))

	var alerts []string
	for _, r := range rules {
		c := checkPromQL(r.Expr, series)
		for _, p := range c.problems {
			t.Errorf("rule %s%s: expression %s", r.Alert, r.Record, p)
		}
		if len(c.metrics) == 0 {
			t.Errorf("rule %s%s: expression names none of the operator's metrics: %s", r.Alert, r.Record, r.Expr)
		}
		if r.Record != "" {
			if !strings.Contains(r.Record, ":") {
				t.Errorf("recording rule %s: name it level:metric:operations (with colons)", r.Record)
			}
			if !slices.Contains(tests.exprs, r.Record) {
				t.Errorf("recording rule %s has no promql_expr_test in %s", r.Record, ruleTests)
			}
			continue
		}
		alerts = append(alerts, r.Alert)
		switch r.Labels["severity"] {
		case "critical", "warning", "info":
		default:
			t.Errorf("alert %s: severity label %q, want critical, warning or info", r.Alert, r.Labels["severity"])
		}
		if r.For == "" {
			t.Errorf("alert %s has no `for`: a single scrape would page", r.Alert)
		}
		for _, a := range []string{"summary", "description"} {
			v := r.Annotations[a]
			if !strings.Contains(v, "$labels.namespace") || !strings.Contains(v, "$labels.name") {
				t.Errorf("alert %s: annotation %s should name the credential ({{ $labels.namespace }}/{{ $labels.name }}): %q", r.Alert, a, v)
			}
		}
		checkRunbook(t, r.Alert, r.Annotations["runbook_url"])
		if !strings.Contains(doc, "`"+r.Alert+"`") {
			t.Errorf("alert %s is not described in %s", r.Alert, metricsDoc)
		}
		if n := tests.firing[r.Alert]; n == 0 {
			t.Errorf("alert %s: %s has no case where it fires", r.Alert, ruleTests)
		}
		if n := tests.silent[r.Alert]; n == 0 {
			t.Errorf("alert %s: %s has no case where it must not fire", r.Alert, ruleTests)
		}
	}
	for _, a := range wantAlerts {
		if !slices.Contains(alerts, a) {
			t.Errorf("alert %s is missing from %s", a, ruleFile)
		}
	}
}

// checkRunbook: the runbook URL points at docs/troubleshooting.md in this repository on GitHub,
// and its #anchor at a heading of the checked-out file.
func checkRunbook(t *testing.T, alert, raw string) {
	t.Helper()
	const prefix = "https://github.com/dbtoken/databricks-token-operator/blob/main/"
	if !strings.HasPrefix(raw, prefix) {
		t.Errorf("alert %s: runbook_url %q does not start with %s", alert, raw, prefix)
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Errorf("alert %s: runbook_url %q: %v", alert, raw, err)
		return
	}
	rel := strings.TrimPrefix(u.Path, "/dbtoken/databricks-token-operator/blob/main/")
	if rel != "docs/troubleshooting.md" {
		t.Errorf("alert %s: runbook_url points at %s, want docs/troubleshooting.md", alert, rel)
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Errorf("alert %s: runbook_url: %v", alert, err)
		return
	}
	if u.Fragment == "" || !hasAnchor(string(b), u.Fragment) {
		t.Errorf("alert %s: runbook_url %q: %s has no heading with anchor #%s", alert, raw, rel, u.Fragment)
	}
}

// ruleTestSummary counts promtool unit-test cases per alert.
type ruleTestSummary struct {
	firing, silent map[string]int // alert name → cases that expect it / expect nothing
	exprs          []string       // promql_expr_test expressions
}

func parseRuleTests(t *testing.T) ruleTestSummary {
	t.Helper()
	var f struct {
		RuleFiles []string `json:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
			PromQLExprTest []struct {
				Expr string `json:"expr"`
			} `json:"promql_expr_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, ruleTests), &f); err != nil {
		t.Fatalf("%s: %v", ruleTests, err)
	}
	if !slices.Equal(f.RuleFiles, []string{"rules.yaml"}) {
		t.Errorf("%s: rule_files is %v; the test writes the rules to [rules.yaml]", ruleTests, f.RuleFiles)
	}
	s := ruleTestSummary{firing: map[string]int{}, silent: map[string]int{}}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) == 0 {
				s.silent[a.Alertname]++
			} else {
				s.firing[a.Alertname]++
			}
		}
		for _, e := range tc.PromQLExprTest {
			s.exprs = append(s.exprs, strings.TrimSpace(e.Expr))
		}
	}
	return s
}

// hasAnchor reports whether a heading of doc has GitHub's anchor: lower case, punctuation other
// than '-' and '_' dropped, spaces turned into '-' (as test/packaging's link check does).
func hasAnchor(doc, anchor string) bool {
	inFence := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r > 127:
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		if b.String() == anchor {
			return true
		}
	}
	return false
}
