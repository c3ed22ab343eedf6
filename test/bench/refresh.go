package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dbtoken/databricks-token-operator/test/idp"
)

// refreshQuiet is the pause in the refresh phase's writes at which its window may start or end:
// the writes of one refresh (Secret, status, and an Event sent asynchronously by the manager's
// recorder) come within it, so a window bounded by such pauses holds whole refreshes only.
const refreshQuiet = 2 * time.Second

// refreshLayout is the refresh phase's: namespaces, service principals (new identities, so that
// the shared token cache holds no hour-long token of the earlier phases for them) and
// credentials of its own.
func (b *bench) refreshLayout() layout {
	return layout{n: b.cfg.RefreshN, m: b.cfg.RefreshM, namespaces: b.cfg.refreshNamespaces(), prefix: "refresh-"}
}

// refreshResult is what the refresh phase adds to its phaseResult. The phase's write and token
// counts (tokenRequests, secretUpdates, statusWrites, eventsWritten, writeBreakdown) and CPU are
// those of the window, and only of the phase's own credentials and identities.
type refreshResult struct {
	TokenLifetimeSecs float64 `json:"tokenLifetimeSecs"`
	Credentials       int     `json:"credentials"`
	Identities        int     `json:"identities"`
	// The first issuance: from the start of the creation burst until every credential is Ready
	// (allReadyPollSecs) and its first token's writes are seen; firstIssuanceEvents counts the
	// Events of the phase's credentials until the window starts (one TokenRefreshed each).
	FirstIssuanceSecs   float64 `json:"firstIssuanceSecs"`
	FirstIssuanceEvents int     `json:"firstIssuanceEvents"`
	// The window: -refresh-window, started and ended at a pause of refreshQuiet in the phase's
	// writes (ended at most a quarter of the token lifetime late; boundariesQuiet false if it had
	// to start or end without such a pause).
	WindowSecs      float64 `json:"windowSecs"`
	BoundariesQuiet bool    `json:"windowBoundariesQuiet"`
	// A routine refresh is one update of one credential's target Secret within the window.
	Refreshes        int     `json:"refreshes"`
	RefreshesPerCred float64 `json:"refreshesPerCredential"`
	// Writes per routine refresh, by kind; nil when the window saw no refresh.
	SecretWritesPerRefresh *float64 `json:"secretWritesPerRefresh"`
	StatusWritesPerRefresh *float64 `json:"statusWritesPerRefresh"`
	EventWritesPerRefresh  *float64 `json:"eventWritesPerRefresh"`
	// Writes in the window to objects outside the phase's namespaces (the earlier phases'
	// credentials, whose tokens live an hour): expected 0.
	OtherWrites writeCounts `json:"otherWrites"`
}

// apiWritesPerRefresh is the sum of the three kinds, or nil.
func (r *refreshResult) apiWritesPerRefresh() *float64 {
	if r == nil || r.SecretWritesPerRefresh == nil {
		return nil
	}
	return ptr(*r.SecretWritesPerRefresh + *r.StatusWritesPerRefresh + *r.EventWritesPerRefresh)
}

// fill computes the per-refresh figures from the window's counts.
func (r *refreshResult) fill(d writeCounts) {
	r.Refreshes = d.SecretModified
	if r.Credentials > 0 {
		r.RefreshesPerCred = float64(r.Refreshes) / float64(r.Credentials)
	}
	if r.Refreshes == 0 {
		r.SecretWritesPerRefresh, r.StatusWritesPerRefresh, r.EventWritesPerRefresh = nil, nil, nil
		return
	}
	n := float64(r.Refreshes)
	r.SecretWritesPerRefresh = ptr(float64(d.SecretAdded+d.SecretModified) / n)
	r.StatusWritesPerRefresh = ptr(float64(d.CredModified) / n)
	r.EventWritesPerRefresh = ptr(float64(d.EventsWritten) / n)
}

// phaseRefresh: on the running manager, new identities get short-lived tokens; after their first
// issuance, a window in which only routine refreshes happen is observed.
func (b *bench) phaseRefresh(ctx context.Context) error {
	c, l := b.cfg, b.refreshLayout()
	p := b.res.addPhase("refresh", fmt.Sprintf("%d credentials over %d new service principals, %s tokens; routine refreshes observed for %s after the first issuance",
		l.n, l.m, c.RefreshLifetime, c.RefreshWindow))
	p.Credentials = l.n
	rr := &refreshResult{TokenLifetimeSecs: c.RefreshLifetime.Seconds(), Credentials: l.n, Identities: l.m}
	p.Refresh = rr
	if b.mgr == nil {
		return errors.New("refresh: no manager is running")
	}
	p.Manager = b.mgr.Name
	ours := l.ownsNamespace
	oursClient := func(id string) bool { return strings.HasPrefix(id, "bench-"+l.prefix) }

	// Tokens issued from now on live RefreshLifetime; the identities are registered after it.
	b.idp.SetTokenLifetime(c.RefreshLifetime)
	if err := setupIdentities(ctx, b.cl, b.idp, l, c.Concurrency); err != nil {
		return err
	}
	st := b.begin()
	base := b.tracker.snapshotIn(ours)
	logf("refresh: token lifetime %s; creating %d credentials over %d new service principals", c.RefreshLifetime, l.n, l.m)
	created, _, err := createCredentials(ctx, b.cl, l, b.idp.URL(), c.Concurrency, b.tracker.markWrite)
	p.BurstSecs = secs(time.Since(st.at))
	if err != nil {
		return b.endRefresh(ctx, p, st.at, time.Now(), err)
	}
	pr := b.pollReady(ctx, "refresh", st.at, l)
	b.recordReady(p, l, st.at, pr, func(i int) time.Time { return created[i] })
	if pr.err != nil {
		return b.endRefresh(ctx, p, st.at, time.Now(), pr.err)
	}

	// The first token of each credential is news: a Secret create, a status write and one
	// Event, which the manager's recorder sends asynchronously. The window starts once all of
	// them are seen and the phase's objects are quiet, so none of them counts as a refresh's.
	// The first routine refresh comes after about 0.45 of the lifetime; give up waiting at 0.25.
	deadline := time.Now().Add(c.RefreshLifetime / 4)
	quietStart := false
	for {
		d := b.tracker.snapshotIn(ours).sub(base)
		issued := d.SecretAdded >= l.n && d.EventsWritten >= l.n
		if issued && b.tracker.sinceLastWriteIn(ours) >= refreshQuiet {
			quietStart = true
			break
		}
		if time.Now().After(deadline) {
			p.Note = appendNote(p.Note, fmt.Sprintf("the window started without the first issuance complete and quiet (%d Secret creates, %d Events of %d credentials seen)",
				d.SecretAdded, d.EventsWritten, l.n))
			break
		}
		if err := b.pause(ctx, 100*time.Millisecond); err != nil {
			return b.endRefresh(ctx, p, st.at, time.Now(), err)
		}
	}
	first := b.tracker.snapshotIn(ours).sub(base)
	rr.FirstIssuanceSecs = secs(time.Since(st.at))
	rr.FirstIssuanceEvents = first.EventsWritten
	logf("refresh: first issuance written after %.1fs (%d Secret creates, %d status writes, %d Events); observing routine refreshes for %s",
		rr.FirstIssuanceSecs, first.SecretAdded, first.CredModified, first.EventsWritten, c.RefreshWindow)

	// The window.
	b.tracker.resetPhase() // the per-credential status write counts start here
	w := phaseStart{at: time.Now(), counts: b.tracker.snapshotIn(ours), reqs: b.idp.RequestCount(), brk: b.tracker.breakdown()}
	total := b.tracker.snapshot()
	planned := w.at.Add(c.RefreshWindow)
	lastLog := w.at
	var werr error
	for time.Now().Before(planned) && werr == nil {
		if err := b.pause(ctx, min(time.Second, time.Until(planned))); err != nil {
			werr = err
		}
		if time.Since(lastLog) >= 30*time.Second {
			lastLog = time.Now()
			d := b.tracker.snapshotIn(ours).sub(w.counts)
			logf("refresh: %.0fs of %s: %d routine refreshes (Secret updates), %d status writes, %d Events; manager RSS %s",
				time.Since(w.at).Seconds(), c.RefreshWindow, d.SecretModified, d.CredModified, d.EventsWritten, mib(b.mgr.Stats.Last().Mem.RSS))
		}
	}
	// End at a pause in the phase's writes, so that no refresh is cut in two.
	quietEnd := false
	for werr == nil {
		if b.tracker.sinceLastWriteIn(ours) >= refreshQuiet {
			quietEnd = true
			break
		}
		if time.Since(planned) > c.RefreshLifetime/4 {
			p.Note = appendNote(p.Note, "the window ended without a pause in the phase's writes: a refresh may be cut in two")
			break
		}
		werr = b.pause(ctx, 100*time.Millisecond)
	}
	end := time.Now()
	rr.BoundariesQuiet = quietStart && quietEnd
	rr.WindowSecs = secs(end.Sub(w.at))

	d := b.tracker.snapshotIn(ours).sub(w.counts)
	rr.OtherWrites = b.tracker.snapshot().sub(total).sub(d)
	if rr.OtherWrites != (writeCounts{}) {
		p.Note = appendNote(p.Note, fmt.Sprintf("writes outside the phase's namespaces in the window: %+v", rr.OtherWrites))
	}
	rr.fill(d)
	p.SecretCreates, p.SecretUpdates = d.SecretAdded, d.SecretModified
	p.SecretWritesPerCred = float64(d.SecretAdded+d.SecretModified) / float64(l.n)
	p.StatusWrites = d.CredModified
	p.StatusWritesPerCred = float64(d.CredModified) / float64(l.n)
	p.StatusWritesMaxOneCred = b.tracker.maxCredWrites()
	p.EventsWritten = d.EventsWritten
	p.Writes = b.tracker.breakdown().sub(w.brk)
	for _, r := range b.idp.Requests()[w.reqs:] {
		if (r.Endpoint != idp.EndpointDatabricksToken && r.Endpoint != idp.EndpointEntraToken) || !oursClient(r.ClientID) {
			continue
		}
		p.TokenRequests++
		if r.Status != 200 {
			p.TokenRequestsFailed++
		}
	}
	p.TokenRequestsPerIdentity = float64(p.TokenRequests) / float64(l.m)
	return b.endRefresh(ctx, p, w.at, end, werr)
}

// endRefresh records the phase's duration, resources over [from, end] and outcome. The manager
// never settles in this phase (refreshes go on), so nothing waits for it.
func (b *bench) endRefresh(ctx context.Context, p *phaseResult, from, end time.Time, phaseErr error) error {
	p.Completed = phaseErr == nil && ctx.Err() == nil
	p.Secs = secs(end.Sub(from))
	if phaseErr != nil {
		p.Note = appendNote(p.Note, "incomplete: "+phaseErr.Error())
	}
	b.recordResources(p, from, end)
	if rr := p.Refresh; rr != nil {
		f := func(v *float64) string {
			if v == nil {
				return "–"
			}
			return fmt.Sprintf("%.2f", *v)
		}
		logf("refresh: window of %.1fs — %d routine refreshes, token requests %d; per refresh: Secret %s, status %s, Event %s writes; manager RSS %.1f MiB",
			rr.WindowSecs, rr.Refreshes, p.TokenRequests, f(rr.SecretWritesPerRefresh), f(rr.StatusWritesPerRefresh), f(rr.EventWritesPerRefresh), p.Mem.rss())
	}
	if phaseErr != nil {
		return phaseErr
	}
	return ctx.Err()
}

// pause waits for d, or returns early with an error when the run is cancelled or the manager
// exited.
func (b *bench) pause(ctx context.Context, d time.Duration) error {
	if b.mgr != nil {
		if err := b.mgr.Exited(); err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
