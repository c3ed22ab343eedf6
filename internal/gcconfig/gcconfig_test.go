package gcconfig

import (
	"runtime/debug"
	"testing"
)

func TestParseLimit(t *testing.T) {
	for in, want := range map[string]int64{"268435456\n": 268435456, "max\n": 0, "": 0, "9223372036854771712": 0, "junk": 0, "-1": 0} {
		got, ok := parseLimit(in)
		if got != want || ok != (want > 0) {
			t.Errorf("parseLimit(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

func TestApplyDefaultsAndEnvironment(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	limit := func() (int64, bool) { return 256 << 20, true }

	s := apply(getenv, limit)
	if s.GCPercent != DefaultGCPercent || debug.SetGCPercent(-1) != DefaultGCPercent {
		t.Errorf("GOGC unset: want the default %d, got %+v", DefaultGCPercent, s)
	}
	limitBytes := float64(256 << 20)
	if want := int64(limitBytes * LimitRatio); s.MemoryLimit != want || debug.SetMemoryLimit(-1) != want {
		t.Errorf("GOMEMLIMIT unset in a 256 MiB cgroup: want %d, got %+v", want, s)
	}

	env["GOGC"], env["GOMEMLIMIT"] = "100", "1GiB"
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(1 << 30)
	s = apply(getenv, limit)
	if s.GCPercent != 100 || s.GCPercentFrom != "GOGC" || s.MemoryLimit != 1<<30 || s.MemoryLimitFrom != "GOMEMLIMIT" {
		t.Errorf("the environment must win: %+v", s)
	}

	delete(env, "GOMEMLIMIT")
	s = apply(getenv, func() (int64, bool) { return 0, false })
	if s.MemoryLimitFrom != "none" {
		t.Errorf("no cgroup limit: no soft limit, got %+v", s)
	}
}
