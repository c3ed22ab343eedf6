package main

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// The benchmark itself needs a control plane; these cover the arithmetic and parsing it reports.

func TestPercentilesCountMissingAsNotReached(t *testing.T) {
	v := []float64{5, 1, 3, 2, 4}
	l := percentiles(append([]float64(nil), v...), 5)
	if *l.P50 != 3 || *l.P99 != 5 || *l.Max != 5 {
		t.Fatalf("got p50 %v p99 %v max %v", *l.P50, *l.P99, *l.Max)
	}
	// 5 of 10 Ready: the median is the 5th value, p99 and max were never reached.
	l = percentiles(append([]float64(nil), v...), 10)
	if l.P50 == nil || *l.P50 != 5 || l.P99 != nil || l.Max != nil {
		t.Fatalf("with half Ready: p50 %v p99 %v max %v", l.P50, l.P99, l.Max)
	}
	// 100 values, nearest rank: p99 is the 99th.
	var h []float64
	for i := 1; i <= 100; i++ {
		h = append(h, float64(i))
	}
	if l := percentiles(h, 100); *l.P50 != 50 || *l.P99 != 99 || *l.Max != 100 {
		t.Fatalf("1..100: p50 %v p99 %v max %v", *l.P50, *l.P99, *l.Max)
	}
}

func TestParseGCLine(t *testing.T) {
	line := "gc 12 @3.204s 1%: 0.021+2.1+0.004 ms clock, 0.043+0.11/1.0/2.1+0.008 ms cpu, 30->31->15 MB, 31 MB goal, 0 MB stacks, 0 MB globals, 2 P"
	g, ok := parseGCLine(line, time.Time{})
	if !ok || g.HeapStart != 30 || g.HeapEnd != 31 || g.Live != 15 || g.Goal != 31 {
		t.Fatalf("got %+v, %v", g, ok)
	}
	if _, ok := parseGCLine(`{"level":"info","msg":"gc 1 @ in a log line"}`, time.Time{}); ok {
		t.Fatal("a log line was parsed as a GC trace")
	}
}

func TestStatusDiff(t *testing.T) {
	ready := func(msg string, at time.Time) v1alpha1.DatabricksCredentialStatus {
		return v1alpha1.DatabricksCredentialStatus{Conditions: []metav1.Condition{{
			Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonTokenIssued,
			Message: msg, LastTransitionTime: metav1.NewTime(at)}}}
	}
	now := time.Unix(1_800_000_000, 0)
	empty := v1alpha1.DatabricksCredentialStatus{}
	a, b := ready("x", now), ready("y", now)
	cases := []struct {
		from, to *v1alpha1.DatabricksCredentialStatus
		want     string
	}{
		{&empty, &a, "status set (Ready=True/TokenIssued)"},
		{&a, &empty, "status wiped"},
		{&a, &b, "Ready message"},
		{&a, &a, "nothing in status (metadata or spec)"},
	}
	for _, c := range cases {
		if got := statusDiff(c.from, c.to); got != c.want {
			t.Errorf("statusDiff = %q, want %q", got, c.want)
		}
	}
	later := ready("x", now.Add(time.Second))
	if got := statusDiff(&a, &later); got != "Ready lastTransitionTime" {
		t.Errorf("statusDiff = %q", got)
	}
}

func TestLayoutKeepsEachIdentityInOneNamespace(t *testing.T) {
	l := layout{n: 1000, m: 20, namespaces: 4}
	seen := map[string]string{}
	for i := 0; i < l.n; i++ {
		sp, ns := l.spName(i%l.m), l.credKey(i).Namespace
		if prev, ok := seen[sp]; ok && prev != ns {
			t.Fatalf("service principal %s used in %s and %s", sp, prev, ns)
		}
		seen[sp] = ns
		if ns != l.spNamespace(i%l.m) {
			t.Fatalf("credential %d is not in its service principal's namespace", i)
		}
	}
	if len(seen) != l.m {
		t.Fatalf("%d service principals used, want %d", len(seen), l.m)
	}
}

func TestLayoutPrefixSetsAPhaseApart(t *testing.T) {
	main := layout{n: 1000, m: 20, namespaces: 4}
	if got := []string{main.namespace(0), main.spName(3), main.clientID(3), main.credKey(5).Name}; strings.Join(got, " ") != "bench-00 sp-0003 bench-sp-0003 cred-00005" {
		t.Fatalf("the main layout's names changed: %v", got)
	}
	r := layout{n: 100, m: 10, namespaces: 4, prefix: "refresh-"}
	if got := []string{r.namespace(0), r.spName(3), r.clientID(3), r.credKey(5).Name}; strings.Join(got, " ") != "bench-refresh-00 refresh-sp-0003 bench-refresh-sp-0003 refresh-cred-00005" {
		t.Fatalf("prefixed names: %v", got)
	}
	for j := 0; j < main.namespaces; j++ {
		if r.ownsNamespace(main.namespace(j)) || !main.ownsNamespace(main.namespace(j)) {
			t.Fatalf("namespace %s attributed to the wrong layout", main.namespace(j))
		}
	}
	for i := 0; i < r.n; i++ {
		if k := r.credKey(i); !r.ownsNamespace(k.Namespace) || main.ownsNamespace(k.Namespace) {
			t.Fatalf("refresh credential %s is not in a namespace of its own layout", k)
		}
	}
}

func TestTrackerCountsByNamespace(t *testing.T) {
	tr := newTracker(nil)
	secret := func(ns, rv string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s", ResourceVersion: rv}, Data: map[string][]byte{"k": []byte(rv)}}
	}
	event := func(ns, name string) *eventsv1.Event {
		return &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1"}, Type: "Normal", Reason: "TokenRefreshed"}
	}
	tr.onSecret(watch.Added, secret("bench-00", "1"), false)
	tr.onSecret(watch.Modified, secret("bench-refresh-00", "2"), false)
	tr.onSecret(watch.Modified, secret("bench-refresh-00", "3"), false)
	tr.onSecret(watch.Modified, secret("bench-refresh-00", "3"), false) // the same version again: no write
	tr.onEvent(watch.Added, event("bench-refresh-00", "e1"), false)
	refresh := func(ns string) bool { return strings.HasPrefix(ns, "bench-refresh-") }
	got := tr.snapshotIn(refresh)
	if want := (writeCounts{SecretAdded: 1, SecretModified: 1, EventsWritten: 1}); got != want {
		t.Fatalf("refresh namespaces: %+v, want %+v", got, want)
	}
	if all := tr.snapshot(); all != (writeCounts{SecretAdded: 2, SecretModified: 1, EventsWritten: 1}) {
		t.Fatalf("all namespaces: %+v", all)
	}
	if tr.sinceLastWriteIn(refresh) > time.Second || tr.sinceLastWriteIn(func(string) bool { return false }) < 0 {
		t.Fatal("sinceLastWriteIn")
	}
}

func TestRefreshFiguresAndTargets(t *testing.T) {
	run := func(d writeCounts) (*refreshResult, map[string]check) {
		rr := &refreshResult{Credentials: 100, Identities: 10}
		rr.fill(d)
		p := &phaseResult{Name: "refresh", Completed: true, Refresh: rr, EventsWritten: d.EventsWritten}
		r := &results{Config: config{N: 100, M: 10}, Phases: []*phaseResult{p}}
		checks := map[string]check{}
		for _, c := range targets(r) {
			checks[c.Target] = c
		}
		return rr, checks
	}
	// An Event write per refresh, besides the Secret and the status.
	rr, c := run(writeCounts{SecretModified: 600, CredModified: 600, EventsWritten: 600})
	if rr.Refreshes != 600 || rr.RefreshesPerCred != 6 || *rr.SecretWritesPerRefresh != 1 || *rr.StatusWritesPerRefresh != 1 || *rr.EventWritesPerRefresh != 1 {
		t.Fatalf("figures: %+v", rr)
	}
	if c["routine refreshes write no Event"].Verdict != "MISSED" || c["routine refresh: ≤ 2 API writes"].Verdict != "MISSED" {
		t.Fatalf("verdicts with an Event per refresh: %+v", c)
	}
	// After: no Event.
	_, c = run(writeCounts{SecretModified: 600, CredModified: 600})
	if c["routine refreshes write no Event"].Verdict != "met" || c["routine refresh: ≤ 2 API writes"].Verdict != "met" {
		t.Fatalf("verdicts without Events: %+v", c)
	}
	// No refresh in the window: nothing measured, no division by zero.
	rr, c = run(writeCounts{})
	if rr.SecretWritesPerRefresh != nil || c["routine refreshes write no Event"].Verdict != "not measured" || c["routine refresh: ≤ 2 API writes"].Verdict != "not measured" {
		t.Fatalf("without refreshes: %+v %+v", rr, c)
	}
}
