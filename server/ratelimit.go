package server

import (
	gosync "sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a set of token buckets keyed by device or address: one
// golang.org/x/time/rate.Limiter per key, in memory and bounded. When the
// map is full, buckets that have refilled completely (they carry no state)
// are dropped, and if none have the map is cleared: a reset gives clients a
// fresh burst, never a lock-out.
type limiter struct {
	rate  rate.Limit // tokens per second; disabled when <= 0
	burst int
	max   int
	now   func() time.Time

	mu      gosync.Mutex
	buckets map[string]*rate.Limiter
}

func newLimiter(r float64, burst, max int, now func() time.Time) *limiter {
	return &limiter{rate: rate.Limit(r), burst: burst, max: max, now: now, buckets: map[string]*rate.Limiter{}}
}

// allow takes one token from key's bucket and reports whether there was one.
func (l *limiter) allow(key string) bool {
	ok, _ := l.take(key)
	return ok
}

// take is allow that also says, when there was no token, how long until
// the bucket holds one again: the wait to send back as Retry-After.
func (l *limiter) take(key string) (bool, time.Duration) {
	if l == nil || l.rate <= 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[key] = b
	}
	l.mu.Unlock()
	r := b.ReserveN(now, 1)
	if !r.OK() { // burst < 1: never
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // give the token back: this request is refused
		return false, d
	}
	return true, 0
}

// evict drops buckets that have refilled completely; l.mu is held.
func (l *limiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= l.max {
		clear(l.buckets)
	}
}
