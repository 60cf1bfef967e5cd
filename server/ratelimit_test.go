package server

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	l := newLimiter(2, 3, 4, func() time.Time { return now })
	for i := 0; i < 3; i++ {
		if !l.allow("a") {
			t.Fatalf("burst request %d refused", i)
		}
	}
	if l.allow("a") {
		t.Fatal("request beyond the burst allowed")
	}
	if !l.allow("b") {
		t.Fatal("another key is limited by a's bucket")
	}
	now = now.Add(500 * time.Millisecond) // one token at 2/s
	if !l.allow("a") || l.allow("a") {
		t.Fatal("refill is not one token per half second")
	}
	// The map stays bounded.
	for i := 0; i < 100; i++ {
		l.allow(fmt.Sprint("k", i))
	}
	if n := len(l.buckets); n > 4 {
		t.Fatalf("%d buckets, max 4", n)
	}
	off := newLimiter(-1, 1, 1, time.Now)
	for i := 0; i < 5; i++ {
		if !off.allow("x") {
			t.Fatal("disabled limiter refused")
		}
	}
}

// TestLimiterRetryAfter: a refusal says how long until the next token, the
// wait sent back as Retry-After.
func TestLimiterRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	l := newLimiter(4, 1, 4, func() time.Time { return now })
	if ok, _ := l.take("a"); !ok {
		t.Fatal("first request refused")
	}
	ok, wait := l.take("a")
	if ok || wait != 250*time.Millisecond {
		t.Fatalf("second request: ok=%v wait=%v, want refused with 250ms", ok, wait)
	}
	now = now.Add(100 * time.Millisecond)
	if ok, wait := l.take("a"); ok || wait < 149*time.Millisecond || wait > 151*time.Millisecond {
		t.Fatalf("after 100ms: ok=%v wait=%v, want refused with 150ms", ok, wait)
	}
}
