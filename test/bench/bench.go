package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap/zapcore"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/dbtoken/databricks-token-operator/api/v1alpha1"
	"github.com/dbtoken/databricks-token-operator/internal/testenv"
	"github.com/dbtoken/databricks-token-operator/internal/testenv/procstat"
	"github.com/dbtoken/databricks-token-operator/test/idp"
)

// bench holds the environment of one run.
type bench struct {
	cfg    config
	layout layout
	res    *results

	root, tmp string
	cp        *testenv.ControlPlane
	cl        client.WithWatch
	lister    *readyLister
	idp       *idp.Server
	tracker   *tracker
	mgr       *manager // the running manager, if any
	managers  int      // managers started so far (names the log files)

	cpSamplers map[string]*procstat.Sampler // kube-apiserver and etcd
	self       *procstat.Sampler

	trackerCancel context.CancelFunc
	cleanupOnce   sync.Once
}

func run(parent context.Context, c config) int {
	b := &bench{cfg: c, layout: layout{n: c.N, m: c.M, namespaces: c.Namespaces}, cpSamplers: map[string]*procstat.Sampler{}}
	b.res = newResults(c)
	defer b.cleanup() // also on panic

	ctx, cancel := context.WithTimeout(parent, c.Timeout)
	defer cancel()
	err := b.execute(ctx)
	switch {
	case err == nil:
		b.res.Complete = true
	case parent.Err() != nil:
		b.res.Error = "interrupted: " + err.Error()
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
		b.res.Error = fmt.Sprintf("global timeout (%s) reached: %v", c.Timeout, err)
	default:
		b.res.Error = err.Error()
	}
	if err != nil {
		logf("stopped early: %s", b.res.Error)
	}
	if b.tracker != nil {
		b.res.WatchRelists, b.res.WatchErrors = b.tracker.problems()
	}
	b.cleanup()
	b.res.Machine.LoadAvgEnd = loadAvg()

	printReport(os.Stdout, b.res)
	path := c.JSONPath
	if path == "" && b.tmp != "" {
		path = filepath.Join(b.tmp, "bench-results.json")
	}
	if path != "" {
		if werr := writeJSON(path, b.res); werr != nil {
			fmt.Fprintln(os.Stderr, "bench: writing results:", werr)
		} else {
			fmt.Printf("\nJSON results: %s\n", path)
		}
	}
	if b.tmp != "" {
		fmt.Printf("Manager logs: %s\n", filepath.Join(b.tmp, "manager-*.log"))
	}
	if err != nil {
		return 1
	}
	return 0
}

func (b *bench) execute(ctx context.Context) error {
	var err error
	if b.root, err = testenv.ModuleRoot(); err != nil {
		return err
	}
	b.res.Git = gitDescribe(b.root)
	if b.tmp, err = os.MkdirTemp("", "dbtoken-bench-"); err != nil {
		return err
	}
	logf("working directory %s", b.tmp)

	if err := b.startControlPlane(ctx); err != nil {
		return err
	}
	logf("manager built, control plane up")

	if b.idp, err = idp.Start(idp.Options{}); err != nil {
		return fmt.Errorf("starting the identity provider: %w", err)
	}
	if err := setupIdentities(ctx, b.cl, b.idp, b.layout, b.cfg.Concurrency); err != nil {
		return err
	}
	tctx, tcancel := context.WithCancel(context.Background())
	b.trackerCancel = tcancel
	b.tracker = newTracker(b.cl)
	if err := b.tracker.start(tctx); err != nil {
		return err
	}
	logf("%d service principals in %d namespaces registered on the IdP at %s", b.cfg.M, b.cfg.Namespaces, b.idp.URL())

	if err := b.phaseCreate(ctx); err != nil {
		return err
	}
	if err := b.phaseRestart(ctx, "restart", "restart (SIGTERM, status wiped, new manager)"); err != nil {
		return err
	}
	if b.cfg.SkipUnrelated || b.cfg.K == 0 {
		logf("unrelated-Secrets phases skipped")
	} else {
		if err := b.phaseUnrelated(ctx); err != nil {
			return err
		}
		if err := b.phaseRestart(ctx, "restart+unrelated", fmt.Sprintf("restart with %d unrelated Secrets present", b.cfg.K)); err != nil {
			return err
		}
	}
	if !b.cfg.refreshPhase() {
		logf("refresh phase skipped")
		return nil
	}
	return b.phaseRefresh(ctx)
}

// startControlPlane starts envtest and builds the manager (both take a while, so at the same
// time), with the kubeconfig and the binary in the run's temp directory.
func (b *bench) startControlPlane(ctx context.Context) error {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		logf("KUBEBUILDER_ASSETS not set; running hack/setup-envtest.sh")
	}
	assets, err := testenv.AssetsDir(ctx, os.Stderr)
	if err != nil {
		return err
	}
	logf("starting envtest (kube-apiserver + etcd from %s)", assets)
	// envtest logs through controller-runtime's logger; keep it to errors.
	crlog.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))

	if b.cp, err = testenv.Start(ctx, testenv.Options{AssetsDir: assets, Dir: b.tmp, BuildManager: true, ManagerBinary: b.cfg.ManagerBinary}); err != nil {
		return err
	}
	for name, pid := range b.cp.ProcessIDs() {
		b.cpSamplers[name] = procstat.Start(pid, b.cfg.Poll)
	}
	b.self = procstat.Start(os.Getpid(), b.cfg.Poll)

	scheme := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	// The benchmark's own client: high QPS, so that creation is not what limits the burst.
	cfg := rest.CopyConfig(b.cp.Config)
	cfg.QPS, cfg.Burst = float32(b.cfg.ClientQPS), b.cfg.ClientBurst
	cfg.Timeout = 60 * time.Second
	if b.cl, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	if b.lister, err = newReadyLister(cfg); err != nil {
		return err
	}
	b.res.Machine.ControlPlane = fmt.Sprintf("envtest %s", filepath.Base(assets))
	return nil
}

// cleanup stops every child process: the manager, the IdP, kube-apiserver and etcd. It keeps the
// logs and results in the temp directory; stopping the control plane removes the binary and
// kubeconfig.
func (b *bench) cleanup() {
	b.cleanupOnce.Do(func() {
		if b.mgr != nil {
			if _, err := b.mgr.stop(); err != nil {
				logf("stopping the manager: %v", err)
			}
			b.mgr = nil
		}
		if b.trackerCancel != nil {
			b.trackerCancel()
		}
		if b.idp != nil {
			b.idp.Close()
		}
		for _, s := range b.cpSamplers {
			s.Stop()
		}
		b.self.Stop()
		if b.cp != nil {
			if err := b.cp.Stop(); err != nil {
				logf("%v", err)
			}
		}
	})
}

func (b *bench) startManager(ctx context.Context) (*manager, error) {
	b.managers++
	m, err := startManager(ctx, b.cp, b.tmp, fmt.Sprintf("manager-%d", b.managers), b.cfg.ManagerArgs, b.cfg.ManagerEnv, b.cfg.Poll)
	if err != nil {
		return nil, err
	}
	b.mgr = m
	logf("manager %d running (pid %d), /readyz after %s", b.managers, m.Pid(), m.ReadyAt.Sub(m.Started).Round(time.Millisecond))
	return m, nil
}

func (b *bench) stopManager() (time.Duration, error) {
	m := b.mgr
	b.mgr = nil
	return m.stop()
}

// phaseStart is what a phase compares against at its end.
type phaseStart struct {
	at     time.Time
	counts writeCounts
	tokens int
	reqs   int // len(idp.Requests())
	brk    breakdown
}

func (b *bench) begin() phaseStart {
	b.tracker.resetPhase()
	return phaseStart{at: time.Now(), counts: b.tracker.snapshot(), tokens: b.idp.TokenRequestCount(), reqs: b.idp.RequestCount(), brk: b.tracker.breakdown()}
}

// phaseCreate: the manager runs; N credentials are created in one burst.
func (b *bench) phaseCreate(ctx context.Context) error {
	p := b.res.addPhase("create", fmt.Sprintf("%d credentials created in one burst (%d clients)", b.cfg.N, b.cfg.Concurrency))
	m, err := b.startManager(ctx)
	if err != nil {
		return err
	}
	p.Manager = m.Name
	p.ReadyzSecs = secs(m.ReadyAt.Sub(m.Started))

	st := b.begin()
	logf("create: creating %d credentials", b.cfg.N)
	pollCh := make(chan pollResult, 1)
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	go func() { pollCh <- b.pollReady(pctx, "create", st.at, b.layout) }()
	created, calls, cerr := createCredentials(ctx, b.cl, b.layout, b.idp.URL(), b.cfg.Concurrency, b.tracker.markWrite)
	p.BurstSecs = secs(time.Since(st.at))
	var done []float64
	for i, c := range calls {
		if !created[i].IsZero() {
			done = append(done, c)
		}
	}
	p.CreateCalls = percentiles(done, len(done))
	if cerr != nil {
		pcancel()
	} else {
		logf("create: burst done in %.1fs", p.BurstSecs)
	}
	pr := <-pollCh
	b.recordReady(p, b.layout, st.at, pr, func(i int) time.Time { return created[i] })
	if cerr != nil {
		return b.finish(ctx, p, st, cerr)
	}
	return b.finish(ctx, p, st, pr.err)
}

// phaseRestart: SIGTERM, wipe every status, start a new manager, wait until all are Ready again.
func (b *bench) phaseRestart(ctx context.Context, name, what string) error {
	p := b.res.addPhase(name, what)
	stopDur, err := b.stopManager()
	p.StopSecs = secs(stopDur)
	if err != nil {
		return err
	}
	t := time.Now()
	logf("%s: manager stopped in %.1fs; wiping the status of %d credentials", name, p.StopSecs, b.cfg.N)
	if err := wipeStatus(ctx, b.cl, b.layout, b.cfg.Concurrency); err != nil {
		return err
	}
	if err := b.waitWiped(ctx); err != nil {
		return err
	}
	p.WipeSecs = secs(time.Since(t))

	st := b.begin()
	m, err := b.startManager(ctx)
	if err != nil {
		return err
	}
	st.at = m.Started // measured from the launch of the new process
	p.Manager = m.Name
	p.ReadyzSecs = secs(m.ReadyAt.Sub(m.Started))
	pr := b.pollReady(ctx, name, st.at, b.layout)
	b.recordReady(p, b.layout, st.at, pr, func(int) time.Time { return st.at })
	return b.finish(ctx, p, st, pr.err)
}

// phaseUnrelated: on the settled manager of the restart phase, create K unrelated Secrets and
// let it settle again; the difference in memory is what they cost.
func (b *bench) phaseUnrelated(ctx context.Context) error {
	p := b.res.addPhase("unrelated", fmt.Sprintf("%d unrelated %d KiB Secrets created while the restarted manager runs", b.cfg.K, b.cfg.UnrelatedSecretSize>>10))
	p.Manager = b.mgr.Name
	st := b.begin()
	logf("unrelated: creating %d Secrets of %d KiB", b.cfg.K, b.cfg.UnrelatedSecretSize>>10)
	err := createUnrelated(ctx, b.cl, b.layout, b.cfg.K, b.cfg.UnrelatedSecretSize, b.cfg.Concurrency)
	p.BurstSecs = secs(time.Since(st.at))
	if err != nil {
		return b.finish(ctx, p, st, err)
	}
	logf("unrelated: %d Secrets created in %.1fs", b.cfg.K, p.BurstSecs)
	b.tracker.markWrite()
	pr := b.pollReady(ctx, "unrelated", st.at, b.layout)
	p.ReadyAtEnd = pr.ready
	return b.finish(ctx, p, st, pr.err)
}

// waitWiped waits until the watch shows no credential Ready, so that the next phase starts clean.
func (b *bench) waitWiped(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for b.tracker.readyCount() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d credentials still Ready 2 minutes after their status was wiped", b.tracker.readyCount())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

type pollResult struct {
	firstSeen     map[types.NamespacedName]time.Time
	allAt         time.Time
	ready         int
	notReady      map[string]int // "<status>/<reason>" → count, at the last poll
	notReadyNames []string       // the first 100 not Ready at the last poll
	lists         int
	slowest       time.Duration
	err           error
}

// pollReady lists all credentials (their Ready column) every -ready-poll interval until all of
// the layout's are Ready, noting when each is first seen Ready.
func (b *bench) pollReady(ctx context.Context, phase string, t0 time.Time, l layout) pollResult {
	pr := pollResult{firstSeen: map[types.NamespacedName]time.Time{}}
	keys := l.keysByName()
	tick := time.NewTicker(b.cfg.ReadyPoll)
	defer tick.Stop()
	lastLog := time.Now()
	for {
		start := time.Now()
		if rows, err := b.lister.list(ctx); err == nil {
			now := time.Now()
			pr.lists++
			pr.slowest = max(pr.slowest, now.Sub(start))
			pr.ready, pr.notReady, pr.notReadyNames = 0, map[string]int{}, nil
			for _, r := range rows {
				key, ours := keys[r.Name]
				if !ours {
					continue
				}
				if r.Ready == string(metav1.ConditionTrue) {
					pr.ready++
					if _, ok := pr.firstSeen[key]; !ok {
						pr.firstSeen[key] = now
					}
					continue
				}
				reason := "none"
				if r.Ready != "" && r.Ready != "<none>" {
					reason = r.Ready + "/" + r.Reason
				}
				pr.notReady[reason]++
				if len(pr.notReadyNames) < 100 {
					pr.notReadyNames = append(pr.notReadyNames, key.String())
				}
			}
			if pr.ready >= l.n {
				pr.allAt = now
				logf("%s: all %d Ready after %.1fs", phase, pr.ready, now.Sub(t0).Seconds())
				return pr
			}
		} else if ctx.Err() == nil {
			logf("%s: listing credentials: %v", phase, err)
		}
		if b.mgr != nil {
			if err := b.mgr.Exited(); err != nil {
				pr.err = err
				return pr
			}
		}
		if since := time.Since(lastLog); since >= 5*time.Second {
			cpu, _ := b.mgr.Stats.CPUSince(lastLog)
			lastLog = time.Now()
			logf("%s: %d/%d Ready after %.0fs; token requests so far %d; manager RSS %s, CPU %.0f%% of a core",
				phase, pr.ready, l.n, time.Since(t0).Seconds(), b.idp.TokenRequestCount(), mib(b.mgr.Stats.Last().Mem.RSS),
				100*cpu.Seconds()/since.Seconds())
		}
		select {
		case <-ctx.Done():
			pr.err = ctx.Err()
			logf("%s: gave up with %d/%d Ready after %.1fs; not Ready: %v", phase, pr.ready, l.n, time.Since(t0).Seconds(), pr.notReady)
			return pr
		case <-tick.C:
		}
	}
}

// recordReady fills the Ready timings of the layout's credentials: totals from t0 and
// per-credential latencies from since(i), both as the poll saw them and as the watch saw them.
func (b *bench) recordReady(p *phaseResult, l layout, t0 time.Time, pr pollResult, since func(i int) time.Time) {
	p.ReadyAtEnd = pr.ready
	p.NotReady = pr.notReady
	if pr.ready < l.n {
		p.NotReadyNames = pr.notReadyNames
	}
	p.PollLists, p.PollSlowestSecs = pr.lists, secs(pr.slowest)
	if !pr.allAt.IsZero() {
		p.AllReadyPollSecs = ptr(secs(pr.allAt.Sub(t0)))
	}
	watched := b.tracker.readyTimes()
	var pollLat, watchLat []float64
	var lastWatch time.Time
	for i := 0; i < l.n; i++ {
		key := l.credKey(i)
		from := since(i)
		if from.IsZero() {
			continue // never created (the burst was cut short)
		}
		if at, ok := pr.firstSeen[key]; ok {
			pollLat = append(pollLat, max(0, at.Sub(from).Seconds()))
		}
		if at, ok := watched[key]; ok {
			watchLat = append(watchLat, max(0, at.Sub(from).Seconds()))
			if at.After(lastWatch) {
				lastWatch = at
			}
		}
	}
	p.LatencyPoll = percentiles(pollLat, l.n)
	p.LatencyWatch = percentiles(watchLat, l.n)
	if len(watchLat) == l.n {
		p.AllReadyWatchSecs = ptr(secs(lastWatch.Sub(t0)))
	}
}

// finish waits for the manager to settle (unless the phase already failed) and records the
// phase's counts and resource use.
func (b *bench) finish(ctx context.Context, p *phaseResult, st phaseStart, phaseErr error) error {
	if phaseErr == nil {
		settled, waited := b.settle(ctx)
		p.Settled, p.SettleSecs = settled, secs(waited)
		if !settled && ctx.Err() == nil {
			p.Note = appendNote(p.Note, fmt.Sprintf("manager did not settle within %s", b.cfg.SettleMax))
		}
	}
	end := time.Now()
	p.Completed = phaseErr == nil && ctx.Err() == nil
	p.Secs = secs(end.Sub(st.at))
	if phaseErr != nil {
		p.Note = appendNote(p.Note, "incomplete: "+phaseErr.Error())
	}

	n := float64(b.cfg.N)
	d := b.tracker.snapshot().sub(st.counts)
	p.TokenRequests = b.idp.TokenRequestCount() - st.tokens
	p.TokenRequestsPerIdentity = float64(p.TokenRequests) / float64(b.cfg.M)
	for _, r := range b.idp.Requests()[st.reqs:] {
		if (r.Endpoint == idp.EndpointDatabricksToken || r.Endpoint == idp.EndpointEntraToken) && r.Status != 200 {
			p.TokenRequestsFailed++
		}
	}
	p.CredentialsSeenCreated = d.CredAdded
	p.SecretCreates, p.SecretUpdates = d.SecretAdded, d.SecretModified
	p.SecretWritesPerCred = float64(d.SecretAdded+d.SecretModified) / n
	p.StatusWrites = d.CredModified // the credential's own creation is ADDED, not counted
	p.StatusWritesPerCred = float64(d.CredModified) / n
	p.StatusWritesMaxOneCred = b.tracker.maxCredWrites()
	p.EventsWritten = d.EventsWritten
	p.Writes = b.tracker.breakdown().sub(st.brk)
	b.recordResources(p, st.at, end)
	logf("%s: done in %.1fs — token requests %d, Secret writes %d+%d, status writes %d, manager RSS %.1f MiB (VmHWM %.1f MiB)",
		p.Name, p.Secs, p.TokenRequests, p.SecretCreates, p.SecretUpdates, p.StatusWrites, p.Mem.rss(), p.Mem.hwm())
	if phaseErr != nil {
		return phaseErr
	}
	return ctx.Err()
}

// recordResources records the manager's memory (at end, and its peak between from and end) and
// the CPU every process used between from and end.
func (b *bench) recordResources(p *phaseResult, from, end time.Time) {
	if m := b.mgr; m != nil {
		last := m.Stats.Last()
		w := m.Stats.Window(from, end)
		h := m.out.heap(m.Started, end)
		p.Mem = &memResult{
			RSSMiB: mibf(last.Mem.RSS), RSSAnonMiB: mibf(last.Mem.RSSAnon), HWMMiB: mibf(last.Mem.HWM),
			PeakSampledMiB: mibf(w.PeakRSS), GCs: h.GCs, HeapLiveLastMiB: h.LastLiveMiB,
			HeapLiveMaxMiB: h.MaxLiveMiB, HeapPeakMiB: h.MaxHeapMiB,
		}
		p.CPU.Manager = w.CPU.Seconds()
	}
	if s := b.cpSamplers["kube-apiserver"]; s != nil {
		p.CPU.APIServer = s.Window(from, end).CPU.Seconds()
		p.APIServerRSSMiB = mibf(s.Last().Mem.RSS)
	}
	if s := b.cpSamplers["etcd"]; s != nil {
		p.CPU.Etcd = s.Window(from, end).CPU.Seconds()
		p.EtcdRSSMiB = mibf(s.Last().Mem.RSS)
	}
	p.CPU.BenchAndIdP = b.self.Window(from, end).CPU.Seconds()
}

// settle waits until neither the manager nor anyone else has written to the watched kinds for
// -quiet, and the manager used at most 2% of a core over that time.
func (b *bench) settle(ctx context.Context) (bool, time.Duration) {
	t0 := time.Now()
	for {
		if b.tracker.sinceLastWrite() >= b.cfg.Quiet && b.mgr != nil {
			if cpu, ok := b.mgr.Stats.CPUSince(time.Now().Add(-b.cfg.Quiet)); ok && cpu <= b.cfg.Quiet/50 {
				return true, time.Since(t0)
			}
		}
		if time.Since(t0) > b.cfg.SettleMax {
			return false, time.Since(t0)
		}
		if b.mgr != nil && b.mgr.Exited() != nil {
			return false, time.Since(t0)
		}
		select {
		case <-ctx.Done():
			return false, time.Since(t0)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func appendNote(note, s string) string {
	if note == "" {
		return s
	}
	return note + "; " + s
}

// percentiles are nearest-rank percentiles over n credentials, of which len(v) were Ready: the
// others count as not reached (nil).
func percentiles(v []float64, n int) latency {
	sort.Float64s(v)
	at := func(q float64) *float64 {
		idx := int(float64(n)*q+0.999999999) - 1
		idx = max(idx, 0)
		if idx >= len(v) {
			return nil
		}
		return ptr(v[idx])
	}
	return latency{Count: len(v), P50: at(0.50), P99: at(0.99), Max: at(1.0)}
}

func gitDescribe(root string) string {
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func machineInfo() machine {
	m := machine{NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), LoadAvgStart: loadAvg()}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				m.MemTotal = strings.TrimSpace(v)
			}
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func secs(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

func ptr[T any](v T) *T { return &v }

func mibf(b int64) float64 { return float64(b*10/(1<<20)) / 10 }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", mibf(b)) }
