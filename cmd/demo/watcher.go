package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
)

// settleWait is how long the watcher waits, after seeing a new token in the Secret, for the
// credential's status to describe it (the controller writes the Secret first), so that the
// narration reads in order. After that it narrates anyway.
const settleWait = 2 * time.Second

// watcher polls the credential and its Secret through the API (as kubectl would) and narrates
// changes: the Ready condition, the Secret's first contents, every token change, and a consumer
// run after each.
type watcher struct {
	n        *narrator
	c        client.Client
	cred     client.ObjectKey
	target   client.ObjectKey
	consumer *consumer

	lastStatus   string
	token        string
	pendingSince time.Time
	needConsumer bool
	ready        bool

	readySeen      bool
	refreshes      int
	consumerOK     int
	consumerFailed int
}

// watch polls until ctx ends.
func (w *watcher) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		w.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *watcher) poll(ctx context.Context) {
	var cred v1alpha1.DatabricksCredential
	if err := w.c.Get(ctx, w.cred, &cred); err != nil {
		if !ending(ctx) {
			w.n.say("reading DatabricksCredential %s: %v", w.cred, err)
		}
		return
	}
	var sec corev1.Secret
	if err := w.c.Get(ctx, w.target, &sec); err != nil && !apierrors.IsNotFound(err) {
		if !ending(ctx) {
			w.n.say("reading Secret %s: %v", w.target, err)
		}
		return
	}

	if tok := string(sec.Data[v1alpha1.DefaultTokenKey]); tok != "" && tok != w.token {
		if !statusDescribes(&cred, &sec) {
			if w.pendingSince.IsZero() {
				w.pendingSince = time.Now()
			}
			if time.Since(w.pendingSince) < settleWait {
				return
			}
		}
		w.pendingSince = time.Time{}
		w.n.hide(tok)
		if w.token == "" {
			w.describeSecret(&sec)
		} else {
			w.refreshes++
			w.n.say("refresh #%d: the operator replaced the token in Secret %s: %s → %s",
				w.refreshes, w.target, mask(w.token), mask(tok))
		}
		w.token = tok
		w.needConsumer = true
	}
	w.reportStatus(&cred)
	if w.needConsumer && w.ready {
		w.needConsumer = false
		w.consume(ctx, &sec)
	}
}

// ending reports whether ctx is over or about to be: a request then fails for that reason alone.
func ending(ctx context.Context) bool {
	deadline, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && time.Until(deadline) < time.Second
}

// statusDescribes reports whether the credential's status is about the token in the Secret.
func statusDescribes(cred *v1alpha1.DatabricksCredential, sec *corev1.Secret) bool {
	if cred.Status.ExpiresAt == nil {
		return false
	}
	at, err := time.Parse(time.RFC3339, sec.Annotations[v1alpha1.AnnotationExpiresAt])
	return err == nil && at.Equal(cred.Status.ExpiresAt.Time)
}

func (w *watcher) reportStatus(cred *v1alpha1.DatabricksCredential) {
	cond := meta.FindStatusCondition(cred.Status.Conditions, v1alpha1.ConditionReady)
	if cond == nil {
		return
	}
	st := cred.Status
	key := fmt.Sprint(cond.Status, cond.Reason, cond.Message, timeKey(st.ExpiresAt), timeKey(st.NextRefreshTime))
	if key == w.lastStatus {
		return
	}
	w.lastStatus = key
	w.ready = cond.Status == metav1.ConditionTrue
	w.readySeen = w.readySeen || w.ready

	now := time.Now()
	var b strings.Builder
	fmt.Fprintf(&b, "DatabricksCredential %s Ready=%s (%s)", w.cred, cond.Status, cond.Reason)
	var times []string
	if st.ExpiresAt != nil {
		times = append(times, "expiresAt "+when(st.ExpiresAt.Time, now))
	}
	if st.NextRefreshTime != nil {
		times = append(times, "nextRefreshTime "+when(st.NextRefreshTime.Time, now))
	}
	if len(times) > 0 {
		b.WriteString(": " + strings.Join(times, ", "))
	}
	if cond.Reason != v1alpha1.ReasonTokenIssued && cond.Message != "" {
		b.WriteString(" — " + cond.Message)
	}
	w.n.say("%s", b.String())
}

func timeKey(t *metav1.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// describeSecret prints the Secret's keys once, with the token masked.
func (w *watcher) describeSecret(sec *corev1.Secret) {
	w.n.say("the operator wrote Secret %s (label %s=%s, annotation %s=%s):", w.target,
		v1alpha1.LabelCredential, sec.Labels[v1alpha1.LabelCredential],
		v1alpha1.AnnotationExpiresAt, sec.Annotations[v1alpha1.AnnotationExpiresAt])
	keys := make([]string, 0, len(sec.Data))
	for k := range sec.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		v := strings.TrimRight(string(sec.Data[k]), "\n")
		if !strings.Contains(v, "\n") {
			fmt.Fprintf(&b, "%-17s %s\n", k+":", v)
			continue
		}
		fmt.Fprintf(&b, "%s |\n", k+":")
		for _, line := range strings.Split(v, "\n") {
			fmt.Fprintf(&b, "  %s\n", line)
		}
	}
	w.n.block(b.String())
}

// consume runs the consumer on the Secret as it is now and narrates the outcome.
func (w *watcher) consume(ctx context.Context, sec *corev1.Secret) {
	first := w.consumerOK+w.consumerFailed == 0
	conn, err := w.consumer.connect(ctx, sec.Data)
	if first && conn.output.Host != "" {
		w.n.say("consumer: plays a dbt pod that mounts the Secret: envFrom gives DATABRICKS_HOST=%s and DATABRICKS_TOKEN; profiles.yml gives profile %s, target %s (host %s, http_path %s, token)",
			conn.envHost, conn.profile, conn.target, conn.output.Host, conn.output.HTTPPath)
	}
	if conn.envToken != "" {
		same := "the same token"
		if conn.output.Token != conn.envToken {
			same = mask(conn.output.Token)
		}
		w.n.say("consumer: a dbt pod starting now reads DATABRICKS_TOKEN=%s (profiles.yml: %s)", mask(conn.envToken), same)
	}
	if err != nil {
		w.consumerFailed++
		w.n.say("consumer: connection FAILED: %v", err)
		return
	}
	w.consumerOK++
	w.n.say("consumer: connection ok (as %s): scim/v2/Me 200, warehouse %s %s", conn.user, conn.warehouseID, conn.state)
}
