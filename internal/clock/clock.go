// Package clock is the time source of llm_proxy's runtime decisions
// (cooldowns, binding expiry, Retry-After). Production uses the wall clock;
// tests that run a real Caddy in the same process install a Fake so they can
// move time forward instead of sleeping.
package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

var current atomic.Pointer[func() time.Time]

// Now returns the current time of the installed clock.
func Now() time.Time {
	if f := current.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// Install makes f the clock until the returned restore function is called.
func Install(f func() time.Time) (restore func()) {
	prev := current.Swap(&f)
	return func() { current.Store(prev) }
}

// Fake is a clock that moves only when told to.
type Fake struct {
	mu  sync.Mutex
	now time.Time
}

// NewFake returns a fake clock set to start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the fake time forward by d.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}
