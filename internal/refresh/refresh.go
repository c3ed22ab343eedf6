// Package refresh holds the pure scheduling rules of the operator: when a token is replaced, how
// much jitter spreads the replacements of many credentials, and how long to wait after a failed
// exchange. Nothing here reads a clock, draws random numbers or does I/O: times, and the jitter
// fraction that stands in for randomness, are parameters, so the controller can drive everything
// from an injected clock and tests can use fixed times.
//
// The shape follows cert-manager's pkg/util/pki/renewaltime.go (renewal maths kept out of the
// controller) and VSO's computeDynamicHorizonWithJitter (jitter only ever moves a refresh earlier).
package refresh

import (
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"time"
)

// Backoff policy for failed token exchanges (DESIGN.md, "Precise rules", Retries).
const (
	// InitialBackoff is the delay after the first transient failure; each further failure doubles it.
	InitialBackoff = 5 * time.Second
	// MaxBackoff caps the transient backoff, so an endpoint that recovers is used again within
	// five minutes.
	MaxBackoff = 5 * time.Minute
	// PermanentBackoff is the fixed delay after a permanent failure (wrong client secret, unknown
	// tenant). Fixing those usually changes a watched object (the Secret or the spec), which
	// triggers a reconcile at once, so this timer is only the fallback.
	PermanentBackoff = 5 * time.Minute
)

// MinRequeue is the shortest delay RequeueAfter returns. A zero or negative delay would make the
// controller either not requeue at all or spin; a one-second floor is what cert-manager's
// scheduleRecheckOfCertificateIfRequired and ESO's getRequeueResult guard against too.
const MinRequeue = time.Second

// jitterShare is the largest share of renewBefore (or of a backoff step) subtracted as jitter:
// 10%, as DESIGN.md fixes it.
const jitterShare = 10

// EffectiveRenewBefore returns the renewBefore to use for a token living lifetime (expiresAt -
// issuedAt), and whether the requested value had to be clamped.
//
//   - requested == nil or <= 0: lifetime/2, the default. Half a lifetime is the promise to a dbt pod
//     that starts at any moment (about 30 minutes for a one-hour Databricks token); it sits between
//     cert-manager's one third and the Databricks SDK's min(TTL/2, 20m).
//   - requested >= lifetime: lifetime/2 and clamped=true (the controller emits a Warning event).
//     Honouring it would mean replacing every token the moment it is issued, a hot loop against
//     the identity provider.
//   - otherwise: requested.
//
// The result is truncated to whole seconds, because the times derived from it are stored in status
// and annotations with second precision (see the missed-renewal bug described in cert-manager's
// renewaltime.go). It is at least one second when the lifetime is at least two seconds, so a very
// short test token still gets a refresh strictly before expiry. A lifetime <= 0 (an already expired
// or malformed token) yields 0 and clamped=false: there is nothing to schedule but an immediate
// refresh.
func EffectiveRenewBefore(lifetime time.Duration, requested *time.Duration) (renewBefore time.Duration, clamped bool) {
	if lifetime <= 0 {
		return 0, false
	}
	renewBefore = lifetime / 2
	switch {
	case requested == nil || *requested <= 0:
	case *requested >= lifetime:
		clamped = true
	default:
		renewBefore = *requested
	}
	renewBefore = renewBefore.Truncate(time.Second)
	if renewBefore < time.Second && lifetime >= 2*time.Second {
		renewBefore = time.Second
	}
	return renewBefore, clamped
}

// RefreshTime returns when a token issued at issuedAt and expiring at expiresAt should be
// replaced: expiresAt - renewBefore - jitter, with jitter = jitterFraction * 10% of renewBefore.
//
// Jitter spreads the refreshes of many credentials created together (a GitOps sync) so they do not
// hit the identity provider in the same second, and it is only ever subtracted: renewBefore is a
// promise to the pods that read the Secret, so the refresh may come early but never late.
// jitterFraction is expected in [0,1) (see JitterFraction); values outside are clamped into it and
// NaN counts as 0.
//
// The result is truncated to whole seconds, which rounds it earlier, never later, for the same
// reason: status stores seconds, and a refresh time rounded up would be a missed promise.
// The result is never before issuedAt; when renewBefore (plus jitter) is longer than the whole
// lifetime the result is issuedAt itself, meaning "refresh now", and keeps issuedAt's precision.
// A renewBefore <= 0 is treated as 0.
func RefreshTime(issuedAt, expiresAt time.Time, renewBefore time.Duration, jitterFraction float64) time.Time {
	if renewBefore < 0 {
		renewBefore = 0
	}
	jitter := time.Duration(clampFraction(jitterFraction) * float64(renewBefore/jitterShare))
	t := expiresAt.Add(-renewBefore).Add(-jitter).Truncate(time.Second)
	if t.Before(issuedAt) {
		return issuedAt
	}
	return t
}

// JitterFraction derives a fraction in [0,1) from seed, for example the credential's UID joined
// with the token's expiry. It is deterministic on purpose: after an operator restart the same token
// gets the same refresh time, so status.nextRefreshTime does not churn, while different
// credentials (different UIDs) and successive tokens (different expiries) spread out.
//
// The hash is FNV-1a 64 followed by the MurmurHash3 fmix64 finalizer. The finalizer matters:
// seeds that differ only in their last bytes (uid-1, uid-2, ...) leave FNV-1a's high bits nearly
// unchanged, which would put them all at the same jitter. The top 53 bits of the mixed hash, the
// precision of a float64 mantissa, become the fraction.
func JitterFraction(seed string) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(seed)) // hash.Hash never returns an error.
	return float64(fmix64(h.Sum64())>>11) / (1 << 53)
}

// fmix64 is MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
func fmix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// RetryDelay returns the delay before the next token exchange after failures consecutive failed
// attempts (status.failedRefreshAttempts, counting the one that just failed; values below 1 count
// as 1).
//
//   - transient (5xx, timeouts, 429): InitialBackoff doubling per failure (5s, 10s, 20s, ...)
//     capped at MaxBackoff, minus up to 10% jitter (jitterFraction in [0,1)), never below one
//     second. Jitter is subtracted, like in RefreshTime, so the cap stays a real upper bound.
//   - permanent (transient=false): PermanentBackoff. Watches on the Secret and the spec, not this
//     timer, are what normally trigger the retry after a fix.
//
// retryAfter > 0 (from a Retry-After header, see ParseRetryAfter) is the earliest the server wants
// to hear from us again, so it overrides a shorter computed step: the result is
// max(computed, retryAfter). It is not capped; NextRetry still wakes the controller when the
// current token expires.
func RetryDelay(failures int32, transient bool, retryAfter time.Duration, jitterFraction float64) time.Duration {
	delay := PermanentBackoff
	if transient {
		delay = transientStep(failures)
		delay -= time.Duration(clampFraction(jitterFraction) * float64(delay/jitterShare))
		if delay < time.Second {
			delay = time.Second
		}
	}
	if retryAfter > delay {
		delay = retryAfter
	}
	return delay
}

// transientStep is InitialBackoff * 2^(failures-1), capped at MaxBackoff without overflowing for
// any failures count.
func transientStep(failures int32) time.Duration {
	step := InitialBackoff
	for i := int32(1); i < failures && step < MaxBackoff; i++ {
		step *= 2
	}
	return min(step, MaxBackoff)
}

// httpDateLayouts are the three date formats RFC 9110 section 5.6.7 requires a recipient to accept,
// the same list net/http.ParseTime uses (kept here so this package does not import net/http).
var httpDateLayouts = []string{
	"Mon, 02 Jan 2006 15:04:05 GMT", // IMF-fixdate (http.TimeFormat)
	time.RFC850,
	time.ANSIC,
}

// ParseRetryAfter parses a Retry-After header value (RFC 9110 section 10.2.3): either
// delay-seconds or an HTTP-date, which is turned into a delay relative to now and rounded up to a
// whole second so that retrying at now+delay is never before the date. It returns 0 for an empty,
// malformed, negative or past value, or one too large for a time.Duration, so a broken header
// never shortens or blocks the normal backoff.
func ParseRetryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	if isDigits(value) {
		secs, err := strconv.ParseInt(value, 10, 64)
		if err != nil || secs > int64(math.MaxInt64/time.Second) {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	for _, layout := range httpDateLayouts {
		t, err := time.Parse(layout, value)
		if err != nil {
			continue
		}
		d := t.Sub(now)
		if d <= 0 || d == math.MaxInt64 {
			return 0
		}
		if rem := d % time.Second; rem != 0 {
			d += time.Second - rem
		}
		return d
	}
	return 0
}

// RequeueAfter returns how long to wait from now until t, for a controller-runtime
// Result.RequeueAfter. It is never below MinRequeue: a time already reached or passed still
// requeues after a second instead of returning zero (which means "do not requeue") or a negative
// delay.
func RequeueAfter(now, t time.Time) time.Duration {
	return max(t.Sub(now), MinRequeue)
}

// NextRetry returns when to try again after a failed exchange. Normally now+delay; but while the
// token in the Secret is still valid, never later than halfway to its expiry (and at least
// MinRequeue ahead). Retries thus grow denser as expiry nears, so an identity provider that comes
// back at any moment before the token expires is asked again in time: the promise that a pod
// always finds a valid token holds through any outage shorter than the token's remaining life.
// Once the token has expired (or there is none) the plain backoff applies. A Retry-After from the
// provider is a floor the caller applies on top.
func NextRetry(now, expiresAt time.Time, delay time.Duration) time.Time {
	if remaining := expiresAt.Sub(now); remaining > 0 {
		delay = min(delay, max(remaining/2, MinRequeue))
	}
	return now.Add(delay)
}

// clampFraction maps f into [0,1); NaN and negative values become 0.
func clampFraction(f float64) float64 {
	switch {
	case !(f >= 0): // also catches NaN
		return 0
	case f >= 1:
		return math.Nextafter(1, 0)
	}
	return f
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
