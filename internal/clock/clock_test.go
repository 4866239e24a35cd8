package clock

import (
	"testing"
	"time"
)

func TestInstallAndRestore(t *testing.T) {
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	f := NewFake(start)
	restore := Install(f.Now)
	if got := Now(); !got.Equal(start) {
		t.Fatalf("Now() = %v, want the fake %v", got, start)
	}
	f.Advance(90 * time.Second)
	if got := Now(); !got.Equal(start.Add(90 * time.Second)) {
		t.Fatalf("after Advance, Now() = %v", got)
	}
	restore()
	if got := Now(); got.Year() == 2030 {
		t.Fatalf("restore left the fake installed: %v", got)
	}
}
