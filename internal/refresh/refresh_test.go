package refresh

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// t0 is a fixed, whole-second issue time used throughout; nothing here reads the wall clock.
var t0 = time.Date(2026, time.November, 28, 18, 0, 0, 0, time.UTC)

func dur(d time.Duration) *time.Duration { return &d }

func TestEffectiveRenewBefore(t *testing.T) {
	tests := map[string]struct {
		lifetime    time.Duration
		requested   *time.Duration
		want        time.Duration
		wantClamped bool
	}{
		"nil defaults to half the lifetime":            {lifetime: time.Hour, want: 30 * time.Minute},
		"zero defaults to half the lifetime":           {lifetime: time.Hour, requested: dur(0), want: 30 * time.Minute},
		"negative defaults to half the lifetime":       {lifetime: time.Hour, requested: dur(-time.Minute), want: 30 * time.Minute},
		"requested below lifetime is kept":             {lifetime: time.Hour, requested: dur(20 * time.Minute), want: 20 * time.Minute},
		"requested equal to lifetime is clamped":       {lifetime: time.Hour, requested: dur(time.Hour), want: 30 * time.Minute, wantClamped: true},
		"requested above lifetime is clamped":          {lifetime: time.Hour, requested: dur(2 * time.Hour), want: 30 * time.Minute, wantClamped: true},
		"entra 75m token, default":                     {lifetime: 75 * time.Minute, want: 37*time.Minute + 30*time.Second},
		"odd lifetime truncates half to seconds":       {lifetime: 3599 * time.Second, want: 1799 * time.Second},
		"sub-second request truncates":                 {lifetime: time.Hour, requested: dur(90*time.Second + 999*time.Millisecond), want: 90 * time.Second},
		"sub-second lifetime part truncates":           {lifetime: 61*time.Second + 500*time.Millisecond, want: 30 * time.Second},
		"short token gets at least one second":         {lifetime: 2 * time.Second, requested: dur(500 * time.Millisecond), want: time.Second},
		"short token default at least one second":      {lifetime: 2*time.Second + 500*time.Millisecond, want: time.Second},
		"clamped short token at least one second":      {lifetime: 2 * time.Second, requested: dur(10 * time.Second), want: time.Second, wantClamped: true},
		"lifetime under two seconds may truncate to 0": {lifetime: 1900 * time.Millisecond, want: 0},
		"zero lifetime":                                {lifetime: 0, requested: dur(time.Minute), want: 0},
		"negative lifetime":                            {lifetime: -time.Minute, want: 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, clamped := EffectiveRenewBefore(tc.lifetime, tc.requested)
			if got != tc.want || clamped != tc.wantClamped {
				t.Errorf("EffectiveRenewBefore(%v, %v) = (%v, %v), want (%v, %v)",
					tc.lifetime, tc.requested, got, clamped, tc.want, tc.wantClamped)
			}
		})
	}
}

func TestRefreshTime(t *testing.T) {
	tests := map[string]struct {
		issuedAt, expiresAt time.Time
		renewBefore         time.Duration
		fraction            float64
		want                time.Time
	}{
		"no jitter": {
			issuedAt: t0, expiresAt: t0.Add(time.Hour), renewBefore: 20 * time.Minute,
			want: t0.Add(40 * time.Minute),
		},
		"full jitter is 10% of renewBefore earlier": {
			issuedAt: t0, expiresAt: t0.Add(time.Hour), renewBefore: 20 * time.Minute, fraction: math.Nextafter(1, 0),
			// 2m minus a nanosecond, truncated to the earlier second.
			want: t0.Add(38 * time.Minute),
		},
		"half jitter": {
			issuedAt: t0, expiresAt: t0.Add(time.Hour), renewBefore: 30 * time.Minute, fraction: 0.5,
			want: t0.Add(30*time.Minute - 90*time.Second),
		},
		"sub-second expiry rounds earlier": {
			issuedAt: t0, expiresAt: t0.Add(time.Hour + 900*time.Millisecond), renewBefore: 30 * time.Minute,
			want: t0.Add(30 * time.Minute),
		},
		"sub-second jitter rounds earlier": {
			issuedAt: t0, expiresAt: t0.Add(time.Hour), renewBefore: 30 * time.Second, fraction: 0.1, // 0.3s
			want: t0.Add(time.Hour - 31*time.Second),
		},
		"renewBefore longer than lifetime refreshes at issue": {
			issuedAt: t0, expiresAt: t0.Add(time.Minute), renewBefore: 2 * time.Minute,
			want: t0,
		},
		"never before a sub-second issuedAt": {
			issuedAt: t0.Add(400 * time.Millisecond), expiresAt: t0.Add(10 * time.Second), renewBefore: 10 * time.Second,
			want: t0.Add(400 * time.Millisecond),
		},
		"negative renewBefore counts as zero": {
			issuedAt: t0, expiresAt: t0.Add(time.Hour), renewBefore: -time.Minute, fraction: 0.9,
			want: t0.Add(time.Hour),
		},
		"NaN fraction counts as zero": {
			issuedAt: t0, expiresAt: t0.Add(time.Hour), renewBefore: 10 * time.Minute, fraction: math.NaN(),
			want: t0.Add(50 * time.Minute),
		},
		"negative fraction counts as zero": {
			issuedAt: t0, expiresAt: t0.Add(time.Hour), renewBefore: 10 * time.Minute, fraction: -3,
			want: t0.Add(50 * time.Minute),
		},
		"fraction above one is clamped below one": {
			issuedAt: t0, expiresAt: t0.Add(time.Hour), renewBefore: 10 * time.Minute, fraction: 7,
			want: t0.Add(49 * time.Minute),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := RefreshTime(tc.issuedAt, tc.expiresAt, tc.renewBefore, tc.fraction)
			if !got.Equal(tc.want) {
				t.Errorf("RefreshTime() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRefreshTimeJitterBounds checks the jitter range over many fractions: never later than
// expiresAt-renewBefore, never more than 10% of renewBefore (plus the one-second truncation)
// earlier, always on a whole second, and spread over the range rather than stuck at one end.
func TestRefreshTimeJitterBounds(t *testing.T) {
	tests := map[string]struct {
		expiresAt    time.Time
		renewBefore  time.Duration
		wantDistinct int // at least this many different refresh times over 1000 seeds
	}{
		"databricks 60m, default renewBefore": {expiresAt: t0.Add(time.Hour), renewBefore: 30 * time.Minute, wantDistinct: 150},
		"entra 73m, 20m renewBefore":          {expiresAt: t0.Add(73*time.Minute + 250*time.Millisecond), renewBefore: 20 * time.Minute, wantDistinct: 100},
		// 10% of 30s is 3s, so after truncation only a few whole seconds are possible.
		"test token 60s, default renewBefore": {expiresAt: t0.Add(time.Minute), renewBefore: 30 * time.Second, wantDistinct: 3},
		// 10% of 7s is 0.7s: any jitter at all truncates to the second before the target.
		"test token 20s, 7s renewBefore": {expiresAt: t0.Add(20 * time.Second), renewBefore: 7 * time.Second, wantDistinct: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			latest := tc.expiresAt.Add(-tc.renewBefore)
			earliest := latest.Add(-tc.renewBefore / 10).Add(-time.Second)
			seen := map[time.Time]bool{}
			for i := range 1000 {
				f := JitterFraction(fmt.Sprintf("uid-%d", i))
				got := RefreshTime(t0, tc.expiresAt, tc.renewBefore, f)
				if got.After(latest) || got.Before(earliest) {
					t.Fatalf("fraction %v: RefreshTime() = %v, want within [%v, %v]", f, got, earliest, latest)
				}
				if got.Nanosecond() != 0 {
					t.Fatalf("fraction %v: RefreshTime() = %v is not a whole second", f, got)
				}
				seen[got] = true
			}
			if len(seen) < tc.wantDistinct {
				t.Errorf("1000 seeds produced %d distinct refresh times, want >= %d; jitter does not spread", len(seen), tc.wantDistinct)
			}
		})
	}
}

func TestJitterFraction(t *testing.T) {
	seeds := []string{"", "a", "3f2c9e4a-uid/2026-11-28T19:00:00Z", "3f2c9e4a-uid/2026-11-28T20:00:00Z"}
	got := map[float64]string{}
	for _, seed := range seeds {
		f := JitterFraction(seed)
		if f < 0 || f >= 1 {
			t.Errorf("JitterFraction(%q) = %v, want in [0,1)", seed, f)
		}
		if again := JitterFraction(seed); again != f {
			t.Errorf("JitterFraction(%q) not deterministic: %v then %v", seed, f, again)
		}
		if other, dup := got[f]; dup {
			t.Errorf("JitterFraction(%q) == JitterFraction(%q) = %v", seed, other, f)
		}
		got[f] = seed
	}
	// Pin one value so a change of hash (which would move every credential's refresh time after
	// an upgrade) is a deliberate decision. FNV-1a 64 of "" is the offset basis cbf29ce484222325.
	if want := float64(fmix64(0xcbf29ce484222325)>>11) / (1 << 53); JitterFraction("") != want {
		t.Errorf("JitterFraction(\"\") = %v, want %v", JitterFraction(""), want)
	}
	// The fractions should spread over [0,1): every tenth gets some of 1000 seeds.
	var buckets [10]int
	for i := range 1000 {
		buckets[int(JitterFraction(fmt.Sprintf("uid-%d", i))*10)]++
	}
	for i, n := range buckets {
		if n < 50 {
			t.Errorf("bucket [%d/10, %d/10) got %d of 1000 seeds, want >= 50", i, i+1, n)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	tests := map[string]struct {
		failures   int32
		transient  bool
		retryAfter time.Duration
		fraction   float64
		want       time.Duration
	}{
		"1st transient":                 {failures: 1, transient: true, want: 5 * time.Second},
		"2nd transient":                 {failures: 2, transient: true, want: 10 * time.Second},
		"3rd transient":                 {failures: 3, transient: true, want: 20 * time.Second},
		"4th transient":                 {failures: 4, transient: true, want: 40 * time.Second},
		"5th transient":                 {failures: 5, transient: true, want: 80 * time.Second},
		"6th transient":                 {failures: 6, transient: true, want: 160 * time.Second},
		"7th transient is capped":       {failures: 7, transient: true, want: MaxBackoff},
		"100th transient is capped":     {failures: 100, transient: true, want: MaxBackoff},
		"max int32 failures is capped":  {failures: math.MaxInt32, transient: true, want: MaxBackoff},
		"zero failures counts as first": {failures: 0, transient: true, want: InitialBackoff},
		"negative failures as first":    {failures: -4, transient: true, want: InitialBackoff},
		"half jitter":                   {failures: 3, transient: true, fraction: 0.5, want: 19 * time.Second},
		"jitter on the cap":             {failures: 9, transient: true, fraction: 0.5, want: 285 * time.Second},
		"permanent":                     {failures: 1, want: PermanentBackoff},
		"permanent ignores jitter":      {failures: 3, fraction: 0.9, want: PermanentBackoff},
		"retry-after overrides a shorter step": {
			failures: 1, transient: true, retryAfter: 2 * time.Minute, want: 2 * time.Minute,
		},
		"retry-after shorter than the step is ignored": {
			failures: 5, transient: true, retryAfter: 10 * time.Second, want: 80 * time.Second,
		},
		"retry-after beyond the cap wins": {
			failures: 20, transient: true, retryAfter: time.Hour, want: time.Hour,
		},
		"retry-after beats jitter": {
			failures: 1, transient: true, retryAfter: 5 * time.Second, fraction: 0.9, want: 5 * time.Second,
		},
		"retry-after on a permanent error": {
			failures: 1, retryAfter: 10 * time.Minute, want: 10 * time.Minute,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := RetryDelay(tc.failures, tc.transient, tc.retryAfter, tc.fraction)
			if got != tc.want {
				t.Errorf("RetryDelay(%d, %v, %v, %v) = %v, want %v",
					tc.failures, tc.transient, tc.retryAfter, tc.fraction, got, tc.want)
			}
		})
	}
}

func TestRetryDelayJitterBounds(t *testing.T) {
	for failures := int32(1); failures <= 10; failures++ {
		step := RetryDelay(failures, true, 0, 0)
		for i := range 200 {
			f := JitterFraction(fmt.Sprintf("%d/%d", failures, i))
			got := RetryDelay(failures, true, 0, f)
			if got > step || got < step-step/10 || got < time.Second {
				t.Fatalf("RetryDelay(%d, fraction %v) = %v, want within [%v, %v]", failures, f, got, step-step/10, step)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, time.November, 28, 18, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		value string
		now   time.Time
		want  time.Duration
	}{
		"seconds":                    {value: "120", want: 2 * time.Minute},
		"seconds with spaces":        {value: " 7 ", want: 7 * time.Second},
		"zero seconds":               {value: "0", want: 0},
		"negative seconds":           {value: "-5", want: 0},
		"fractional seconds":         {value: "1.5", want: 0},
		"seconds overflowing":        {value: "99999999999999999999", want: 0},
		"seconds too big a duration": {value: "9223372037", want: 0},
		"empty":                      {value: "", want: 0},
		"garbage":                    {value: "soon", want: 0},
		"IMF-fixdate":                {value: "Sat, 28 Nov 2026 18:01:30 GMT", want: 90 * time.Second},
		"RFC 850 date":               {value: "Saturday, 28-Nov-26 18:00:10 GMT", want: 10 * time.Second},
		"ANSI C date":                {value: "Sat Nov 28 18:02:00 2026", want: 2 * time.Minute},
		"date rounds up to a second": {
			value: "Sat, 28 Nov 2026 18:00:10 GMT", now: now.Add(300 * time.Millisecond), want: 10 * time.Second,
		},
		"date in the past":                         {value: "Sat, 28 Nov 2026 17:59:59 GMT", want: 0},
		"date equal to now":                        {value: "Sat, 28 Nov 2026 18:00:00 GMT", want: 0},
		"date in another zone is not an HTTP-date": {value: "Sat, 28 Nov 2026 19:00:00 CET", want: 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			n := now
			if !tc.now.IsZero() {
				n = tc.now
			}
			if got := ParseRetryAfter(tc.value, n); got != tc.want {
				t.Errorf("ParseRetryAfter(%q) = %v, want %v", tc.value, got, tc.want)
			}
		})
	}
}

func TestRequeueAfter(t *testing.T) {
	tests := map[string]struct {
		t    time.Time
		want time.Duration
	}{
		"future":               {t: t0.Add(30 * time.Minute), want: 30 * time.Minute},
		"sub-second future":    {t: t0.Add(1500 * time.Millisecond), want: 1500 * time.Millisecond},
		"below the floor":      {t: t0.Add(200 * time.Millisecond), want: MinRequeue},
		"now":                  {t: t0, want: MinRequeue},
		"past":                 {t: t0.Add(-time.Hour), want: MinRequeue},
		"zero time (unset)":    {t: time.Time{}, want: MinRequeue},
		"exactly the floor":    {t: t0.Add(time.Second), want: time.Second},
		"far future saturates": {t: t0.AddDate(400, 0, 0), want: time.Duration(math.MaxInt64)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := RequeueAfter(t0, tc.t); got != tc.want {
				t.Errorf("RequeueAfter(%v, %v) = %v, want %v", t0, tc.t, got, tc.want)
			}
		})
	}
}

func TestNextRetry(t *testing.T) {
	tests := map[string]struct {
		expiresAt time.Time
		delay     time.Duration
		want      time.Time
	}{
		"token outlives the delay":       {expiresAt: t0.Add(time.Hour), delay: 20 * time.Second, want: t0.Add(20 * time.Second)},
		"token expires before the retry": {expiresAt: t0.Add(10 * time.Second), delay: 5 * time.Minute, want: t0.Add(5 * time.Second)},
		"halfway to expiry caps a step":  {expiresAt: t0.Add(time.Minute), delay: time.Minute, want: t0.Add(30 * time.Second)},
		"floor near expiry":              {expiresAt: t0.Add(500 * time.Millisecond), delay: time.Minute, want: t0.Add(time.Second)},
		"token already expired":          {expiresAt: t0.Add(-time.Minute), delay: time.Minute, want: t0.Add(time.Minute)},
		"token expires now":              {expiresAt: t0, delay: time.Minute, want: t0.Add(time.Minute)},
		"no token yet (zero expiry)":     {expiresAt: time.Time{}, delay: 5 * time.Second, want: t0.Add(5 * time.Second)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := NextRetry(t0, tc.expiresAt, tc.delay); !got.Equal(tc.want) {
				t.Errorf("NextRetry() = %v, want %v", got, tc.want)
			}
		})
	}
}
