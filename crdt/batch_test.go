package crdt

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"testing"
)

// lawBatchEqualsApply: adding a replica's ops to a Batch and flushing gives
// the state of applying them one by one, and Add refuses exactly the ops
// Apply refuses, including ops of the wrong kind for their field (as the
// record and the ops before leave it) and ops for another record.
func lawBatchEqualsApply(t testing.TB, s *sim) error {
	r := s.reps[s.rng.IntN(len(s.reps))]
	rec := simRecords[s.rng.IntN(len(simRecords))]
	var ops []Op
	for _, op := range r.ops {
		if op.Record != rec {
			continue
		}
		ops = append(ops, op)
		switch s.rng.IntN(8) {
		case 0: // the same ID and field, another kind
			bad := op
			if bad.Kind == KindAppend {
				bad.Kind, bad.Pred = KindAdd, nil
			} else {
				bad.Kind, bad.Pred = KindAppend, nil
			}
			ops = append(ops, bad)
		case 1: // another record
			bad := op
			bad.Record = "elsewhere"
			ops = append(ops, bad)
		case 2: // a duplicate
			ops = append(ops, op)
		}
	}
	// Start from a state that already holds the first ops (a replica's
	// ops reach it in its order), so some of the batch are copies.
	start := NewRecord(simTeam, simColl, rec)
	for i := range s.rng.IntN(len(ops) + 1) {
		_ = start.Apply(&ops[i])
	}
	one, all := start.Clone(), start.Clone()
	b := NewBatch(all)
	for i := range ops {
		errOne, errAll := one.Apply(&ops[i]), b.Add(&ops[i])
		if (errOne == nil) != (errAll == nil) {
			return fmt.Errorf("op %d: Apply says %v, Batch.Add %v", i, errOne, errAll)
		}
	}
	b.Flush()
	if x, y := encode(t, one), encode(t, all); !bytes.Equal(x, y) {
		return fmt.Errorf("batch != one by one:\n%x\n%x", y, x)
	}
	if b.Len() != 0 {
		return fmt.Errorf("batch holds %d ops after Flush", b.Len())
	}
	return nil
}

func TestBatchEqualsApply(t *testing.T) {
	forCases(t, cases(3000), lawBatchEqualsApply)
}

// descendingAppends returns n appends to one log field, IDs descending.
func descendingAppends(n int) []Op {
	ops := make([]Op, n)
	for i := range ops {
		ops[i] = Op{ID: OpID{Time: MakeTimestamp(1_796_000_000_000+int64(n-i), 0), Replica: ann},
			Team: simTeam, Collection: simColl, Record: "p1", Field: "case_notes", Kind: KindAppend,
			Value: MustValue("Phoned; no answer.")}
	}
	return ops
}

func batchApply(r *Record, ops []Op) error {
	b := NewBatch(r)
	for i := range ops {
		if err := b.Add(&ops[i]); err != nil {
			return err
		}
	}
	b.Flush()
	return nil
}

func allocatedBy(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestBatchMergeCostNLogN is issue 9 item 2 at the crdt level: merging N
// entries into one field through a Batch allocates O(N), so 4× the entries
// allocate about 4× the bytes (a merge per op, quadratic, about 16×), onto
// an empty field and onto one already holding N entries. Allocated bytes do
// not depend on machine load.
func TestBatchMergeCostNLogN(t *testing.T) {
	cost := func(n int, prefilled bool) uint64 {
		r := NewRecord(simTeam, simColl, "p1")
		ops := descendingAppends(2 * n)
		if prefilled {
			if err := batchApply(r, ops[n:]); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		b := allocatedBy(func() { err = batchApply(r, ops[:n]) })
		if err != nil {
			t.Fatal(err)
		}
		if want := n + map[bool]int{true: n}[prefilled]; len(r.Field("case_notes").Entries) != want {
			t.Fatalf("%d entries, want %d", len(r.Field("case_notes").Entries), want)
		}
		return b
	}
	for _, prefilled := range []bool{false, true} {
		small, large := cost(2000, prefilled), cost(8000, prefilled)
		ratio := float64(large) / float64(small)
		t.Logf("prefilled %v: %d B for 2,000 entries, %d B for 8,000: ratio %.1f", prefilled, small, large, ratio)
		if ratio > 6 {
			t.Fatalf("prefilled %v: 4× the entries allocated %.1f× the bytes (quadratic is ~16×)", prefilled, ratio)
		}
	}
}

// TestApplyOwnAppendCostsNoRebuild: a replica appending its own newer
// entries to a long log does not rebuild the log per append (Record.Apply's
// in-place path): 1,000 appends to a 10,000-entry log allocate a few
// growths of the list, where a rebuild per append allocates about 400 MB.
func TestApplyOwnAppendCostsNoRebuild(t *testing.T) {
	r := NewRecord(simTeam, simColl, "p1")
	ops := descendingAppends(10_000)
	if err := batchApply(r, ops); err != nil {
		t.Fatal(err)
	}
	next := ops[0]
	b := allocatedBy(func() {
		for range 1000 {
			next.ID.Time += 1 << 16
			if err := r.Apply(&next); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Logf("1,000 appends to a 10,000-entry log allocated %d bytes", b)
	if b > 8<<20 {
		t.Fatalf("1,000 appends to a 10,000-entry log allocated %d bytes: the log is rebuilt per append", b)
	}
	if n := len(r.Field("case_notes").Entries); n != 11_000 {
		t.Fatalf("%d entries, want 11,000", n)
	}
}

// BenchmarkMergeEntries merges N log entries into one field in one batch
// (the server's and the SDK's path for one change or pulled page), IDs in
// descending order, the worst case for a sorted insert.
func BenchmarkMergeEntries(b *testing.B) {
	for _, n := range []int{1000, 10_000, 100_000} {
		ops := descendingAppends(n)
		b.Run(fmt.Sprintf("batch/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := batchApply(NewRecord(simTeam, simColl, "p1"), ops); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
		})
	}
	// The old path, one merge per op, for comparison (100,000 would take
	// minutes).
	for _, n := range []int{1000, 10_000} {
		ops := descendingAppends(n)
		b.Run(fmt.Sprintf("one-by-one/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := newRefRecord() // the layout 1 merge, kept as the reference model
				for i := range ops {
					if err := r.Apply(&ops[i]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
		})
	}
}

// TestApplyLeavesOpAlone: Apply and Batch never reorder or compact the
// caller's pred (the engine logs the op as the device sent it).
func TestApplyLeavesOpAlone(t *testing.T) {
	r := NewRecord(simTeam, simColl, "p1")
	a, b := r.Write(at(1000, ann), "f", MustValue(1)), r.Write(at(1001, bea), "f", MustValue(2))
	mustApply(t, r, a, b)
	op := r.Write(at(2000, coord), "f", MustValue(3))
	op.Pred = []OpID{b.ID, a.ID, b.ID}
	want := slices.Clone(op.Pred)
	c := r.Clone()
	if err := c.Apply(&op); err != nil {
		t.Fatal(err)
	}
	bt := NewBatch(r)
	if err := bt.Add(&op); err != nil {
		t.Fatal(err)
	}
	bt.Flush()
	if !slices.Equal(op.Pred, want) {
		t.Fatalf("pred changed to %v", op.Pred)
	}
	if len(c.Field("f").Entries) != 1 || !bytes.Equal(encode(t, c), encode(t, r)) {
		t.Fatalf("write naming both did not settle: %+v", c.Field("f"))
	}
}
