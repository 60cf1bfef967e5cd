package crdt

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC)

// fakeWall is an injected wall clock that tests move by hand.
type fakeWall struct{ now time.Time }

func (w *fakeWall) read() time.Time { return w.now }

func TestTimestampPacking(t *testing.T) {
	ts := MakeTimestamp(t0.UnixMilli()+123, 4)
	if ts.Physical() != t0.UnixMilli()+123 || ts.Logical() != 4 {
		t.Fatalf("unpacked %d+%d", ts.Physical(), ts.Logical())
	}
	if got, want := ts.String(), "2026-11-21T09:30:00.123Z+4"; got != want {
		t.Fatalf("String %q, want %q", got, want)
	}
	if !ts.Time().Equal(t0.Add(123 * time.Millisecond)) {
		t.Fatalf("Time %v", ts.Time())
	}
	if MakeTimestamp(-5, 1) != MakeTimestamp(0, 1) {
		t.Fatalf("negative milliseconds not clamped to the epoch")
	}
	// Integer order is (physical, logical) order.
	if !(MakeTimestamp(10, 0xffff) < MakeTimestamp(11, 0) && MakeTimestamp(11, 0) < MakeTimestamp(11, 1)) {
		t.Fatalf("timestamps do not sort as (physical, logical)")
	}
}

func TestClockMonotonicUnderBackwardJumps(t *testing.T) {
	w := &fakeWall{now: t0}
	c := NewClock(w.read, time.Minute)
	jumps := []time.Duration{0, time.Millisecond, 0, -time.Hour, 0, 5 * time.Millisecond, -time.Second, 2 * time.Hour, -24 * time.Hour}
	prev := c.Now()
	for i, j := range jumps {
		w.now = w.now.Add(j)
		for range 3 {
			ts := c.Now()
			if ts <= prev {
				t.Fatalf("step %d (jump %v): %s not after %s", i, j, ts, prev)
			}
			prev = ts
		}
	}
	// After a jump back the clock counts logically on the highest physical
	// time it has seen; once the wall passes it, physical time resumes.
	w.now = t0.Add(3 * time.Hour)
	if ts := c.Now(); ts != MakeTimestamp(w.now.UnixMilli(), 0) {
		t.Fatalf("after the wall caught up: %s", ts)
	}
}

func TestClockLogicalOverflowCarries(t *testing.T) {
	w := &fakeWall{now: t0}
	c := NewClock(w.read, time.Minute)
	ms := t0.UnixMilli()
	if err := c.Update(MakeTimestamp(ms, 0xfffe)); err != nil {
		t.Fatal(err)
	}
	want := []Timestamp{MakeTimestamp(ms, 0xffff), MakeTimestamp(ms+1, 0), MakeTimestamp(ms+1, 1)}
	for _, w := range want {
		if got := c.Now(); got != w {
			t.Fatalf("Now %s, want %s", got, w)
		}
	}
}

func TestClockUpdate(t *testing.T) {
	w := &fakeWall{now: t0}
	skew := 5 * time.Minute
	c := NewClock(w.read, skew)
	local := c.Now()

	// A remote in the past is accepted and changes nothing.
	if err := c.Update(MakeTimestamp(t0.Add(-time.Hour).UnixMilli(), 7)); err != nil || c.Last() != local {
		t.Fatalf("past remote: err %v last %s", err, c.Last())
	}
	// A remote ahead, within the skew, is adopted.
	remote := MakeTimestamp(t0.Add(skew).UnixMilli(), 3) // exactly at the bound
	if err := c.Update(remote); err != nil {
		t.Fatalf("remote at the skew bound refused: %v", err)
	}
	if c.Last() != remote {
		t.Fatalf("Last %s, want adopted %s", c.Last(), remote)
	}
	if ts := c.Now(); ts <= remote {
		t.Fatalf("Now %s not after adopted %s", ts, remote)
	}

	// A remote beyond the skew is reported and not adopted.
	before := c.Last()
	far := MakeTimestamp(t0.Add(skew+time.Millisecond).UnixMilli(), 0)
	err := c.Update(far)
	var se *SkewError
	if !errors.As(err, &se) {
		t.Fatalf("far remote: %v, want *SkewError", err)
	}
	if se.Remote != far || !se.Wall.Equal(t0) || se.Max != skew {
		t.Fatalf("SkewError %+v", se)
	}
	if !strings.Contains(err.Error(), "ahead of local time") {
		t.Fatalf("error text %q", err)
	}
	if c.Last() != before {
		t.Fatalf("far remote adopted: Last %s", c.Last())
	}
	if ts := c.Now(); ts >= far {
		t.Fatalf("Now %s reached the refused remote %s", ts, far)
	}

	// Check reports the same without touching the clock; a later wall time
	// can make the same remote acceptable.
	if err := c.Check(far, t0); !errors.As(err, &se) {
		t.Fatalf("Check: %v", err)
	}
	if err := c.Check(far, t0.Add(time.Second)); err != nil {
		t.Fatalf("Check with a later wall: %v", err)
	}
	w.now = t0.Add(time.Second)
	if err := c.Update(far); err != nil || c.Last() != far {
		t.Fatalf("Update once within skew: %v, last %s", err, c.Last())
	}
}

func TestClockDeterministic(t *testing.T) {
	run := func(seed uint64) []Timestamp {
		rng := rand.New(rand.NewPCG(seed, 1))
		w := &fakeWall{now: t0}
		c := NewClock(w.read, time.Minute)
		var out []Timestamp
		for range 1000 {
			w.now = w.now.Add(time.Duration(rng.IntN(2000)-500) * time.Microsecond)
			if rng.IntN(10) == 0 {
				_ = c.Update(MakeTimestamp(w.now.UnixMilli()+int64(rng.IntN(120_000)-30_000), uint16(rng.Uint32())))
			}
			out = append(out, c.Now())
		}
		return out
	}
	seed := testSeed(t)
	a, b := run(seed), run(seed)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("reading %d differs: %s vs %s", i, a[i], b[i])
		}
		if i > 0 && a[i] <= a[i-1] {
			t.Fatalf("reading %d not increasing: %s after %s", i, a[i], a[i-1])
		}
	}
}

func TestClockConcurrentNowUnique(t *testing.T) {
	var ms atomic.Int64
	ms.Store(t0.UnixMilli())
	// A wall clock the goroutines step forwards and backwards.
	c := NewClock(func() time.Time { return time.UnixMilli(ms.Load()) }, time.Minute)
	const goroutines, each = 8, 2000
	results := make([][]Timestamp, goroutines)
	var wg gosync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if i%100 == 0 {
					ms.Add(int64(g%3) - 1)
				}
				results[g] = append(results[g], c.Now())
			}
		})
	}
	wg.Wait()
	seen := make(map[Timestamp]bool, goroutines*each)
	for g, rs := range results {
		for i, ts := range rs {
			if seen[ts] {
				t.Fatalf("duplicate reading %s", ts)
			}
			seen[ts] = true
			if i > 0 && ts <= rs[i-1] {
				t.Fatalf("goroutine %d: reading %s not after %s", g, ts, rs[i-1])
			}
		}
	}
}

func TestReplicaIDs(t *testing.T) {
	r := NewReplicaID()
	if r.IsZero() || r == NewReplicaID() {
		t.Fatalf("NewReplicaID gave %s twice or zero", r)
	}
	back, err := ParseReplicaID(r.String())
	if err != nil || back != r {
		t.Fatalf("ParseReplicaID(%s) = %s, %v", r, back, err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("g", 32), strings.Repeat("0", 31)} {
		if _, err := ParseReplicaID(bad); err == nil {
			t.Fatalf("ParseReplicaID(%q) accepted", bad)
		}
	}
}

func TestOpIDOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 2))
	rand16 := func() (r ReplicaID) {
		for i := range r {
			r[i] = byte(rng.IntN(3)) // few values, so ties happen
		}
		return r
	}
	for range 10000 {
		a := OpID{Time: Timestamp(rng.IntN(4)), Replica: rand16()}
		b := OpID{Time: Timestamp(rng.IntN(4)), Replica: rand16()}
		ab, bb := a.AppendBinary(nil), b.AppendBinary(nil)
		if got, want := bytes.Compare(ab, bb), a.Compare(b); got != want {
			t.Fatalf("binary order %d, Compare %d for %s %s", got, want, a, b)
		}
		if -a.Compare(b) != b.Compare(a) {
			t.Fatalf("Compare not antisymmetric for %s %s", a, b)
		}
		back, err := OpIDFromBinary(ab)
		if err != nil || back != a {
			t.Fatalf("OpIDFromBinary: %v %v", back, err)
		}
	}
	if _, err := OpIDFromBinary(make([]byte, 23)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short op id: %v", err)
	}
}

// TestClockReserve: Reserve(n) hands out n timestamps no other reading
// gets, from any goroutine, each after every earlier reading and update;
// Now is Reserve(1).
func TestClockReserve(t *testing.T) {
	var ms atomic.Int64
	ms.Store(t0.UnixMilli())
	c := NewClock(func() time.Time { return time.UnixMilli(ms.Load()) }, time.Minute)
	const goroutines, each = 6, 300
	results := make([][]Timestamp, goroutines)
	var wg gosync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if i%50 == 0 {
					ms.Add(int64(g%3) - 1)
				}
				n := 1 + (i+g)%31
				first := c.Reserve(n)
				for k := range n {
					results[g] = append(results[g], first+Timestamp(k))
				}
				if i%7 == 0 {
					_ = c.Update(first + Timestamp(n+3)) // a remote reading just ahead
				}
			}
		})
	}
	wg.Wait()
	seen := map[Timestamp]bool{}
	for g, rs := range results {
		for i, ts := range rs {
			if seen[ts] {
				t.Fatalf("timestamp %s handed out twice", ts)
			}
			seen[ts] = true
			if i > 0 && ts <= rs[i-1] {
				t.Fatalf("goroutine %d: %s not after %s", g, ts, rs[i-1])
			}
		}
	}
	last := c.Last()
	if r := c.Reserve(0); r != last+1 || c.Last() != r {
		t.Fatalf("Reserve(0) gave %s after %s, Last %s", r, last, c.Last())
	}
	ms.Add(10_000)
	if r := c.Reserve(5); r.Physical() != ms.Load() || r.Logical() != 0 || c.Last() != r+4 {
		t.Fatalf("after the wall moved on: %s, Last %s", r, c.Last())
	}
}
