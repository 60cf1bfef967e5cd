package sync

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// appendChange returns one change of n log appends to one field of one
// record, IDs in descending order when reverse (the worst order for an
// insert into a sorted list), made by device d.
func appendChange(d *device, n int, reverse bool) api.Change {
	ids := make([]crdt.OpID, n)
	for i := range ids {
		ids[i] = d.nextID()
	}
	ops := make([]crdt.Op, n)
	for i := range ops {
		id := ids[i]
		if reverse {
			id = ids[n-1-i]
		}
		ops[i] = crdt.Op{ID: id, Team: "wigan", Collection: "people", Record: "p1", Field: "case_notes",
			Kind: crdt.KindAppend, Value: crdt.MustValue("Phoned; no answer.")}
	}
	d.seq++
	return api.Change{Seq: d.seq, Ops: ops}
}

// allocatedBy returns the bytes allocated (by every goroutine) while fn runs.
func allocatedBy(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestPushAppendsCostNLogN is issue 9 item 2: one change appending N
// entries to one log field must cost O(N log N), not O(N²). It compares the
// bytes allocated by the push of 1,000 and of 4,000 appends (in descending
// ID order, the worst case for a sorted insert): linear or N log N work
// allocates about 4-5× more for 4× the entries, a quadratic merge about
// 16×. Allocation counts do not depend on machine load, so the bound is
// not a timer.
func TestPushAppendsCostNLogN(t *testing.T) {
	cost := func(n int) uint64 {
		e := openTest(t, Options{Wall: newFakeWall().Now})
		d := newDevice("ann", newFakeWall().Now, "wigan")
		ch := appendChange(d, n, true)
		var res []api.ChangeResult
		var err error
		b := allocatedBy(func() { res, err = e.Push(context.Background(), d.caller, []api.Change{ch}) })
		if err != nil || len(res) != 1 || res[0].Status != api.ChangeApplied || len(res[0].Ops) != 0 {
			t.Fatalf("push %d appends: %+v, %v", n, res, err)
		}
		rec, err := e.Record(context.Background(), Caller{User: "ann", Teams: []string{"wigan"}}, api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(rec.Field("case_notes").Entries); got != n {
			t.Fatalf("%d entries after pushing %d", got, n)
		}
		return b
	}
	small, large := cost(1000), cost(4000)
	ratio := float64(large) / float64(small)
	t.Logf("allocated %d B for 1,000 appends, %d B for 4,000: ratio %.1f", small, large, ratio)
	if ratio > 8 {
		t.Fatalf("4× the appends allocated %.1f× the bytes: merge is superlinear (quadratic is ~16×)", ratio)
	}
}

// BenchmarkPushAppends pushes one change of N log appends to one field of
// one record (descending IDs, the worst case), durably, to a fresh engine:
// the attack of issue 9 item 2 (8,000 took 1.3 s, 32,000 took 22.6 s).
func BenchmarkPushAppends(b *testing.B) {
	for _, n := range []int{1000, 10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				// Bounds raised so that all N merge (the default field
				// bound stops about 42,000 such entries with record_too_large).
				e := openTest(b, Options{Wall: newFakeWall().Now, Bounds: Bounds{MaxRecordBytes: 64 << 20, MaxFieldBytes: 64 << 20}})
				d := newDevice("ann", newFakeWall().Now, "wigan")
				ch := appendChange(d, n, true)
				b.StartTimer()
				res, err := e.Push(context.Background(), d.caller, []api.Change{ch})
				if err != nil || res[0].Status != api.ChangeApplied || len(res[0].Ops) != 0 {
					b.Fatalf("push: %v, %d results, status %v, %d ops not merged", err, len(res), res[0].Status, len(res[0].Ops))
				}
				b.StopTimer()
				e.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
		})
	}
}
