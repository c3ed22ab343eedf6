// Package procstat reads a process's memory and CPU time from /proc and samples them over time,
// for the scale benchmark (test/bench), which measures the manager, kube-apiserver and etcd as
// separate processes. Linux only: elsewhere the readings fail and Children finds nothing.
package procstat

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clkTck is USER_HZ, the unit of utime and stime in /proc/<pid>/stat; 100 on every Linux
// platform Go supports.
const clkTck = 100

// Mem is a process's memory from /proc/<pid>/status, in bytes.
type Mem struct {
	RSS     int64 // VmRSS: resident set now
	HWM     int64 // VmHWM: peak resident set since the process started
	RSSAnon int64 // RssAnon: anonymous resident memory (Go heap, stacks, runtime), no file pages
}

// ReadMem reads the memory of process pid.
func ReadMem(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, err
	}
	var m Mem
	for _, line := range bytes.Split(b, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(k) {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.HWM
		case "RssAnon":
			dst = &m.RSSAnon
		default:
			continue
		}
		f := strings.Fields(string(v)) // "123456 kB"
		if len(f) >= 1 {
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err == nil {
				*dst = n << 10
			}
		}
	}
	return m, nil
}

// ReadCPU returns user+system CPU time of process pid (all threads, not children).
func ReadCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces; fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')': state(3) ppid(4) ... utime is field 14, stime 15 (1-based, whole line).
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// Children finds this process's direct children by name (/proc/*/stat ppid and comm). envtest
// does not expose the pids of the etcd and kube-apiserver it starts; this is how they are found.
func Children() map[string]int {
	out := map[string]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || close < open {
			continue
		}
		comm := string(b[open+1 : close])
		f := strings.Fields(string(b[close+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == self {
			out[comm] = pid
		}
	}
	return out
}

// Sample is one reading of a process.
type Sample struct {
	At  time.Time
	Mem Mem
	CPU time.Duration
}

// Sampler reads a process's memory and CPU every interval until stopped or the process is gone.
// A nil *Sampler is valid and reads nothing, so callers need not check whether they sample.
type Sampler struct {
	pid    int
	mu     sync.Mutex
	recent []Sample
	cancel context.CancelFunc
	done   chan struct{}
}

// Start takes a first sample of process pid now and then one every interval.
func Start(pid int, every time.Duration) *Sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sampler{pid: pid, cancel: cancel, done: make(chan struct{})}
	s.take()
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if !s.take() {
					return
				}
			}
		}
	}()
	return s
}

func (s *Sampler) take() bool {
	m, err := ReadMem(s.pid)
	if err != nil {
		return false
	}
	c, err := ReadCPU(s.pid)
	if err != nil {
		return false
	}
	s.mu.Lock()
	s.recent = append(s.recent, Sample{At: time.Now(), Mem: m, CPU: c})
	s.mu.Unlock()
	return true
}

// Stop ends the sampling and waits for it; the samples taken stay readable.
func (s *Sampler) Stop() {
	if s == nil {
		return
	}
	s.cancel()
	<-s.done
}

// Last returns the latest sample (a fresh reading when the process still exists).
func (s *Sampler) Last() Sample {
	if s == nil {
		return Sample{}
	}
	s.take()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recent) == 0 {
		return Sample{}
	}
	return s.recent[len(s.recent)-1]
}

// Window summarises the samples taken in a time range.
type Window struct {
	PeakRSS int64         // the highest VmRSS seen
	CPU     time.Duration // CPU used from the last sample before the range to the last one in it
	Samples int
}

// Window summarises the samples taken in [from, to].
func (s *Sampler) Window(from, to time.Time) Window {
	if s == nil {
		return Window{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var w Window
	var first, last *Sample
	for i := range s.recent {
		x := &s.recent[i]
		if x.At.Before(from) {
			first = x // the last sample before the window is its CPU baseline
			continue
		}
		if x.At.After(to) {
			break
		}
		if first == nil {
			first = x
		}
		last = x
		w.Samples++
		w.PeakRSS = max(w.PeakRSS, x.Mem.RSS)
	}
	if first != nil && last != nil {
		w.CPU = last.CPU - first.CPU
	}
	return w
}

// CPUSince is the CPU used between the sample nearest before t and the latest sample; false when
// the process has not been sampled for that long yet.
func (s *Sampler) CPUSince(t time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recent) == 0 || s.recent[0].At.After(t) {
		return 0, false // not sampled for that long yet
	}
	var base Sample
	for _, x := range s.recent {
		if x.At.After(t) {
			break
		}
		base = x
	}
	return s.recent[len(s.recent)-1].CPU - base.CPU, true
}
