package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// writeCounts are the writes seen by the watches: every ADDED or MODIFIED event whose
// resourceVersion differs from the last one seen for that object is one write.
type writeCounts struct {
	CredAdded      int `json:"credentialCreates"`
	CredModified   int `json:"credentialWrites"`
	SecretAdded    int `json:"secretCreates"`
	SecretModified int `json:"secretUpdates"`
	EventsWritten  int `json:"eventsWritten"`
}

func (a writeCounts) add(b writeCounts) writeCounts {
	return writeCounts{
		CredAdded: a.CredAdded + b.CredAdded, CredModified: a.CredModified + b.CredModified,
		SecretAdded: a.SecretAdded + b.SecretAdded, SecretModified: a.SecretModified + b.SecretModified,
		EventsWritten: a.EventsWritten + b.EventsWritten,
	}
}

func (a writeCounts) sub(b writeCounts) writeCounts {
	return writeCounts{
		CredAdded: a.CredAdded - b.CredAdded, CredModified: a.CredModified - b.CredModified,
		SecretAdded: a.SecretAdded - b.SecretAdded, SecretModified: a.SecretModified - b.SecretModified,
		EventsWritten: a.EventsWritten - b.EventsWritten,
	}
}

type credState struct {
	rv     string
	ready  bool
	status v1alpha1.DatabricksCredentialStatus
}

// secretState is what a target Secret's next write is compared with, to say what it changed.
type secretState struct {
	rv          string
	labels      map[string]string
	annotations map[string]string
	dataHash    [32]byte
	owners      string
}

// tracker watches DatabricksCredentials, target Secrets (label dbtoken.io/credential) and
// events.k8s.io Events, counts writes, and notes when each credential is first seen Ready by the
// watch. A watch that ends is resumed; one that cannot be resumed is replaced by a list, and
// objects whose resourceVersion changed meanwhile count as one write each.
type tracker struct {
	cl client.WithWatch

	mu      sync.Mutex
	counts  writeCounts
	byNS    map[string]writeCounts // the same, by the namespace of the object written
	lastNS  map[string]time.Time   // the last write counted, by namespace
	creds   map[types.NamespacedName]*credState
	secrets map[types.NamespacedName]*secretState
	events  map[types.NamespacedName]string
	// What the writes changed (credential status fields, Secret parts) and Event reasons; the
	// keys say where write amplification comes from.
	statusChanges map[string]int
	secretChanges map[string]int
	eventReasons  map[string]int
	credWrites    map[types.NamespacedName]int       // MODIFIED per credential since resetPhase
	readyAt       map[types.NamespacedName]time.Time // first seen Ready since resetPhase
	readyNow      int
	lastWrite     time.Time // last write by anyone but the benchmark's creation of credentials
	relists       int
	errs          []string
	started       time.Time
}

func newTracker(cl client.WithWatch) *tracker {
	return &tracker{cl: cl,
		byNS: map[string]writeCounts{}, lastNS: map[string]time.Time{},
		creds: map[types.NamespacedName]*credState{}, secrets: map[types.NamespacedName]*secretState{},
		statusChanges: map[string]int{}, secretChanges: map[string]int{}, eventReasons: map[string]int{},
		events: map[types.NamespacedName]string{}, credWrites: map[types.NamespacedName]int{},
		readyAt: map[types.NamespacedName]time.Time{}, lastWrite: time.Now(), started: time.Now()}
}

// start lists and watches the three kinds; it returns when the initial lists are done.
func (t *tracker) start(ctx context.Context) error {
	managed, err := labels.NewRequirement(v1alpha1.LabelCredential, selection.Exists, nil)
	if err != nil {
		return err
	}
	kinds := []struct {
		name   string
		newL   func() client.ObjectList
		sel    labels.Selector
		handle func(ev watch.EventType, obj client.Object, resync bool)
	}{
		{"DatabricksCredentials", func() client.ObjectList { return &v1alpha1.DatabricksCredentialList{} }, nil, t.onCred},
		{"target Secrets", func() client.ObjectList { return &corev1.SecretList{} }, labels.NewSelector().Add(*managed), t.onSecret},
		{"Events", func() client.ObjectList { return &eventsv1.EventList{} }, nil, t.onEvent},
	}
	for _, k := range kinds {
		rv, err := t.list(ctx, k.newL(), k.sel, k.handle, false)
		if err != nil {
			return fmt.Errorf("listing %s: %w", k.name, err)
		}
		go t.watchLoop(ctx, k.name, k.newL, k.sel, k.handle, rv)
	}
	return nil
}

func (t *tracker) list(ctx context.Context, l client.ObjectList, sel labels.Selector, handle func(watch.EventType, client.Object, bool), resync bool) (string, error) {
	if err := t.cl.List(ctx, l, &client.ListOptions{LabelSelector: sel}); err != nil {
		return "", err
	}
	items, err := meta.ExtractList(l)
	if err != nil {
		return "", err
	}
	for _, it := range items {
		if obj, ok := it.(client.Object); ok {
			handle(watch.Modified, obj, !resync)
		}
	}
	return l.GetResourceVersion(), nil
}

func (t *tracker) watchLoop(ctx context.Context, name string, newL func() client.ObjectList, sel labels.Selector, handle func(watch.EventType, client.Object, bool), rv string) {
	for ctx.Err() == nil {
		w, err := t.cl.Watch(ctx, newL(), &client.ListOptions{LabelSelector: sel,
			Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
		if err == nil {
			rv, err = t.consume(ctx, w, handle, rv)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// Usually 410 Gone (rv too old): relist and count what changed meanwhile.
			t.mu.Lock()
			t.relists++
			if len(t.errs) < 20 {
				t.errs = append(t.errs, fmt.Sprintf("watch %s: %v", name, err))
			}
			t.mu.Unlock()
			time.Sleep(200 * time.Millisecond)
			if nrv, lerr := t.list(ctx, newL(), sel, handle, true); lerr == nil {
				rv = nrv
			}
		}
	}
}

func (t *tracker) consume(ctx context.Context, w watch.Interface, handle func(watch.EventType, client.Object, bool), rv string) (string, error) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return rv, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv, nil // closed by the server (timeout); resume from rv
			}
			switch ev.Type {
			case watch.Error:
				return rv, fmt.Errorf("%v", apiStatus(ev.Object))
			case watch.Bookmark:
				if obj, ok := ev.Object.(client.Object); ok {
					rv = obj.GetResourceVersion()
				}
			default:
				obj, ok := ev.Object.(client.Object)
				if !ok {
					continue
				}
				rv = obj.GetResourceVersion()
				handle(ev.Type, obj, false)
			}
		}
	}
}

func apiStatus(o any) string {
	if s, ok := o.(*metav1.Status); ok {
		return fmt.Sprintf("%s (%d %s)", s.Message, s.Code, s.Reason)
	}
	return fmt.Sprintf("%T", o)
}

// initial is true for the first list: state is recorded, nothing is counted.
func (t *tracker) onCred(ev watch.EventType, obj client.Object, initial bool) {
	c, ok := obj.(*v1alpha1.DatabricksCredential)
	if !ok {
		return
	}
	key := client.ObjectKeyFromObject(c)
	ready := isReady(c)
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	st, known := t.creds[key]
	if ev == watch.Deleted {
		if known && st.ready {
			t.readyNow--
		}
		delete(t.creds, key)
		return
	}
	if known && st.rv == c.ResourceVersion {
		return
	}
	if !known {
		st = &credState{}
		t.creds[key] = st
		if !initial {
			t.count(key.Namespace, func(c *writeCounts) { c.CredAdded++ })
		}
	} else if !initial {
		t.count(key.Namespace, func(c *writeCounts) { c.CredModified++ })
		t.credWrites[key]++
		t.statusChanges[statusDiff(&st.status, &c.Status)]++
		t.lastWrite = now
	}
	st.rv = c.ResourceVersion
	st.status = *c.Status.DeepCopy()
	if ready != st.ready {
		if ready {
			t.readyNow++
		} else {
			t.readyNow--
		}
		st.ready = ready
	}
	if ready {
		if _, seen := t.readyAt[key]; !seen {
			t.readyAt[key] = now
		}
	}
}

func (t *tracker) onSecret(ev watch.EventType, obj client.Object, initial bool) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	key := client.ObjectKeyFromObject(s)
	t.mu.Lock()
	defer t.mu.Unlock()
	if ev == watch.Deleted {
		delete(t.secrets, key)
		return
	}
	old, known := t.secrets[key]
	if known && old.rv == s.ResourceVersion {
		return
	}
	now := secretStateOf(s)
	t.secrets[key] = now
	if initial {
		return
	}
	if known {
		t.count(key.Namespace, func(c *writeCounts) { c.SecretModified++ })
		t.secretChanges[secretDiff(old, now)]++
	} else {
		t.count(key.Namespace, func(c *writeCounts) { c.SecretAdded++ })
	}
	t.lastWrite = time.Now()
}

func (t *tracker) onEvent(ev watch.EventType, obj client.Object, initial bool) {
	e, ok := obj.(*eventsv1.Event)
	if !ok {
		return
	}
	key := client.ObjectKeyFromObject(e)
	t.mu.Lock()
	defer t.mu.Unlock()
	if ev == watch.Deleted {
		delete(t.events, key)
		return
	}
	old, known := t.events[key]
	if known && old == e.ResourceVersion {
		return
	}
	t.events[key] = e.ResourceVersion
	if initial {
		return
	}
	t.count(key.Namespace, func(c *writeCounts) { c.EventsWritten++ }) // an Event lives in the namespace of what it regards
	reason := e.Type + "/" + e.Reason
	if known {
		reason += " (series update)"
	}
	t.eventReasons[reason]++
	t.lastWrite = time.Now()
}

func secretStateOf(s *corev1.Secret) *secretState {
	h := sha256.New()
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%d:", k, len(s.Data[k]))
		h.Write(s.Data[k])
	}
	st := &secretState{rv: s.ResourceVersion, labels: s.Labels, annotations: s.Annotations}
	copy(st.dataHash[:], h.Sum(nil))
	for _, o := range s.OwnerReferences {
		st.owners += string(o.UID) + ","
	}
	return st
}

// secretDiff names what a Secret write changed: data, owner references, and which labels and
// annotations.
func secretDiff(a, b *secretState) string {
	var parts []string
	if a.dataHash != b.dataHash {
		parts = append(parts, "data")
	}
	if a.owners != b.owners {
		parts = append(parts, "ownerReferences")
	}
	parts = append(parts, mapDiff("label", a.labels, b.labels)...)
	parts = append(parts, mapDiff("annotation", a.annotations, b.annotations)...)
	if len(parts) == 0 {
		return "nothing visible (metadata only)"
	}
	return strings.Join(parts, ", ")
}

func mapDiff(what string, a, b map[string]string) []string {
	var out []string
	for k, v := range b {
		if a[k] != v {
			out = append(out, what+" "+k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, what+" "+k+" removed")
		}
	}
	sort.Strings(out)
	return out
}

// statusDiff names what a credential write changed in status; "status set" is the first status
// for the credential (or after the benchmark wiped it), "status wiped" the benchmark's own wipe.
func statusDiff(a, b *v1alpha1.DatabricksCredentialStatus) string {
	ra := meta.FindStatusCondition(a.Conditions, v1alpha1.ConditionReady)
	rb := meta.FindStatusCondition(b.Conditions, v1alpha1.ConditionReady)
	switch {
	case ra == nil && rb == nil && equality.Semantic.DeepEqual(a, b):
		return "nothing in status (metadata or spec)"
	case rb == nil && equality.Semantic.DeepEqual(*b, v1alpha1.DatabricksCredentialStatus{}):
		return "status wiped"
	case ra == nil && rb != nil:
		return fmt.Sprintf("status set (Ready=%s/%s)", rb.Status, rb.Reason)
	}
	var parts []string
	if a.ObservedGeneration != b.ObservedGeneration {
		parts = append(parts, "observedGeneration")
	}
	if a.SecretName != b.SecretName {
		parts = append(parts, "secretName")
	}
	if !equality.Semantic.DeepEqual(a.ExpiresAt, b.ExpiresAt) {
		parts = append(parts, "expiresAt")
	}
	if !equality.Semantic.DeepEqual(a.LastRefreshTime, b.LastRefreshTime) {
		parts = append(parts, "lastRefreshTime")
	}
	if !equality.Semantic.DeepEqual(a.NextRefreshTime, b.NextRefreshTime) {
		parts = append(parts, "nextRefreshTime")
	}
	if a.FailedRefreshAttempts != b.FailedRefreshAttempts {
		parts = append(parts, "failedRefreshAttempts")
	}
	if ra != nil && rb != nil {
		if ra.Status != rb.Status || ra.Reason != rb.Reason {
			parts = append(parts, fmt.Sprintf("Ready %s/%s→%s/%s", ra.Status, ra.Reason, rb.Status, rb.Reason))
		} else if ra.Message != rb.Message {
			parts = append(parts, "Ready message")
		}
		if !ra.LastTransitionTime.Equal(&rb.LastTransitionTime) {
			parts = append(parts, "Ready lastTransitionTime")
		}
		if ra.ObservedGeneration != rb.ObservedGeneration {
			parts = append(parts, "Ready observedGeneration")
		}
	} else if ra != nil {
		parts = append(parts, "Ready removed")
	}
	if len(parts) == 0 {
		return "nothing in status (metadata or spec)"
	}
	return strings.Join(parts, ", ")
}

func isReady(c *v1alpha1.DatabricksCredential) bool {
	cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady)
	return cond != nil && cond.Status == metav1.ConditionTrue
}

// count adds one write to the totals and to those of namespace ns; t.mu is held.
func (t *tracker) count(ns string, add func(*writeCounts)) {
	add(&t.counts)
	c := t.byNS[ns]
	add(&c)
	t.byNS[ns] = c
	t.lastNS[ns] = time.Now()
}

func (t *tracker) snapshot() writeCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts
}

// snapshotIn is snapshot for the objects in the namespaces ns accepts.
func (t *tracker) snapshotIn(ns func(string) bool) writeCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sum writeCounts
	for name, c := range t.byNS {
		if ns(name) {
			sum = sum.add(c)
		}
	}
	return sum
}

// breakdown is what the writes changed, by kind, since the counters were taken.
type breakdown struct {
	StatusChanges map[string]int `json:"statusWriteChanges,omitempty"`
	SecretChanges map[string]int `json:"secretUpdateChanges,omitempty"`
	EventReasons  map[string]int `json:"eventReasons,omitempty"`
}

func (t *tracker) breakdown() breakdown {
	t.mu.Lock()
	defer t.mu.Unlock()
	return breakdown{StatusChanges: maps.Clone(t.statusChanges), SecretChanges: maps.Clone(t.secretChanges), EventReasons: maps.Clone(t.eventReasons)}
}

func (b breakdown) sub(base breakdown) breakdown {
	d := func(a, c map[string]int) map[string]int {
		out := map[string]int{}
		for k, v := range a {
			if v-c[k] != 0 {
				out[k] = v - c[k]
			}
		}
		return out
	}
	return breakdown{StatusChanges: d(b.StatusChanges, base.StatusChanges), SecretChanges: d(b.SecretChanges, base.SecretChanges), EventReasons: d(b.EventReasons, base.EventReasons)}
}

// resetPhase forgets the per-phase Ready times and per-credential write counts.
func (t *tracker) resetPhase() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.readyAt = map[types.NamespacedName]time.Time{}
	t.credWrites = map[types.NamespacedName]int{}
}

func (t *tracker) readyTimes() map[types.NamespacedName]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[types.NamespacedName]time.Time, len(t.readyAt))
	for k, v := range t.readyAt {
		out[k] = v
	}
	return out
}

func (t *tracker) maxCredWrites() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, v := range t.credWrites {
		n = max(n, v)
	}
	return n
}

func (t *tracker) readyCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.readyNow
}

func (t *tracker) sinceLastWrite() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return time.Since(t.lastWrite)
}

// sinceLastWriteIn is how long ago the last write to an object in the namespaces ns accepts
// was counted (since the tracker started if none was).
func (t *tracker) sinceLastWriteIn(ns func(string) bool) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var last time.Time
	for name, at := range t.lastNS {
		if ns(name) && at.After(last) {
			last = at
		}
	}
	if last.IsZero() {
		return time.Since(t.started)
	}
	return time.Since(last)
}

// markWrite records a write the benchmark itself made (its burst), so that "quiet" starts after it.
func (t *tracker) markWrite() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastWrite = time.Now()
}

func (t *tracker) problems() (int, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.relists, append([]string(nil), t.errs...)
}
