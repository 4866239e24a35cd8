package failure

import (
	"errors"
	"time"
)

// Default cooldown durations, used for every [Policy] field left at zero.
const (
	DefaultRateLimit     = time.Second
	DefaultRateLimitMax  = 30 * time.Minute
	DefaultAuthFailure   = 30 * time.Minute
	DefaultModelNotFound = 12 * time.Hour
	DefaultServerError   = 60 * time.Second
)

// Policy holds the cooldown durations (the `cooldown` config block).
//
// A zero or negative field means "use the default"; see [Policy.WithDefaults].
type Policy struct {
	// RateLimit is the first backoff step for a 429 that carries no reset
	// hint. The cooldown doubles for each consecutive 429 up to RateLimitMax.
	// Default 1s.
	RateLimit time.Duration
	// RateLimitMax caps the 429 backoff ladder. Default 30m.
	RateLimitMax time.Duration
	// AuthFailure is how long a credential is cooled, for all models, after a
	// 401, 402 or 403, or Gemini's 400 for a revoked or expired key
	// (API_KEY_INVALID). Default 30m.
	AuthFailure time.Duration
	// ModelNotFound is how long a model is cooled on a credential after a 404
	// to a generation request saying that the model does not exist (for
	// Gemini's "not found, or not supported for <method>", the model on that
	// endpoint only). Default 12h.
	ModelNotFound time.Duration
	// ServerError is how long the requested model is cooled on a credential
	// after a 408, 5xx or 529 response or a connection that failed once made
	// (no response headers in time, a reset), and how long the credential is
	// cooled for every model when no connection could be made (refused, DNS,
	// TLS). Default 60s.
	ServerError time.Duration
}

// WithDefaults returns a copy of p in which every zero or negative duration
// is replaced by its default (1s, 30m, 30m, 12h, 60s). If RateLimitMax ends up
// below RateLimit it is raised to RateLimit, so the ladder never shrinks.
func (p Policy) WithDefaults() Policy {
	if p.RateLimit <= 0 {
		p.RateLimit = DefaultRateLimit
	}
	if p.RateLimitMax <= 0 {
		p.RateLimitMax = DefaultRateLimitMax
	}
	if p.RateLimitMax < p.RateLimit {
		p.RateLimitMax = p.RateLimit
	}
	if p.AuthFailure <= 0 {
		p.AuthFailure = DefaultAuthFailure
	}
	if p.ModelNotFound <= 0 {
		p.ModelNotFound = DefaultModelNotFound
	}
	if p.ServerError <= 0 {
		p.ServerError = DefaultServerError
	}
	return p
}

// Validate reports configuration mistakes in p: negative durations, and a
// RateLimitMax set below RateLimit (the default 1s when RateLimit is not
// set), which would otherwise be silently raised. Zero durations are valid
// and mean "use the default".
func (p Policy) Validate() error {
	fields := []struct {
		name string
		d    time.Duration
	}{
		{"rate_limit", p.RateLimit},
		{"rate_limit_max", p.RateLimitMax},
		{"auth_failure", p.AuthFailure},
		{"model_not_found", p.ModelNotFound},
		{"server_error", p.ServerError},
	}
	var errs []error
	for _, f := range fields {
		if f.d < 0 {
			errs = append(errs, errors.New("cooldown "+f.name+" must not be negative, got "+f.d.String()))
		}
	}
	if rl := p.WithDefaults().RateLimit; p.RateLimitMax > 0 && p.RateLimitMax < rl {
		what := rl.String()
		if p.RateLimit <= 0 {
			what += ", the default"
		}
		errs = append(errs, errors.New("cooldown rate_limit_max ("+p.RateLimitMax.String()+
			") must not be below rate_limit ("+what+")"))
	}
	return errors.Join(errs...)
}

// Backoff returns the cooldown for the n-th consecutive 429 without a reset
// hint (n starts at 1): RateLimit * 2^(n-1), capped at RateLimitMax. Values
// of n below 1 are treated as 1. The computation cannot overflow, however
// large n is. Zero fields of p take their defaults.
func (p Policy) Backoff(n int) time.Duration {
	p = p.WithDefaults()
	d := p.RateLimit
	for i := 1; i < n; i++ {
		// d <= RateLimitMax holds on every pass: doubling happens only when
		// the result stays within the cap, so it can never overflow.
		if d > p.RateLimitMax/2 {
			return p.RateLimitMax
		}
		d *= 2
	}
	return min(d, p.RateLimitMax)
}

// Cooldown is the arithmetic of one Failover verdict: it returns the
// deadline the verdict sets on the cooldown its scope names (the
// credential's, or the model's on it) and that cooldown's 429 streak
// afterwards, given the streak before (consecutive 429s without a reset
// hint, which RecordSuccess-style callers reset to 0):
//
//   - ScopeNone: nothing is cooled; the zero time, streak unchanged.
//   - a verdict with a deadline (Until, from a reset hint or now plus the
//     policy's duration for its reason): that deadline, streak unchanged.
//   - ScopeAll without a deadline: now + ServerError.
//   - otherwise (a 429 without a reset hint): the next step of the
//     backoff ladder, now + Backoff(streak+1), and streak+1.
//
// Deadlines only ever move later: the caller keeps the later of this one
// and the one it holds. Zero fields of p take their defaults.
func (p Policy) Cooldown(v Verdict, streak int, now time.Time) (until time.Time, next int) {
	switch {
	case v.Scope == ScopeNone:
		return time.Time{}, streak
	case !v.Until.IsZero():
		return v.Until, streak
	case v.Scope == ScopeAll:
		return now.Add(p.WithDefaults().ServerError), streak
	}
	streak = max(streak, 0) + 1
	return now.Add(p.Backoff(streak)), streak
}
