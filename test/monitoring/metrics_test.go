package monitoring

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// metric is one metric family the operator registers, as read from its Go source.
type metric struct {
	Name   string
	Type   string // gauge, counter, histogram or summary
	Labels []string
	Help   string
	Source string // file:line, relative to the repository root
}

// seriesNames are the names its samples are exposed under.
func (m metric) seriesNames() []string {
	switch m.Type {
	case "histogram":
		return []string{m.Name + "_bucket", m.Name + "_sum", m.Name + "_count"}
	case "summary":
		return []string{m.Name, m.Name + "_sum", m.Name + "_count"}
	}
	return []string{m.Name}
}

// seriesLabels are the label names its samples may carry.
func (m metric) seriesLabels(series string) []string {
	l := slices.Clone(m.Labels)
	switch {
	case m.Type == "histogram" && strings.HasSuffix(series, "_bucket"):
		l = append(l, "le")
	case m.Type == "summary" && series == m.Name:
		l = append(l, "quantile")
	}
	return l
}

// metricSourceDirs hold the code that declares metrics (internal/metrics/metrics.go today).
// Every non-test Go file below them is read.
var metricSourceDirs = []string{"controllers", "internal", "cmd"}

var (
	metricsOnce sync.Once
	metricsList []metric
	metricsErr  error
)

// exportedMetrics returns the operator's own metrics, read from every
// prometheus.New{Gauge,Counter,Histogram,Summary}[Vec](prometheus.XxxOpts{Name: "dbtoken_..."}, labels)
// call in metricSourceDirs, sorted by name.
func exportedMetrics(t *testing.T) []metric {
	t.Helper()
	metricsOnce.Do(func() { metricsList, metricsErr = parseMetrics() })
	if metricsErr != nil {
		t.Fatal(metricsErr)
	}
	// internal/metrics/metrics.go defines 7 today; far fewer means the
	// parser no longer understands the code.
	if len(metricsList) < 5 {
		t.Fatalf("found only %d dbtoken_ metrics in %v; has the way they are declared changed?", len(metricsList), metricSourceDirs)
	}
	return metricsList
}

func parseMetrics() ([]metric, error) {
	fset := token.NewFileSet()
	var out []metric
	for _, d := range metricSourceDirs {
		err := filepath.WalkDir(filepath.Join(repoRoot, d), func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if m, ok := metricFromCall(n); ok {
					pos := fset.Position(n.Pos())
					rel, _ := filepath.Rel(repoRoot, pos.Filename)
					m.Source = rel + ":" + strconv.Itoa(pos.Line)
					out = append(out, m)
				}
				return true
			})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

var (
	constructor       = regexp.MustCompile(`^New(Gauge|Counter|Histogram|Summary)(Vec)?$`)
	scrapeConstructor = regexp.MustCompile(`^newScrape(Gauge|Counter)$`)
)

// metricFromCall recognises prometheus.NewXxx[Vec](prometheus.XxxOpts{Name: "dbtoken_...", ...}[, []string{...}])
// and controllers' scrape-time metrics, newScrapeXxx("dbtoken_...", "help", []string{...}).
func metricFromCall(n ast.Node) (metric, bool) {
	call, ok := n.(*ast.CallExpr)
	if !ok || len(call.Args) == 0 {
		return metric{}, false
	}
	if fn, ok := call.Fun.(*ast.Ident); ok {
		return scrapeMetricFromCall(fn, call)
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return metric{}, false
	}
	if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "prometheus" {
		return metric{}, false
	}
	kind := constructor.FindStringSubmatch(sel.Sel.Name)
	if kind == nil {
		return metric{}, false
	}
	opts, ok := call.Args[0].(*ast.CompositeLit)
	if !ok {
		return metric{}, false
	}
	m := metric{Type: strings.ToLower(kind[1])}
	for _, el := range opts.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		key, _ := kv.Key.(*ast.Ident)
		if key == nil {
			continue
		}
		switch key.Name {
		case "Name":
			m.Name = stringLit(kv.Value)
		case "Help":
			m.Help = stringLit(kv.Value)
		}
	}
	if !strings.HasPrefix(m.Name, "dbtoken_") {
		return metric{}, false
	}
	if kind[2] == "Vec" && len(call.Args) > 1 {
		if labels, ok := call.Args[1].(*ast.CompositeLit); ok {
			for _, el := range labels.Elts {
				m.Labels = append(m.Labels, stringLit(el))
			}
		}
	}
	return m, true
}

func scrapeMetricFromCall(fn *ast.Ident, call *ast.CallExpr) (metric, bool) {
	kind := scrapeConstructor.FindStringSubmatch(fn.Name)
	if kind == nil || len(call.Args) != 3 {
		return metric{}, false
	}
	m := metric{Type: strings.ToLower(kind[1]), Name: stringLit(call.Args[0]), Help: stringLit(call.Args[1])}
	if !strings.HasPrefix(m.Name, "dbtoken_") {
		return metric{}, false
	}
	if labels, ok := call.Args[2].(*ast.CompositeLit); ok {
		for _, el := range labels.Elts {
			m.Labels = append(m.Labels, stringLit(el))
		}
	}
	return m, true
}

func stringLit(e ast.Expr) string {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return ""
	}
	s, err := strconv.Unquote(lit.Value)
	if err != nil {
		return ""
	}
	return s
}

// seriesIndex maps every series name the operator exposes (histograms: _bucket, _sum, _count) to
// the label names its samples carry.
func seriesIndex(t *testing.T) map[string][]string {
	t.Helper()
	idx := map[string][]string{}
	for _, m := range exportedMetrics(t) {
		for _, s := range m.seriesNames() {
			idx[s] = m.seriesLabels(s)
		}
	}
	return idx
}

// TestExportedMetricsParsed pins what the parser reads, so that a change of the metrics code
// that it no longer understands shows up here rather than as a vacuous pass elsewhere.
func TestExportedMetricsParsed(t *testing.T) {
	byName := map[string]metric{}
	for _, m := range exportedMetrics(t) {
		t.Logf("%s %s %v (%s)", m.Name, m.Type, m.Labels, m.Source)
		if m.Help == "" {
			t.Errorf("%s (%s) has no Help", m.Name, m.Source)
		}
		if _, dup := byName[m.Name]; dup {
			t.Errorf("%s is declared twice", m.Name)
		}
		byName[m.Name] = m
	}
	for name, want := range map[string][]string{
		"dbtoken_credential_expiration_timestamp_seconds": {"namespace", "name", "identity"},
		"dbtoken_credential_consecutive_failures":         {"namespace", "name", "identity"},
		"dbtoken_credential_ready_status":                 {"namespace", "name", "identity", "condition"},
		"dbtoken_token_request_duration_seconds":          {"identity", "status_class"},
	} {
		m, ok := byName[name]
		if !ok {
			t.Errorf("%s not found; the alerts and the dashboard use it", name)
			continue
		}
		if !slices.Equal(m.Labels, want) {
			t.Errorf("%s has labels %v, want %v", name, m.Labels, want)
		}
	}
}

// promqlCheck is what checkPromQL found wrong with one expression.
type promqlCheck struct {
	metrics  []string // the operator's metrics the expression names
	problems []string
}

var (
	// A metric name: an identifier not preceded by a character of a name or a quote and not
	// followed by '(' (a function) — label values are quoted, so they do not match.
	promqlIdent = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	// A selector's matchers: name{...}.
	promqlSelector = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`)
	promqlMatcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"`)
	// Grouping and vector matching: by (...), without (...), on (...), ignoring (...).
	promqlGrouping     = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promqlAggrModifier = regexp.MustCompile(`^(by|without)\b`)
	promqlString       = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promqlRange        = regexp.MustCompile(`\[[^\]]*\]`)
)

// promqlWords are PromQL keywords, functions and aggregations that may appear without '('.
var promqlWords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true,
}

// checkPromQL checks that expr names no series but those in series (name → label names): every
// identifier that is not a function, keyword or label name must be one of them, and selectors and
// groupings may use only their labels. It is a lexical check, not a parser: promtool checks syntax.
func checkPromQL(expr string, series map[string][]string) promqlCheck {
	var c promqlCheck
	labels := map[string]bool{}

	// Selectors with matchers.
	for _, m := range promqlSelector.FindAllStringSubmatch(expr, -1) {
		name := m[1]
		if promqlWords[name] || strings.HasPrefix(name, "$") {
			continue
		}
		have, ok := series[name]
		for _, mm := range promqlMatcher.FindAllStringSubmatch(m[2], -1) {
			if ok && !slices.Contains(have, mm[1]) {
				c.problems = append(c.problems, "selector "+name+" matches on label "+mm[1]+", which it does not have")
			}
		}
	}
	// Identifiers outside strings, matchers and range/offset brackets.
	bare := promqlString.ReplaceAllString(expr, `""`)
	bare = promqlRange.ReplaceAllString(bare, "")
	bare = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(bare, "")
	for _, g := range promqlGrouping.FindAllStringSubmatch(bare, -1) {
		for _, l := range strings.Split(g[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels[l] = true
			}
		}
	}
	bare = promqlGrouping.ReplaceAllString(bare, "$1")
	for _, loc := range promqlIdent.FindAllStringIndex(bare, -1) {
		word := bare[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsRune("$.0123456789", rune(bare[loc[0]-1])) {
			continue // a Grafana variable, or part of a number such as 1e3
		}
		rest := strings.TrimLeft(bare[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promqlAggrModifier.MatchString(rest) || promqlWords[strings.ToLower(word)] {
			continue // a function, an aggregation (`sum by (...) (...)`) or a keyword
		}
		if _, ok := series[word]; !ok {
			c.problems = append(c.problems, "names "+word+", which the operator does not export")
			continue
		}
		if !slices.Contains(c.metrics, word) {
			c.metrics = append(c.metrics, word)
		}
	}
	// Grouping labels must belong to at least one metric of the expression.
	for l := range labels {
		found := false
		for _, name := range c.metrics {
			if slices.Contains(series[name], l) {
				found = true
			}
		}
		if !found {
			c.problems = append(c.problems, "groups by label "+l+", which none of "+strings.Join(c.metrics, ", ")+" has")
		}
	}
	sort.Strings(c.problems)
	return c
}

func TestCheckPromQL(t *testing.T) {
	series := seriesIndex(t)
	for expr, wantProblems := range map[string]int{
		`max by (namespace, name) (dbtoken_credential_expiration_timestamp_seconds{namespace=~"$namespace"} > 0) - time()`:                      0,
		`histogram_quantile(0.99, sum by (identity, le) (rate(dbtoken_token_request_duration_seconds_bucket[$__rate_interval])))`:               0,
		`sum(rate(dbtoken_credential_refresh_attempts_total{result="failure"}[5m])) / sum(rate(dbtoken_credential_refresh_attempts_total[5m]))`: 0,
		`dbtoken_credential_expiry_seconds`:                                           1, // no such metric
		`sum by (pod) (dbtoken_credential_consecutive_failures)`:                      1, // no such label
		`dbtoken_credential_ready_status{status="False"}`:                             1, // the label is "condition"
		`rate(dbtoken_token_request_duration_seconds[5m])`:                            1, // a histogram has _bucket/_sum/_count
		`up{job="databricks-token-operator"} == 0`:                                    1, // not the operator's metric
		`count(dbtoken_credential_ready_status{condition="False"} == 1) or vector(0)`: 0,
	} {
		c := checkPromQL(expr, series)
		if len(c.problems) != wantProblems {
			t.Errorf("checkPromQL(%q): %d problems %q, want %d", expr, len(c.problems), c.problems, wantProblems)
		}
	}
}
