package refresh

import (
	"testing"
	"time"
)

// FuzzRefreshTime checks RefreshTime's invariants for arbitrary issue times, lifetimes, requested
// renewBefore values and jitter fractions: the refresh is never before issuedAt, never later than
// expiresAt-renewBefore, and never earlier than expiresAt-1.1*renewBefore-1s (the 10% jitter plus the
// whole-second truncation) unless that would be before issuedAt.
func FuzzRefreshTime(f *testing.F) {
	f.Add(t0.Unix(), int64(0), int64(time.Hour), int64(0), 0.0)
	f.Add(t0.Unix(), int64(123456789), int64(75*time.Minute), int64(20*time.Minute), 0.73)
	f.Add(t0.Unix(), int64(0), int64(20*time.Second), int64(time.Hour), 0.999)
	f.Add(int64(-62135596800), int64(0), int64(1), int64(-1), -1.0)
	f.Fuzz(func(t *testing.T, issuedUnix, issuedNanos, lifetimeNanos, requestedNanos int64, fraction float64) {
		// Keep times within years 1..9999, and lifetimes within a century, so that the bounds
		// below can be computed without overflowing time.Duration.
		const maxSpan = int64(100 * 365 * 24 * time.Hour)
		if issuedUnix < -62135596800 || issuedUnix > 253402300799-maxSpan/int64(time.Second) {
			t.Skip()
		}
		if lifetimeNanos < -maxSpan || lifetimeNanos > maxSpan {
			t.Skip()
		}
		issuedAt := time.Unix(issuedUnix, issuedNanos%int64(time.Second)).UTC()
		lifetime := time.Duration(lifetimeNanos)
		expiresAt := issuedAt.Add(lifetime)
		requested := time.Duration(requestedNanos)

		renewBefore, clamped := EffectiveRenewBefore(lifetime, &requested)
		if renewBefore < 0 || (lifetime > 0 && renewBefore >= lifetime && lifetime >= 2*time.Second) {
			t.Fatalf("EffectiveRenewBefore(%v, %v) = %v, outside [0, lifetime)", lifetime, requested, renewBefore)
		}
		if renewBefore%time.Second != 0 {
			t.Fatalf("EffectiveRenewBefore(%v, %v) = %v, not whole seconds", lifetime, requested, renewBefore)
		}
		if clamped && requested < lifetime {
			t.Fatalf("EffectiveRenewBefore(%v, %v) clamped a value below the lifetime", lifetime, requested)
		}

		got := RefreshTime(issuedAt, expiresAt, renewBefore, fraction)
		if got.Before(issuedAt) {
			t.Fatalf("RefreshTime() = %v, before issuedAt %v", got, issuedAt)
		}
		latest := expiresAt.Add(-renewBefore)
		if latest.Before(issuedAt) {
			if !got.Equal(issuedAt) {
				t.Fatalf("RefreshTime() = %v, want issuedAt %v when renewBefore exceeds the lifetime", got, issuedAt)
			}
			return
		}
		earliest := latest.Add(-renewBefore / 10).Add(-time.Second)
		if got.After(latest) || got.Before(earliest) {
			t.Fatalf("RefreshTime(%v, %v, %v, %v) = %v, want within [%v, %v]",
				issuedAt, expiresAt, renewBefore, fraction, got, earliest, latest)
		}
		if got.Nanosecond() != 0 && !got.Equal(issuedAt) {
			t.Fatalf("RefreshTime() = %v, not a whole second", got)
		}
	})
}

// FuzzRetryDelay checks that every delay is at least a second, at least the Retry-After, and, for
// transient failures without a Retry-After, at most MaxBackoff.
func FuzzRetryDelay(f *testing.F) {
	f.Add(int32(1), true, int64(0), 0.0)
	f.Add(int32(40), true, int64(time.Hour), 0.99)
	f.Add(int32(-1), false, int64(-1), 2.0)
	f.Fuzz(func(t *testing.T, failures int32, transient bool, retryAfterNanos int64, fraction float64) {
		retryAfter := time.Duration(retryAfterNanos)
		got := RetryDelay(failures, transient, retryAfter, fraction)
		if got < time.Second || got < retryAfter {
			t.Fatalf("RetryDelay(%d, %v, %v, %v) = %v, below one second or Retry-After", failures, transient, retryAfter, fraction, got)
		}
		if retryAfter <= 0 && got > MaxBackoff {
			t.Fatalf("RetryDelay(%d, %v, %v, %v) = %v, above MaxBackoff", failures, transient, retryAfter, fraction, got)
		}
	})
}
