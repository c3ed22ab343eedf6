package monitoring

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	GridPos    *struct{}      `json:"gridPos"`
	Datasource *datasourceRef `json:"datasource"`
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// dashboardMetrics are the metrics the dashboard must show (issue 7): time to expiry, Ready, the
// next refresh, consecutive failures, refresh attempts, request durations and the cache.
var dashboardMetrics = []string{
	"dbtoken_credential_expiration_timestamp_seconds",
	"dbtoken_credential_next_refresh_timestamp_seconds",
	"dbtoken_credential_ready_status",
	"dbtoken_credential_consecutive_failures",
	"dbtoken_credential_refresh_attempts_total",
	"dbtoken_token_request_duration_seconds_bucket",
	"dbtoken_token_cache_lookups_total",
}

// grafanaVars replaces the dashboard's variables with values that make plain PromQL, for promtool.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "$__interval", "1m", "$__range", "6h",
	"${window}", "1h", "$window", "1h", "${namespace:regex}", ".*", "${namespace}", ".*", "$namespace", ".*",
)

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(readFile(t, dashboardFile))))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// TestDashboard parses the dashboard and checks that it is importable anywhere (a data source
// variable instead of a fixed data source, a namespace variable) and that every query names only
// metrics, and labels, that the operator exports, and that its PromQL is valid (promtool).
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard needs a uid and a title (uid %q, title %q)", d.UID, d.Title)
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d; keep it near 39 so that Grafana 10 and 11 import it unchanged", d.SchemaVersion)
	}
	series := seriesIndex(t)

	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			_ = json.Unmarshal(v.Query, &obj)
			q = obj.Query
		}
		switch {
		case v.Type == "datasource" && q != "prometheus":
			t.Errorf("variable %s: data source type %q, want prometheus", v.Name, q)
		case v.Type == "query":
			if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				t.Errorf("variable %s: datasource %+v, want uid ${datasource}", v.Name, v.Datasource)
			}
			checkLabelValues(t, v.Name, q, series)
		}
	}
	if vars["datasource"] != "datasource" {
		t.Errorf("the dashboard needs a variable `datasource` of type datasource (has %v)", vars)
	}
	if vars["namespace"] != "query" {
		t.Errorf("the dashboard needs a variable `namespace` of type query (has %v)", vars)
	}

	ids := map[int]string{}
	used := map[string]bool{}
	var exprs []string
	var where []string
	for _, p := range allPanels(d.Panels) {
		if prev, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d is missing or also used by %q", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if p.GridPos == nil {
			t.Errorf("panel %q has no gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want uid ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, tg := range p.Targets {
			at := fmt.Sprintf("panel %q, query %s", p.Title, tg.RefID)
			if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
				t.Errorf("%s: datasource %+v, want uid ${datasource}", at, tg.Datasource)
			}
			c := checkPromQL(tg.Expr, series)
			for _, problem := range c.problems {
				t.Errorf("%s: %s\n  %s", at, problem, tg.Expr)
			}
			if len(c.metrics) == 0 {
				t.Errorf("%s names none of the operator's metrics: %s", at, tg.Expr)
			}
			for _, m := range c.metrics {
				used[m] = true
			}
			if strings.Contains(tg.Expr, "dbtoken_credential_") && !strings.Contains(tg.Expr, `namespace=~"$namespace"`) {
				t.Errorf("%s: per-credential query ignores the namespace variable: %s", at, tg.Expr)
			}
			exprs = append(exprs, tg.Expr)
			where = append(where, at)
		}
	}
	for _, m := range dashboardMetrics {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	checkPromQLSyntax(t, exprs, where)
}

var labelValues = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{[^}]*\})?\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)

// checkLabelValues: a variable's label_values(metric, label) names an exported metric and a label
// of it.
func checkLabelValues(t *testing.T, name, q string, series map[string][]string) {
	t.Helper()
	m := labelValues.FindStringSubmatch(strings.TrimSpace(q))
	if m == nil {
		t.Errorf("variable %s: query %q is not label_values(metric, label)", name, q)
		return
	}
	labels, ok := series[m[1]]
	if !ok {
		t.Errorf("variable %s: %s is not a metric the operator exports", name, m[1])
		return
	}
	if !slices.Contains(labels, m[2]) {
		t.Errorf("variable %s: %s has no label %s", name, m[1], m[2])
	}
}

// checkPromQLSyntax runs the expressions, with Grafana's variables replaced, through
// `promtool check rules` as recording rules: promtool parses them with Prometheus's own parser.
// All at once first; on failure one by one, to say which query is wrong.
func checkPromQLSyntax(t *testing.T, exprs, where []string) {
	t.Helper()
	var plain []string
	for i, e := range exprs {
		p := grafanaVars.Replace(e)
		if strings.Contains(p, "$") {
			t.Errorf("%s: a Grafana variable this test does not know: %s", where[i], e)
			continue
		}
		plain = append(plain, p)
	}
	if promtoolCheckExprs(t, plain...) == "" {
		return
	}
	for i, p := range plain {
		if msg := promtoolCheckExprs(t, p); msg != "" {
			t.Errorf("%s: promtool rejects the query (variables replaced): %s\n%s", where[i], p, msg)
		}
	}
}

// promtoolCheckExprs returns promtool's complaint about the expressions as recording rules, or "".
func promtoolCheckExprs(t *testing.T, exprs ...string) string {
	t.Helper()
	var rules []map[string]string
	for i, e := range exprs {
		rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query_%d:check", i), "expr": e})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.yaml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, dir, nil, promtool(t), "check", "rules", "dashboard.yaml")
	if r.Err == nil {
		return ""
	}
	return strings.TrimSpace(r.Stdout + r.Stderr)
}
