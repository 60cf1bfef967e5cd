package crdt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
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
	// Two collections empty the pools (a Batch's queues, applyOps's
	// scratch), so that every size starts from nothing.
	runtime.GC()
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

// randomBatch returns ops for one record as a first change might carry
// them: register writes, set adds and removes, log appends, deletes and
// restores on a few fields, from one to three replicas; usually in
// strictly increasing ID order without preds (the shape Flush builds
// directly, see applyNew), and otherwise with preds naming earlier or
// unseen IDs, duplicates (some with another value), IDs out of order and
// ops of the wrong kind for their field.
func randomBatch(rng *rand.Rand) []Op {
	reps := []ReplicaID{ann, bea, coord}[:1+rng.IntN(3)]
	fields := []struct {
		name  string
		kinds []Kind
	}{
		{"mobility", []Kind{KindWrite}}, {"phone", []Kind{KindWrite}}, {"f00", []Kind{KindWrite}},
		{"needs", []Kind{KindAdd, KindAdd, KindRemove}}, {"notes", []Kind{KindAppend}},
		{DeletedField, []Kind{KindWrite}},
	}
	shaped := rng.IntN(3) > 0 // no preds, IDs increasing
	ms := int64(1_796_000_000_000)
	var ops []Op
	var ids []OpID
	for range 1 + rng.IntN(40) {
		ms += int64(rng.IntN(3))
		id := OpID{Time: MakeTimestamp(ms, uint16(rng.IntN(2))), Replica: reps[rng.IntN(len(reps))]}
		if len(ids) > 0 && id.Compare(ids[len(ids)-1]) <= 0 {
			id.Time = ids[len(ids)-1].Time + 1 // one ID, one op (copies aside)
		}
		f := fields[rng.IntN(len(fields))]
		op := Op{ID: id, Team: simTeam, Collection: simColl, Record: "p1", Field: f.name, Kind: f.kinds[rng.IntN(len(f.kinds))]}
		switch {
		case f.name == DeletedField:
			op.Value = MustValue(rng.IntN(2) == 0)
		case op.Kind == KindRemove:
			op.Value = MustValue("money")
		default:
			op.Value = MustValue(simValues[rng.IntN(len(simValues))])
		}
		if rng.IntN(12) == 0 { // the wrong kind: refused by Add
			op.Kind = KindAppend
		}
		if !shaped {
			for range rng.IntN(3) {
				p := OpID{Time: id.Time - Timestamp(1+rng.IntN(4)), Replica: reps[rng.IntN(len(reps))]}
				if len(ids) > 0 && rng.IntN(2) == 0 {
					p = ids[rng.IntN(len(ids))]
				}
				if p.Compare(id) < 0 {
					op.Pred = append(op.Pred, p)
				}
			}
		}
		ops = append(ops, op)
		ids = append(ids, id)
		if !shaped && rng.IntN(10) == 0 { // a copy, sometimes with another value
			dup := op
			if rng.IntN(2) == 0 {
				dup.Value = MustValue("other")
			}
			ops = append(ops, dup)
		}
	}
	if !shaped && rng.IntN(2) == 0 {
		rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	}
	return ops
}

// TestBatchNewRecordPath: for a record's first change, Flush's direct
// build (applyNew) leaves exactly the state of the general merge
// (applyOps), the same Go values and the same bytes, and that of applying
// the ops one by one; on random batches of every field type, with
// duplicates, deletes, preds and refused ops (which take the general path).
func TestBatchNewRecordPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 17))
	direct := 0
	n := cases(5000)
	for i := range n {
		ops := randomBatch(rng)
		fast, general, one := NewRecord(simTeam, simColl, "p1"), NewRecord(simTeam, simColl, "p1"), NewRecord(simTeam, simColl, "p1")
		bf, bg := NewBatch(fast), NewBatch(general)
		var sorted []Op // the ops Add accepted, in ID order, for Apply
		for j := range ops {
			ef, eg := bf.Add(&ops[j]), bg.Add(&ops[j])
			if (ef == nil) != (eg == nil) {
				t.Fatalf("case %d op %d: Add says %v, then %v", i, j, ef, eg)
			}
			if ef == nil {
				sorted = append(sorted, ops[j])
			}
		}
		if !bf.outOfOrder && !bf.preds && len(bf.ops) > 1 {
			direct++
		}
		bf.Flush()
		if len(bg.ops) > 0 {
			general.applyOps(bg.ops, bg.fields, !bg.outOfOrder)
		}
		slices.SortStableFunc(sorted, func(a, b Op) int { return a.ID.Compare(b.ID) })
		for j := range sorted {
			if err := one.Apply(&sorted[j]); err != nil {
				t.Fatalf("case %d: apply %+v: %v", i, sorted[j], err)
			}
		}
		if !reflect.DeepEqual(fast, general) {
			t.Fatalf("case %d: direct build %+v, general merge %+v (ops %+v)", i, fast, general, ops)
		}
		if x, y := encode(t, fast), encode(t, one); !bytes.Equal(x, y) {
			t.Fatalf("case %d: batch != one by one:\n%x\n%x (ops %+v)", i, x, y, ops)
		}
		if err := fast.Validate(); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
	}
	t.Logf("%d of %d batches took the direct build", direct, n)
	if direct < n/3 {
		t.Fatalf("only %d of %d batches took the direct build", direct, n)
	}
}

// TestBatchReuse: a Batch flushed and filled again, or Reset to another
// record, merges each round as a fresh batch does (its queues come back
// from the pool between rounds), and Reset drops what was queued.
func TestBatchReuse(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 23))
	reused := NewBatch(NewRecord(simTeam, simColl, "p1"))
	for i := range 300 {
		ops := randomBatch(rng)
		want, got := NewRecord(simTeam, simColl, "p1"), NewRecord(simTeam, simColl, "p1")
		fresh := NewBatch(want)
		if i%3 == 0 {
			reused.Reset(NewRecord(simTeam, simColl, "p1"))
			_ = reused.Add(&ops[0]) // dropped by the Reset below
		}
		reused.Reset(got)
		// Two rounds into the same record: the first half, then the rest.
		half := len(ops) / 2
		for _, part := range [][]Op{ops[:half], ops[half:]} {
			for j := range part {
				ef, er := fresh.Add(&part[j]), reused.Add(&part[j])
				if (ef == nil) != (er == nil) {
					t.Fatalf("case %d: Add says %v and %v", i, ef, er)
				}
			}
			fresh.Flush()
			reused.Flush()
			fresh = NewBatch(want)
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("case %d: reused batch %+v, fresh %+v", i, got, want)
		}
	}
}
