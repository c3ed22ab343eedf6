// Package gcconfig sets the Go garbage collector's defaults for the manager: a lower GOGC than
// Go's 100 and a soft memory limit under the container's memory limit. Both follow Prometheus,
// which defaults GOGC to 75 and GOMEMLIMIT to 90 % of the cgroup limit. The manager's memory is
// mostly its informer caches (live heap grows with the number of credentials), and with GOGC=100
// the heap grows to twice the live heap before a collection; see docs/performance.md.
//
// The standard GOGC and GOMEMLIMIT environment variables, when set, win.
package gcconfig

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

const (
	// DefaultGCPercent is used when GOGC is unset.
	DefaultGCPercent = 50
	// LimitRatio is the share of the cgroup memory limit used as the soft limit when GOMEMLIMIT
	// is unset: the rest is for memory the Go runtime does not count (the mapped binary).
	LimitRatio = 0.9
)

// cgroupLimitFiles are the memory limit of the process's cgroup, v2 then v1.
var cgroupLimitFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// Settings is what Apply chose, for the startup log.
type Settings struct {
	GCPercent int
	// MemoryLimit is the soft limit in bytes; 0 when none was set here.
	MemoryLimit int64
	// From says where each value came from.
	GCPercentFrom, MemoryLimitFrom string
}

// Apply sets the defaults that the environment does not.
func Apply() Settings {
	return apply(os.Getenv, readCgroupLimit)
}

func apply(getenv func(string) string, cgroupLimit func() (int64, bool)) Settings {
	s := Settings{GCPercentFrom: "GOGC", MemoryLimitFrom: "GOMEMLIMIT"}
	if getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGCPercent)
		s.GCPercent, s.GCPercentFrom = DefaultGCPercent, "default"
	} else {
		s.GCPercent = debug.SetGCPercent(-1)
		debug.SetGCPercent(s.GCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		if limit, ok := cgroupLimit(); ok {
			s.MemoryLimit = int64(float64(limit) * LimitRatio)
			s.MemoryLimitFrom = "cgroup"
			debug.SetMemoryLimit(s.MemoryLimit)
		} else {
			s.MemoryLimitFrom = "none"
		}
	} else {
		s.MemoryLimit = debug.SetMemoryLimit(-1)
	}
	return s
}

// readCgroupLimit returns the cgroup's memory limit, if it has one.
func readCgroupLimit() (int64, bool) {
	for _, f := range cgroupLimitFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		return parseLimit(string(b))
	}
	return 0, false
}

// parseLimit reads a cgroup memory limit: "max" (v2) and v1's page-rounded MaxInt64 mean none.
func parseLimit(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "max" {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v >= 1<<62 {
		return 0, false
	}
	return v, true
}
