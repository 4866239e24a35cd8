package failure

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestWithDefaults(t *testing.T) {
	want := Policy{
		RateLimit:     time.Second,
		RateLimitMax:  30 * time.Minute,
		AuthFailure:   30 * time.Minute,
		ModelNotFound: 12 * time.Hour,
		ServerError:   60 * time.Second,
	}
	tests := []struct {
		name string
		in   Policy
		want Policy
	}{
		{"zero", Policy{}, want},
		{"negative", Policy{RateLimit: -1, RateLimitMax: -1, AuthFailure: -1, ModelNotFound: -1, ServerError: -1}, want},
		{
			"explicit kept",
			Policy{RateLimit: 2 * time.Second, RateLimitMax: time.Hour, AuthFailure: time.Minute, ModelNotFound: time.Hour, ServerError: 5 * time.Second},
			Policy{RateLimit: 2 * time.Second, RateLimitMax: time.Hour, AuthFailure: time.Minute, ModelNotFound: time.Hour, ServerError: 5 * time.Second},
		},
		{
			"max raised to rate limit",
			Policy{RateLimit: time.Hour},
			Policy{RateLimit: time.Hour, RateLimitMax: time.Hour, AuthFailure: want.AuthFailure, ModelNotFound: want.ModelNotFound, ServerError: want.ServerError},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.WithDefaults(); got != tt.want {
				t.Errorf("WithDefaults() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		in      Policy
		wantErr []string // substrings of the error; nil means no error
	}{
		{"zero is valid", Policy{}, nil},
		{"explicit valid", Policy{RateLimit: time.Second, RateLimitMax: time.Second, ServerError: time.Minute}, nil},
		{"negative rate_limit", Policy{RateLimit: -time.Second}, []string{"rate_limit must not be negative"}},
		{"negative server_error", Policy{ServerError: -time.Second}, []string{"server_error must not be negative"}},
		{"two negatives", Policy{AuthFailure: -1, ModelNotFound: -1}, []string{"auth_failure", "model_not_found"}},
		{"max below rate limit", Policy{RateLimit: time.Minute, RateLimitMax: time.Second}, []string{"rate_limit_max (1s) must not be below rate_limit (1m0s)"}},
		{"max below the default rate limit", Policy{RateLimitMax: 500 * time.Millisecond}, []string{"rate_limit_max (500ms) must not be below rate_limit (1s, the default)"}},
		{"rate limit above the default max", Policy{RateLimit: time.Hour}, nil},
		{"negative max", Policy{RateLimitMax: -time.Minute}, []string{"rate_limit_max must not be negative, got -1m0s"}},
		{"every field negative", Policy{RateLimit: -1, RateLimitMax: -1, AuthFailure: -1, ModelNotFound: -1, ServerError: -1},
			[]string{"rate_limit must", "rate_limit_max must", "auth_failure must", "model_not_found must", "server_error must"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tt.wantErr)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Validate() = %q, want it to contain %q", err, s)
				}
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	custom := Policy{RateLimit: 3 * time.Second, RateLimitMax: 20 * time.Second}
	huge := Policy{RateLimit: 1 << 62, RateLimitMax: math.MaxInt64}
	tests := []struct {
		name string
		p    Policy
		n    int
		want time.Duration
	}{
		{"defaults n=1", Policy{}, 1, time.Second},
		{"defaults n=2", Policy{}, 2, 2 * time.Second},
		{"defaults n=3", Policy{}, 3, 4 * time.Second},
		{"defaults n=4", Policy{}, 4, 8 * time.Second},
		{"defaults n=11", Policy{}, 11, 1024 * time.Second},
		{"defaults n=12 capped", Policy{}, 12, 30 * time.Minute},
		{"defaults n=100 capped", Policy{}, 100, 30 * time.Minute},
		{"defaults n=MaxInt capped", Policy{}, math.MaxInt, 30 * time.Minute},
		{"n=0 treated as 1", Policy{}, 0, time.Second},
		{"negative n treated as 1", Policy{}, -7, time.Second},
		{"custom n=1", custom, 1, 3 * time.Second},
		{"custom n=2", custom, 2, 6 * time.Second},
		{"custom n=3", custom, 3, 12 * time.Second},
		{"custom n=4 capped", custom, 4, 20 * time.Second},
		{"custom n=100 capped", custom, 100, 20 * time.Second},
		{"exact cap", Policy{RateLimit: time.Second, RateLimitMax: 8 * time.Second}, 4, 8 * time.Second},
		{"exact cap then beyond", Policy{RateLimit: time.Second, RateLimitMax: 8 * time.Second}, 5, 8 * time.Second},
		{"huge first step", huge, 1, 1 << 62},
		{"huge would overflow", huge, 2, math.MaxInt64},
		{"huge n=100", huge, 100, math.MaxInt64},
		{"max below rate limit", Policy{RateLimit: time.Minute, RateLimitMax: time.Second}, 3, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Backoff(tt.n); got != tt.want {
				t.Errorf("Backoff(%d) = %v, want %v", tt.n, got, tt.want)
			}
		})
	}
}

// TestBackoffMonotonic checks that the ladder never goes down and never
// exceeds the cap, for every step up to well past the cap.
func TestBackoffMonotonic(t *testing.T) {
	p := Policy{RateLimit: 7 * time.Millisecond, RateLimitMax: 90 * time.Minute}
	prev := time.Duration(0)
	for n := 1; n <= 200; n++ {
		d := p.Backoff(n)
		if d < prev || d > p.RateLimitMax || d <= 0 {
			t.Fatalf("Backoff(%d) = %v after %v; cap %v", n, d, prev, p.RateLimitMax)
		}
		prev = d
	}
	if prev != p.RateLimitMax {
		t.Fatalf("ladder ends at %v, want cap %v", prev, p.RateLimitMax)
	}
}

func TestCooldown(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	hint := now.Add(42 * time.Second)
	p := Policy{RateLimit: 2 * time.Second, RateLimitMax: 10 * time.Second, ServerError: time.Minute}
	tests := []struct {
		name       string
		v          Verdict
		streak     int
		want       time.Duration // from now; -1 for the zero time
		wantStreak int
	}{
		{"none cools nothing", Verdict{Action: Failover, Scope: ScopeNone, Reason: ReasonRateLimited}, 3, -1, 3},
		{"deadline kept", Verdict{Action: Failover, Scope: ScopeModel, Until: hint}, 2, 42 * time.Second, 2},
		{"hinted 429 keeps the streak", Verdict{Action: Failover, Scope: ScopeModel, Reason: ReasonRateLimited, Until: hint, Hinted: true}, 4, 42 * time.Second, 4},
		{"endpoint deadline", Verdict{Action: Failover, Scope: ScopeEndpoint, Until: hint}, 0, 42 * time.Second, 0},
		{"all without deadline", Verdict{Action: Failover, Scope: ScopeAll}, 0, time.Minute, 0},
		{"first unhinted 429", Verdict{Action: Failover, Scope: ScopeModel, Reason: ReasonRateLimited}, 0, 2 * time.Second, 1},
		{"second unhinted 429", Verdict{Action: Failover, Scope: ScopeModel, Reason: ReasonRateLimited}, 1, 4 * time.Second, 2},
		{"ladder capped", Verdict{Action: Failover, Scope: ScopeModel, Reason: ReasonRateLimited}, 10, 10 * time.Second, 11},
		{"endpoint 429 climbs too", Verdict{Action: Failover, Scope: ScopeEndpoint, Reason: ReasonRateLimited}, 2, 8 * time.Second, 3},
		{"negative streak starts over", Verdict{Action: Failover, Scope: ScopeModel}, -5, 2 * time.Second, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			until, streak := p.Cooldown(tt.v, tt.streak, now)
			want := time.Time{}
			if tt.want >= 0 {
				want = now.Add(tt.want)
			}
			if !until.Equal(want) || streak != tt.wantStreak {
				t.Fatalf("Cooldown = %v, %d; want %v, %d", until, streak, want, tt.wantStreak)
			}
		})
	}
	// Zero fields take their defaults.
	if until, _ := (Policy{}).Cooldown(Verdict{Scope: ScopeAll}, 0, now); !until.Equal(now.Add(DefaultServerError)) {
		t.Fatalf("default server_error: %v", until)
	}
	if until, _ := (Policy{}).Cooldown(Verdict{Scope: ScopeModel}, 1000, now); !until.Equal(now.Add(DefaultRateLimitMax)) {
		t.Fatalf("a long streak: %v, want the default cap", until)
	}
}
