package auth

import (
	"fmt"
	gosync "sync"
	"time"
)

// LockedError is returned (wrapping ErrAccountLocked) for a login to a
// username locked after failed logins.
type LockedError struct {
	// RetryAfter is how long until the next attempt is taken.
	RetryAfter time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%v; try again in %s", ErrAccountLocked, e.RetryAfter.Round(time.Second))
}

// Unwrap makes errors.Is(err, ErrAccountLocked) true.
func (e *LockedError) Unwrap() error { return ErrAccountLocked }

// lockout counts consecutive failed logins per username (whether or not
// the user exists, so a lock tells nothing about existence) and locks a
// username after threshold failures for base, doubling with each further
// failure up to max. A success clears the count. It is in memory and
// bounded: when full, entries not locked are dropped first.
type lockout struct {
	threshold int
	base, max time.Duration
	cap       int

	mu gosync.Mutex
	m  map[string]*failState
}

type failState struct {
	fails  int
	last   time.Time
	locked time.Time // locked until
}

func newLockout(threshold int, base, max time.Duration, cap int) *lockout {
	return &lockout{threshold: threshold, base: base, max: max, cap: cap, m: map[string]*failState{}}
}

// check returns how long key stays locked, or 0.
func (l *lockout) check(key string, now time.Time) time.Duration {
	if l.threshold <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.m[key]; ok && now.Before(f.locked) {
		return f.locked.Sub(now)
	}
	return 0
}

// fail counts a failure and returns the lock it starts, or 0.
func (l *lockout) fail(key string, now time.Time) time.Duration {
	if l.threshold <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.m[key]
	if !ok {
		if len(l.m) >= l.cap {
			l.evict(now)
		}
		f = &failState{}
		l.m[key] = f
	}
	// A quiet day forgives earlier failures.
	if now.Sub(f.last) > 24*time.Hour {
		f.fails = 0
	}
	f.fails++
	f.last = now
	if f.fails < l.threshold {
		return 0
	}
	d := l.base
	for i := l.threshold; i < f.fails && d < l.max; i++ {
		d *= 2
	}
	d = min(d, l.max)
	f.locked = now.Add(d)
	return d
}

// reset forgets key's failures.
func (l *lockout) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, key)
}

// evict drops entries that are not locked, then, if still full, the older
// half by last failure, then whatever it must to get under the cap.
func (l *lockout) evict(now time.Time) {
	for k, f := range l.m {
		if !now.Before(f.locked) {
			delete(l.m, k)
		}
	}
	if len(l.m) < l.cap {
		return
	}
	var oldest time.Time
	for _, f := range l.m {
		if oldest.IsZero() || f.last.Before(oldest) {
			oldest = f.last
		}
	}
	cut := oldest.Add(now.Sub(oldest) / 2)
	for k, f := range l.m {
		if f.last.Before(cut) || len(l.m) >= l.cap {
			delete(l.m, k)
		}
	}
}
