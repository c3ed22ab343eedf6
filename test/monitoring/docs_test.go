package monitoring

import (
	"regexp"
	"strings"
	"testing"
)

// TestDocsListEveryMetric: docs/monitoring.md's metrics table has a row for every metric the
// operator registers, with its type and every label.
func TestDocsListEveryMetric(t *testing.T) {
	doc := string(readFile(t, metricsDoc))
	rows := map[string][]string{}
	row := regexp.MustCompile("(?m)^\\| `(dbtoken_[a-z0-9_]+)` \\|([^\\n]*)$")
	for _, m := range row.FindAllStringSubmatch(doc, -1) {
		rows[m[1]] = strings.Split(m[2], "|")
	}
	for _, m := range exportedMetrics(t) {
		cells, ok := rows[m.Name]
		if !ok {
			t.Errorf("%s has no row in the metrics table of %s (declared at %s)", m.Name, metricsDoc, m.Source)
			continue
		}
		if len(cells) < 3 {
			t.Errorf("%s: the row should be | metric | type | labels | meaning |", m.Name)
			continue
		}
		if got := strings.TrimSpace(cells[0]); got != m.Type {
			t.Errorf("%s: the table says type %q, the code declares a %s", m.Name, got, m.Type)
		}
		for _, l := range m.Labels {
			if !strings.Contains(cells[1], "`"+l+"`") {
				t.Errorf("%s: the table's labels %q lack `%s`", m.Name, strings.TrimSpace(cells[1]), l)
			}
		}
		delete(rows, m.Name)
	}
	for name := range rows {
		t.Errorf("%s lists %s, which the operator does not register", metricsDoc, name)
	}
}
