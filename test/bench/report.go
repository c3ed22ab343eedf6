package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

type results struct {
	StartedAt    time.Time      `json:"startedAt"`
	Command      string         `json:"command"`
	Git          string         `json:"git"`
	Machine      machine        `json:"machine"`
	Config       config         `json:"config"`
	Phases       []*phaseResult `json:"phases"`
	Targets      []check        `json:"targets"`
	Complete     bool           `json:"complete"`
	Error        string         `json:"error,omitempty"`
	WatchRelists int            `json:"watchRelists"`
	WatchErrors  []string       `json:"watchErrors,omitempty"`
}

type machine struct {
	NumCPU       int    `json:"numCPU"`
	GOMAXPROCS   int    `json:"gomaxprocs"`
	MemTotal     string `json:"memTotal"`
	CPUModel     string `json:"cpuModel"`
	Kernel       string `json:"kernel"`
	GoVersion    string `json:"goVersion"`
	ControlPlane string `json:"controlPlane"`
	// /proc/loadavg when the run started and ended: other work on the machine skews the figures.
	LoadAvgStart string `json:"loadAvgStart"`
	LoadAvgEnd   string `json:"loadAvgEnd"`
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// latency is in seconds; nil means not reached by enough credentials.
type latency struct {
	Count int      `json:"count"`
	P50   *float64 `json:"p50"`
	P99   *float64 `json:"p99"`
	Max   *float64 `json:"max"`
}

type memResult struct {
	RSSMiB         float64 `json:"rssMiB"`         // VmRSS at the end of the phase (settled)
	RSSAnonMiB     float64 `json:"rssAnonMiB"`     // RssAnon at the end of the phase
	HWMMiB         float64 `json:"vmHWMMiB"`       // VmHWM: peak RSS since this manager started
	PeakSampledMiB float64 `json:"peakSampledMiB"` // highest VmRSS sampled during the phase
	GCs            int     `json:"gcs"`            // GC cycles since this manager started
	// From GODEBUG=gctrace=1, MiB, since this manager started.
	HeapLiveLastMiB int64 `json:"heapLiveLastMiB"` // live heap marked by the last GC
	HeapLiveMaxMiB  int64 `json:"heapLiveMaxMiB"`  // largest live heap marked by a GC
	HeapPeakMiB     int64 `json:"heapPeakMiB"`     // largest heap at the start of a GC
}

func (m *memResult) rss() float64 {
	if m == nil {
		return 0
	}
	return m.RSSMiB
}

func (m *memResult) hwm() float64 {
	if m == nil {
		return 0
	}
	return m.HWMMiB
}

type cpuResult struct {
	Manager     float64 `json:"manager"`
	APIServer   float64 `json:"kubeAPIServer"`
	Etcd        float64 `json:"etcd"`
	BenchAndIdP float64 `json:"benchAndIdP"`
}

type phaseResult struct {
	Name        string  `json:"name"`
	What        string  `json:"what"`
	Manager     string  `json:"manager"`
	Completed   bool    `json:"completed"`
	Note        string  `json:"note,omitempty"`
	Secs        float64 `json:"secs"`
	Credentials int     `json:"credentials"` // the credentials the phase's Ready and per-credential figures are about

	ReadyzSecs float64 `json:"readyzSecs,omitempty"` // manager launch → /readyz 200
	BurstSecs  float64 `json:"burstSecs,omitempty"`  // creating the credentials (create) or unrelated Secrets
	StopSecs   float64 `json:"stopSecs,omitempty"`   // SIGTERM → exit of the previous manager
	WipeSecs   float64 `json:"wipeSecs,omitempty"`   // wiping every status

	// From the start of the burst (create) or the manager's launch (restart phases).
	AllReadyPollSecs  *float64       `json:"allReadyPollSecs"`
	AllReadyWatchSecs *float64       `json:"allReadyWatchSecs"`
	ReadyAtEnd        int            `json:"readyAtEnd"`
	NotReady          map[string]int `json:"notReady,omitempty"`
	NotReadyNames     []string       `json:"notReadyNames,omitempty"` // the first 100, when not all became Ready
	CreateCalls       latency        `json:"createCalls"`             // duration of the benchmark's create calls
	LatencyPoll       latency        `json:"latencyPoll"`
	LatencyWatch      latency        `json:"latencyWatch"`
	PollLists         int            `json:"pollLists"`
	PollSlowestSecs   float64        `json:"pollSlowestSecs"`

	CredentialsSeenCreated   int       `json:"credentialsSeenCreated"` // ADDED events of credentials in the phase
	TokenRequests            int       `json:"tokenRequests"`
	TokenRequestsPerIdentity float64   `json:"tokenRequestsPerIdentity"`
	TokenRequestsFailed      int       `json:"tokenRequestsFailed"`
	SecretCreates            int       `json:"secretCreates"`
	SecretUpdates            int       `json:"secretUpdates"`
	SecretWritesPerCred      float64   `json:"secretWritesPerCredential"`
	StatusWrites             int       `json:"statusWrites"`
	StatusWritesPerCred      float64   `json:"statusWritesPerCredential"`
	StatusWritesMaxOneCred   int       `json:"statusWritesMaxOneCredential"`
	EventsWritten            int       `json:"eventsWritten"`
	Writes                   breakdown `json:"writeBreakdown"`

	Settled    bool    `json:"settled"`
	SettleSecs float64 `json:"settleSecs"`

	Mem             *memResult `json:"managerMemory,omitempty"`
	CPU             cpuResult  `json:"cpuSecs"`
	APIServerRSSMiB float64    `json:"kubeAPIServerRSSMiB"`
	EtcdRSSMiB      float64    `json:"etcdRSSMiB"`

	Refresh *refreshResult `json:"refresh,omitempty"` // the refresh phase only
}

func newResults(c config) *results {
	return &results{StartedAt: time.Now().UTC(), Command: commandLine(), Machine: machineInfo(), Config: c}
}

// commandLine is how the benchmark was invoked; `go run` shows as such rather than as its
// temporary binary.
func commandLine() string {
	args := append([]string(nil), os.Args[1:]...)
	for i, a := range args {
		if strings.ContainsAny(a, " \t\"'") {
			args[i] = fmt.Sprintf("%q", a)
		}
	}
	prog := os.Args[0]
	if strings.Contains(prog, "go-build") {
		prog = "go run ./test/bench"
	}
	return strings.TrimSpace(prog + " " + strings.Join(args, " "))
}

// MarshalJSON writes durations as Go duration strings.
func (c config) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{
		"n": c.N, "m": c.M, "k": c.K, "namespaces": c.Namespaces, "concurrency": c.Concurrency,
		"clientQPS": c.ClientQPS, "clientBurst": c.ClientBurst, "skipUnrelatedPhase": c.SkipUnrelated,
		"timeout": c.Timeout.String(), "poll": c.Poll.String(), "readyPoll": c.ReadyPoll.String(), "quiet": c.Quiet.String(),
		"settleMax": c.SettleMax.String(), "managerArgs": c.ManagerArgs, "managerEnv": c.ManagerEnv, "managerBinary": c.ManagerBinary, "unrelatedSecretBytes": c.UnrelatedSecretSize, "label": c.Label,
		"skipRefreshPhase": c.SkipRefresh, "refreshN": c.RefreshN, "refreshM": c.RefreshM,
		"refreshLifetime": c.RefreshLifetime.String(), "refreshWindow": c.RefreshWindow.String(),
	})
}

func (r *results) addPhase(name, what string) *phaseResult {
	p := &phaseResult{Name: name, What: what, Credentials: r.Config.N}
	r.Phases = append(r.Phases, p)
	return p
}

func (r *results) phase(name string) *phaseResult {
	for _, p := range r.Phases {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func writeJSON(path string, r *results) error {
	r.Targets = targets(r)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// printReport writes the human-readable table: one column per phase, then the targets.
func printReport(w io.Writer, r *results) {
	c := r.Config
	label := r.Git
	if c.Label != "" {
		label += ", " + c.Label
	}
	fmt.Fprintf(w, "\ndatabricks-token-operator benchmark (%s)\n", label)
	fmt.Fprintf(w, "machine: %d CPUs (GOMAXPROCS %d), %s RAM, %s, Linux %s, %s, %s; load average at start %s, at end %s\n",
		r.Machine.NumCPU, r.Machine.GOMAXPROCS, r.Machine.MemTotal, r.Machine.CPUModel, r.Machine.Kernel, r.Machine.GoVersion, r.Machine.ControlPlane,
		r.Machine.LoadAvgStart, r.Machine.LoadAvgEnd)
	args := "manager defaults"
	if len(c.ManagerArgs) > 0 {
		args = strings.Join(c.ManagerArgs, " ")
	}
	if len(c.ManagerEnv) > 0 {
		args += "; manager environment: " + strings.Join(c.ManagerEnv, " ")
	}
	if c.ManagerBinary != "" {
		args += "; manager binary: " + c.ManagerBinary
	}
	fmt.Fprintf(w, "run: N=%d credentials, M=%d service principals, %d namespaces, K=%d unrelated Secrets, %d creation clients (QPS %.0f/burst %d); manager flags: %s\n",
		c.N, c.M, c.Namespaces, c.K, c.Concurrency, c.ClientQPS, c.ClientBurst, args)
	if c.refreshPhase() {
		fmt.Fprintf(w, "refresh phase: %d credentials over %d service principals in %d namespaces, %s tokens, %s window\n",
			c.RefreshN, c.RefreshM, c.refreshNamespaces(), c.RefreshLifetime, c.RefreshWindow)
	}
	for _, p := range r.Phases {
		fmt.Fprintf(w, "  %-18s %s\n", p.Name+":", p.What)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := []string{"metric"}
	for _, p := range r.Phases {
		name := p.Name
		if !p.Completed {
			name += " (incomplete)"
		}
		header = append(header, name)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	row := func(label string, f func(p *phaseResult) string) {
		cells := []string{label}
		any := false
		for _, p := range r.Phases {
			v := f(p)
			if v == "" {
				v = "–"
			} else {
				any = true
			}
			cells = append(cells, v)
		}
		if any {
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
	}
	row("manager launch → /readyz", func(p *phaseResult) string { return fsecs(p.ReadyzSecs) })
	row("previous manager SIGTERM → exit", func(p *phaseResult) string { return fsecs(p.StopSecs) })
	row("status wipe (bench)", func(p *phaseResult) string { return fsecs(p.WipeSecs) })
	row("creation burst (bench)", func(p *phaseResult) string { return fsecs(p.BurstSecs) })
	row("create call p50/p99/max (bench)", func(p *phaseResult) string { return flat(p.CreateCalls) })
	row("all Ready, poll (from t0)", func(p *phaseResult) string {
		if p.Name == "unrelated" {
			return ""
		}
		return fptr(p.AllReadyPollSecs, "s", fmt.Sprintf("not reached (%d/%d)", p.ReadyAtEnd, p.Credentials))
	})
	row("all Ready, watch (from t0)", func(p *phaseResult) string {
		if p.Name == "unrelated" {
			return ""
		}
		return fptr(p.AllReadyWatchSecs, "s", "not reached")
	})
	row("credentials created (seen by watch)", func(p *phaseResult) string {
		if p.CredentialsSeenCreated == 0 {
			return ""
		}
		return fmt.Sprint(p.CredentialsSeenCreated)
	})
	row("Ready at end of phase", func(p *phaseResult) string { return fmt.Sprintf("%d/%d", p.ReadyAtEnd, p.Credentials) })
	row("per credential → Ready p50/p99/max, poll", func(p *phaseResult) string { return flat(p.LatencyPoll) })
	row("per credential → Ready p50/p99/max, watch", func(p *phaseResult) string { return flat(p.LatencyWatch) })
	row("token requests (per identity)", func(p *phaseResult) string {
		s := fmt.Sprintf("%d (%.2f)", p.TokenRequests, p.TokenRequestsPerIdentity)
		if p.TokenRequestsFailed > 0 {
			s += fmt.Sprintf(", %d failed", p.TokenRequestsFailed)
		}
		return s
	})
	row("Secret writes: create+update (per cred)", func(p *phaseResult) string {
		return fmt.Sprintf("%d+%d (%.2f)", p.SecretCreates, p.SecretUpdates, p.SecretWritesPerCred)
	})
	row("status writes (per cred, max one cred)", func(p *phaseResult) string {
		return fmt.Sprintf("%d (%.2f, %d)", p.StatusWrites, p.StatusWritesPerCred, p.StatusWritesMaxOneCred)
	})
	row("Events written (per cred)", func(p *phaseResult) string {
		return fmt.Sprintf("%d (%.2f)", p.EventsWritten, float64(p.EventsWritten)/float64(max(1, p.Credentials)))
	})
	refresh := func(f func(r *refreshResult) string) func(p *phaseResult) string {
		return func(p *phaseResult) string {
			if p.Refresh == nil {
				return ""
			}
			return f(p.Refresh)
		}
	}
	row("first issuance written (from t0)", refresh(func(r *refreshResult) string {
		return fmt.Sprintf("%s (%d Events)", fsecs(r.FirstIssuanceSecs), r.FirstIssuanceEvents)
	}))
	row("refresh window (writes, tokens, CPU in it)", refresh(func(r *refreshResult) string {
		s := fsecs(r.WindowSecs)
		if !r.BoundariesQuiet {
			s += ", not bounded by quiet"
		}
		return s
	}))
	row("routine refreshes (per cred)", refresh(func(r *refreshResult) string {
		return fmt.Sprintf("%d (%.2f)", r.Refreshes, r.RefreshesPerCred)
	}))
	row("writes per refresh: Secret/status/Event", refresh(func(r *refreshResult) string {
		if r.SecretWritesPerRefresh == nil {
			return "no refresh seen"
		}
		return fmt.Sprintf("%.2f / %.2f / %.2f", *r.SecretWritesPerRefresh, *r.StatusWritesPerRefresh, *r.EventWritesPerRefresh)
	}))
	row("settled after (quiet "+c.Quiet.String()+")", func(p *phaseResult) string {
		if p.Refresh != nil {
			return "never (refreshes go on)"
		}
		if !p.Settled {
			if p.Completed {
				return "not settled"
			}
			return ""
		}
		return fsecs(p.SettleSecs)
	})
	row("phase duration", func(p *phaseResult) string { return fsecs(p.Secs) })
	mem := func(f func(m *memResult) string) func(p *phaseResult) string {
		return func(p *phaseResult) string {
			if p.Mem == nil {
				return ""
			}
			return f(p.Mem)
		}
	}
	row("manager RSS at end (settled or window)", mem(func(m *memResult) string { return fmt.Sprintf("%.1f MiB", m.RSSMiB) }))
	row("manager RssAnon at end", mem(func(m *memResult) string { return fmt.Sprintf("%.1f MiB", m.RSSAnonMiB) }))
	row("manager peak RSS sampled in phase", mem(func(m *memResult) string { return fmt.Sprintf("%.1f MiB", m.PeakSampledMiB) }))
	row("manager VmHWM (since its start)", mem(func(m *memResult) string { return fmt.Sprintf("%.1f MiB", m.HWMMiB) }))
	row("Go heap live last/max, peak (gctrace)", mem(func(m *memResult) string {
		return fmt.Sprintf("%d/%d, %d MiB (%d GCs)", m.HeapLiveLastMiB, m.HeapLiveMaxMiB, m.HeapPeakMiB, m.GCs)
	}))
	if base, u := r.phase("restart"), r.phase("unrelated"); base != nil && u != nil && base.Mem != nil && u.Mem != nil {
		row("Δ vs restart: RSS / RssAnon / live heap", func(p *phaseResult) string {
			if p.Name != "unrelated" && p.Name != "restart+unrelated" || p.Mem == nil {
				return ""
			}
			return fmt.Sprintf("%+.1f / %+.1f / %+d MiB", p.Mem.RSSMiB-base.Mem.RSSMiB, p.Mem.RSSAnonMiB-base.Mem.RSSAnonMiB, p.Mem.HeapLiveLastMiB-base.Mem.HeapLiveLastMiB)
		})
	}
	row("CPU s: manager/apiserver/etcd/bench+IdP", func(p *phaseResult) string {
		return fmt.Sprintf("%.1f/%.1f/%.1f/%.1f", p.CPU.Manager, p.CPU.APIServer, p.CPU.Etcd, p.CPU.BenchAndIdP)
	})
	row("RSS kube-apiserver / etcd", func(p *phaseResult) string {
		return fmt.Sprintf("%.0f / %.0f MiB", p.APIServerRSSMiB, p.EtcdRSSMiB)
	})
	row("Ready polls (slowest list)", func(p *phaseResult) string {
		if p.PollLists == 0 {
			return ""
		}
		return fmt.Sprintf("%d (%.2fs)", p.PollLists, p.PollSlowestSecs)
	})
	tw.Flush()

	fmt.Fprintln(w)
	for _, p := range r.Phases {
		if p.Note != "" {
			fmt.Fprintf(w, "note (%s): %s\n", p.Name, p.Note)
		}
		if len(p.Writes.StatusChanges) > 0 {
			fmt.Fprintf(w, "status writes in %s changed: %s\n", p.Name, reasons(p.Writes.StatusChanges))
		}
		if len(p.Writes.SecretChanges) > 0 {
			fmt.Fprintf(w, "Secret updates in %s changed: %s\n", p.Name, reasons(p.Writes.SecretChanges))
		}
		if len(p.Writes.EventReasons) > 0 {
			fmt.Fprintf(w, "Events in %s: %s\n", p.Name, reasons(p.Writes.EventReasons))
		}
		if len(p.NotReady) > 0 && p.ReadyAtEnd < c.N {
			fmt.Fprintf(w, "not Ready at the end of %s: %s\n", p.Name, reasons(p.NotReady))
			if len(p.NotReadyNames) > 0 {
				names := p.NotReadyNames
				if len(names) > 10 {
					names = append(names[:10:10], "…")
				}
				fmt.Fprintf(w, "  e.g. %s (up to 100 in the JSON)\n", strings.Join(names, " "))
			}
		}
	}
	if r.WatchRelists > 0 {
		fmt.Fprintf(w, "note: the watches were re-listed %d times (writes in those gaps may be merged): %v\n", r.WatchRelists, r.WatchErrors)
	}
	if !r.Complete {
		fmt.Fprintf(w, "RUN INCOMPLETE: %s\n", r.Error)
	}

	fmt.Fprintf(w, "\nTargets (the verdict applies to this run; \"scale\" says whether the run is at the scale the target names)\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tmeasured\tverdict\tscale")
	for _, t := range targets(r) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Target, t.Measured, t.Verdict, t.Scale)
	}
	tw.Flush()
}

type check struct {
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Verdict  string `json:"verdict"`
	Scale    string `json:"scale"`
}

// targets compares the run with the targets.
func targets(r *results) []check {
	c := r.Config
	scale := func(n, m, k int) string {
		var want, have []string
		if n > 0 {
			want, have = append(want, fmt.Sprintf("N=%d", n)), append(have, fmt.Sprintf("N=%d", c.N))
		}
		if m > 0 {
			want, have = append(want, fmt.Sprintf("M=%d", m)), append(have, fmt.Sprintf("M=%d", c.M))
		}
		if k > 0 {
			want, have = append(want, fmt.Sprintf("K=%d", k)), append(have, fmt.Sprintf("K=%d", c.K))
		}
		if strings.Join(want, " ") == strings.Join(have, " ") {
			return "at target scale"
		}
		return "run at " + strings.Join(have, " ") + "; target at " + strings.Join(want, " ")
	}
	verdict := func(measured bool, ok bool) string {
		switch {
		case !measured:
			return "not measured"
		case ok:
			return "met"
		default:
			return "MISSED"
		}
	}
	var out []check
	create, restart := r.phase("create"), r.phase("restart")

	if create != nil {
		m, v := within(create, create.AllReadyPollSecs, 120, "not all Ready")
		out = append(out, check{"all Ready within 120 s of the creation burst", m, v, scale(10000, 100, 0)})
		out = append(out, check{"token requests = M, not N", fmt.Sprintf("%d for M=%d, N=%d", create.TokenRequests, c.M, c.N), verdict(create.Completed, create.TokenRequests == c.M), "any"})
		out = append(out, check{"≤ 1 Secret write per credential", secretWrites(r), verdict(create.Completed, create.SecretWritesPerCred <= 1), "any"})
	}
	if restart != nil {
		out = append(out, check{"restart: 0 token requests", fmt.Sprintf("%d", restart.TokenRequests), verdict(restart.Completed, restart.TokenRequests == 0), "any"})
		m, v := within(restart, restart.AllReadyPollSecs, 60, "not all Ready")
		out = append(out, check{"restart: all Ready within 60 s", m, v, scale(10000, 100, 0)})
	}
	var hwm float64
	for _, p := range r.Phases {
		hwm = max(hwm, p.Mem.hwm())
	}
	out = append(out, check{"manager RSS ≤ 150 MiB", fmt.Sprintf("%.1f MiB (highest VmHWM of any manager)", hwm), verdict(hwm > 0, hwm <= 150), scale(10000, 0, 0)})
	if u := r.phase("unrelated"); u != nil && restart != nil && u.Mem != nil && restart.Mem != nil && u.Completed {
		d := u.Mem.RSSMiB - restart.Mem.RSSMiB
		out = append(out, check{"unrelated 64 KiB Secrets add ≤ 20 MiB", fmt.Sprintf("%+.1f MiB RSS (%+.1f MiB RssAnon)", d, u.Mem.RSSAnonMiB-restart.Mem.RSSAnonMiB), verdict(true, d <= 20), scale(0, 0, 10000)})
	} else {
		out = append(out, check{"unrelated 64 KiB Secrets add ≤ 20 MiB", "–", "not measured", scale(0, 0, 10000)})
	}
	if create != nil {
		m, v := within(create, create.LatencyPoll.P99, 1, "p99 not reached")
		m += " (watch: " + fptr(create.LatencyWatch.P99, "s", "not reached") + ")"
		out = append(out, check{"create→Ready p99 ≤ 1 s", m, v, scale(100, 0, 0)})
	}
	if p := r.phase("refresh"); p != nil && p.Refresh != nil {
		rr := p.Refresh
		measured := p.Completed && rr.Refreshes > 0
		m := "no routine refresh seen"
		if rr.Refreshes > 0 {
			m = fmt.Sprintf("%d Events in %d routine refreshes (%.2f per refresh)", p.EventsWritten, rr.Refreshes, *rr.EventWritesPerRefresh)
		}
		out = append(out, check{"routine refreshes write no Event", m, verdict(measured, p.EventsWritten == 0), "any"})
		if a := rr.apiWritesPerRefresh(); a != nil {
			m = fmt.Sprintf("%.2f (Secret %.2f + status %.2f + Event %.2f)", *a, *rr.SecretWritesPerRefresh, *rr.StatusWritesPerRefresh, *rr.EventWritesPerRefresh)
			out = append(out, check{"routine refresh: ≤ 2 API writes", m, verdict(measured, *a <= 2), "any"})
		} else {
			out = append(out, check{"routine refresh: ≤ 2 API writes", m, verdict(false, false), "any"})
		}
	}
	return out
}

func secretWrites(r *results) string {
	var parts []string
	for _, p := range r.Phases {
		if p.Refresh != nil {
			continue // refreshes write the Secret by design; their own check is per refresh
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", p.Name, p.SecretWritesPerCred))
	}
	return strings.Join(parts, ", ")
}

func reasons(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func fsecs(s float64) string {
	if s == 0 {
		return ""
	}
	return fmt.Sprintf("%.2fs", s)
}

func fptr(v *float64, unit, missing string) string {
	if v == nil {
		return missing
	}
	return fmt.Sprintf("%.2f%s", *v, unit)
}

func flat(l latency) string {
	if l.Count == 0 {
		return ""
	}
	f := func(v *float64) string {
		if v == nil {
			return "not reached"
		}
		return fmt.Sprintf("%.2f", *v)
	}
	return fmt.Sprintf("%s / %s / %s s", f(l.P50), f(l.P99), f(l.Max))
}

// within judges "v ≤ limit seconds" for a phase: when v was never reached but the phase ran
// longer than the limit, the target is missed all the same.
func within(p *phaseResult, v *float64, limit float64, missing string) (measured, verdict string) {
	switch {
	case v != nil && *v <= limit:
		return fmt.Sprintf("%.2fs", *v), "met"
	case v != nil:
		return fmt.Sprintf("%.2fs", *v), "MISSED"
	case p.Secs > limit:
		return fmt.Sprintf("%s after %.0fs (%d Ready)", missing, p.Secs, p.ReadyAtEnd), "MISSED"
	default:
		return missing, "not measured"
	}
}
