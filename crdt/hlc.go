package crdt

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Timestamp is a hybrid logical clock reading: milliseconds since the Unix
// epoch in the high 48 bits and a logical counter in the low 16 bits, so
// that comparing two Timestamps as integers compares them as HLC readings.
type Timestamp uint64

const logicalBits = 16

// MakeTimestamp packs a physical time in milliseconds and a logical counter.
func MakeTimestamp(ms int64, logical uint16) Timestamp {
	if ms < 0 {
		ms = 0
	}
	return Timestamp(uint64(ms)<<logicalBits | uint64(logical))
}

// Physical returns the physical part in milliseconds since the Unix epoch.
func (t Timestamp) Physical() int64 { return int64(t >> logicalBits) }

// Logical returns the logical counter.
func (t Timestamp) Logical() uint16 { return uint16(t) }

// Time returns the physical part as a time.Time in UTC.
func (t Timestamp) Time() time.Time { return time.UnixMilli(t.Physical()).UTC() }

// String formats t as RFC 3339 time with the logical counter, e.g.
// "2026-11-21T09:30:00.123Z+4".
func (t Timestamp) String() string {
	return fmt.Sprintf("%s+%d", t.Time().Format("2006-01-02T15:04:05.000Z"), t.Logical())
}

// SkewError reports a remote timestamp further ahead of the local wall clock
// than the clock allows. The clock does not adopt such a timestamp; the
// caller decides whether to refuse or quarantine what carried it.
type SkewError struct {
	Remote Timestamp
	Wall   time.Time
	Max    time.Duration
}

// Error says how far ahead of local time the remote timestamp is, and the
// allowed maximum.
func (e *SkewError) Error() string {
	return fmt.Sprintf("timestamp %s is %s ahead of local time %s (max %s)",
		e.Remote, e.Remote.Time().Sub(e.Wall).Round(time.Millisecond), e.Wall.UTC().Format(time.RFC3339), e.Max)
}

// Clock is a hybrid logical clock. It never reads the system clock itself:
// the wall function is supplied by the caller, which keeps tests
// deterministic. Readings from Now are strictly increasing even when the wall
// clock jumps backwards. A Clock is safe for concurrent use.
type Clock struct {
	wall    func() time.Time
	maxSkew time.Duration

	last atomic.Uint64 // the latest Timestamp issued or adopted
}

// NewClock returns a clock reading physical time from wall. Remote timestamps
// more than maxSkew ahead of wall are refused by Update.
func NewClock(wall func() time.Time, maxSkew time.Duration) *Clock {
	return &Clock{wall: wall, maxSkew: maxSkew}
}

// Now returns a new timestamp, greater than every timestamp this clock has
// returned or accepted through Update.
func (c *Clock) Now() Timestamp {
	return c.Reserve(1)
}

// Reserve returns the first of n new timestamps, first to first+n-1,
// each greater than every timestamp this clock has returned or accepted,
// reading the wall clock once (n calls of Now read it n times, and may
// move on to a later millisecond part way). A writer making n ops at once
// gives them these IDs. n below 1 counts as 1.
func (c *Clock) Reserve(n int) Timestamp {
	pt := MakeTimestamp(c.wall().UnixMilli(), 0)
	step := uint64(max(n, 1))
	for {
		last := c.last.Load()
		// Same or earlier millisecond: count logically. Overflowing the
		// counter carries into the physical part, which stays monotonic.
		first := max(uint64(pt), last+1)
		if c.last.CompareAndSwap(last, first+step-1) {
			return Timestamp(first)
		}
	}
}

// Update merges a timestamp seen from another replica, so that later
// readings of Now sort after it. A remote timestamp more than the allowed
// skew ahead of the wall clock is not adopted and a *SkewError is returned.
func (c *Clock) Update(remote Timestamp) error {
	wall := c.wall()
	if err := c.Check(remote, wall); err != nil {
		return err
	}
	for {
		last := c.last.Load()
		if uint64(remote) <= last || c.last.CompareAndSwap(last, uint64(remote)) {
			return nil
		}
	}
}

// Check reports, without changing the clock, whether remote is within the
// allowed skew of the given wall time.
func (c *Clock) Check(remote Timestamp, wall time.Time) error {
	if remote.Physical()-wall.UnixMilli() > c.maxSkew.Milliseconds() {
		return &SkewError{Remote: remote, Wall: wall, Max: c.maxSkew}
	}
	return nil
}

// Last returns the latest timestamp issued or adopted, without advancing.
func (c *Clock) Last() Timestamp {
	return Timestamp(c.last.Load())
}
