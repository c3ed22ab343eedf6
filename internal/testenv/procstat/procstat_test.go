package procstat

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestReadsThisProcess(t *testing.T) {
	m, err := ReadMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.HWM < m.RSS || m.RSSAnon <= 0 || m.RSSAnon > m.RSS {
		t.Errorf("implausible memory: %+v", m)
	}
	before, err := ReadCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// The unit is 10 ms. Spin until it shows, however busy the machine is.
	for deadline := time.Now().Add(10 * time.Second); ; {
		spin(10 * time.Millisecond)
		after, err := ReadCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after-before >= 20*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU went from %s to %s over 10s of spinning", before, after)
		}
	}
	if _, err := ReadMem(-1); err == nil {
		t.Error("ReadMem of no process succeeded")
	}
}

func TestChildrenByName(t *testing.T) {
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if got := Children()["sleep"]; got != cmd.Process.Pid {
		t.Errorf("Children()[sleep] = %d, want %d", got, cmd.Process.Pid)
	}
}

func TestSamplerSamplesUntilStopped(t *testing.T) {
	s := Start(os.Getpid(), 10*time.Millisecond)
	count := func() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.recent) }
	for deadline := time.Now().Add(10 * time.Second); count() < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d samples after 10s at a 10ms interval", count())
		}
	}
	s.Stop()
	n := count()
	time.Sleep(50 * time.Millisecond)
	if count() != n {
		t.Errorf("sampling went on after Stop: %d samples, then %d", n, count())
	}
	if s.Last().Mem.RSS <= 0 {
		t.Error("Last() has no reading")
	}

	var none *Sampler // callers that do not sample hold a nil *Sampler
	none.Stop()
	if none.Last() != (Sample{}) || none.Window(time.Time{}, time.Now()) != (Window{}) {
		t.Error("a nil Sampler read something")
	}
}

func TestSamplerWindow(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	s := &Sampler{recent: []Sample{
		{At: at(0), CPU: 100 * time.Millisecond, Mem: Mem{RSS: 10}},
		{At: at(250), CPU: 150 * time.Millisecond, Mem: Mem{RSS: 30}},
		{At: at(500), CPU: 400 * time.Millisecond, Mem: Mem{RSS: 20}},
		{At: at(750), CPU: 420 * time.Millisecond, Mem: Mem{RSS: 50}},
	}}
	// The last sample before the window is the CPU baseline; RSS counts only inside it.
	if w := s.Window(at(100), at(600)); w != (Window{PeakRSS: 30, CPU: 300 * time.Millisecond, Samples: 2}) {
		t.Errorf("Window(100ms, 600ms) = %+v", w)
	}
	if w := s.Window(at(0), at(0)); w != (Window{PeakRSS: 10, Samples: 1}) {
		t.Errorf("Window of one sample = %+v", w)
	}
	if w := s.Window(at(800), at(900)); w != (Window{}) {
		t.Errorf("Window after the last sample = %+v", w)
	}
	if cpu, ok := s.CPUSince(at(300)); !ok || cpu != 270*time.Millisecond {
		t.Errorf("CPUSince(300ms) = %s, %v; want 270ms from the sample at 250ms", cpu, ok)
	}
	if _, ok := s.CPUSince(at(-1)); ok {
		t.Error("CPUSince before the first sample answered")
	}
}

func spin(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
	}
}
