package crdt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// appendRecordReference is AppendRecord as it was before issue 17's
// third pass (a pass for the replica table, one for the size, a sorted
// copy of the field names): the byte-identity tests hold AppendRecord and
// MarshalRecord to it.
func appendRecordReference(dst []byte, r *Record) []byte {
	var table []ReplicaID
	var base Timestamp
	any := false
	add := func(id OpID) {
		if !any || id.Time < base {
			base, any = id.Time, true
		}
		table = append(table, id.Replica)
	}
	for _, c := range r.Clock {
		add(OpID{Time: c.Time, Replica: c.Replica})
	}
	for _, f := range r.Fields {
		if f == nil {
			continue
		}
		for i := range f.Entries {
			add(f.Entries[i].ID)
		}
		for _, p := range f.Pending {
			add(p)
		}
	}
	for _, p := range r.DeleteSeen {
		add(p)
	}
	for _, p := range r.Skipped {
		add(p)
	}
	cmp := func(a, b ReplicaID) int { return bytes.Compare(a[:], b[:]) }
	slices.SortFunc(table, cmp)
	table = slices.Compact(table)
	index := func(rep ReplicaID) uint64 {
		i, _ := slices.BinarySearchFunc(table, rep, cmp)
		return uint64(i)
	}
	ids := func(b []byte, ids []OpID) []byte {
		b = appendArrayLen(b, 2*len(ids))
		prev := base
		for _, id := range ids {
			b = appendUint(appendUint(b, index(id.Replica)), uint64(id.Time-prev))
			prev = id.Time
		}
		return b
	}
	n := 8
	if len(r.DeleteSeen) > 0 {
		n++
	}
	if len(r.Skipped) > 0 {
		n++
	}
	b := appendMapLen(dst, n)
	b = appendStr(appendStr(b, "c"), r.Collection)
	b = appendStr(appendStr(b, "r"), r.ID)
	b = appendStr(appendStr(b, "t"), r.Team)
	b = appendUint(appendStr(b, "z"), StateVersion)
	b = appendStr(b, "w")
	b = appendBinLen(b, len(table)*len(ReplicaID{}))
	for _, rep := range table {
		b = append(b, rep[:]...)
	}
	b = appendUint(appendStr(b, "b"), uint64(base))
	b = appendArrayLen(appendStr(b, "v"), 2*len(r.Clock))
	for _, c := range r.Clock {
		b = appendUint(appendUint(b, index(c.Replica)), uint64(c.Time-base))
	}
	b = appendStr(b, "f")
	b = appendMapLen(b, len(r.Fields))
	names := make([]string, 0, len(r.Fields))
	for name := range r.Fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b = appendStr(b, name)
		f := r.Fields[name]
		if f == nil {
			b = append(b, 0xc0)
			continue
		}
		m := 2
		if len(f.Pending) > 0 {
			m = 3
		}
		b = appendMapLen(b, m)
		b = appendUint(appendStr(b, "y"), uint64(f.Type))
		b = appendArrayLen(appendStr(b, "e"), 3*len(f.Entries))
		prev := base
		for i := range f.Entries {
			e := &f.Entries[i]
			b = appendUint(appendUint(b, index(e.ID.Replica)), uint64(e.ID.Time-prev))
			prev = e.ID.Time
			if len(e.Value) == 0 {
				b = append(b, 0xc0)
			} else {
				b = append(b, e.Value...)
			}
		}
		if m == 3 {
			b = ids(appendStr(b, "p"), f.Pending)
		}
	}
	if len(r.DeleteSeen) > 0 {
		b = ids(appendStr(b, "d"), r.DeleteSeen)
	}
	if len(r.Skipped) > 0 {
		b = ids(appendStr(b, "s"), r.Skipped)
	}
	return b
}

// manyWriters returns a record written by n replicas, each entry's
// replica in a random order, over fields fields: tables beyond what
// AppendRecord keeps on its stack, and replicas seen out of order.
func manyWriters(rng *rand.Rand, n, fields int) *Record {
	r := NewRecord("wigan", "people", "many")
	reps := make([]ReplicaID, n)
	for i := range reps {
		reps[i] = ReplicaID{byte(rng.IntN(256)) | 1, byte(i), byte(rng.IntN(256))}
	}
	ms := int64(1_796_000_000_000)
	for i := range fields * 2 {
		ms += 1 + int64(rng.IntN(1000))
		op := r.Write(OpID{Time: MakeTimestamp(ms, 0), Replica: reps[rng.IntN(n)]}, fmt.Sprintf("field_%03d", rng.IntN(fields)), MustValue(i))
		if rng.IntN(3) == 0 {
			op.Pred = nil // concurrent: a conflict
		}
		if err := r.Apply(&op); err != nil {
			panic(err)
		}
	}
	if rng.IntN(2) == 0 {
		r.Skip(OpID{Time: MakeTimestamp(ms-5, 0), Replica: reps[0]})
	}
	if rng.IntN(2) == 0 {
		op := r.Delete(OpID{Time: MakeTimestamp(ms+1, 0), Replica: reps[1%n]})
		_ = r.Apply(&op)
	}
	return r
}

// TestAppendRecordBytesUnchanged: MarshalRecord and AppendRecord write
// exactly the bytes of the encoder before issue 17's third pass, for
// random simulated states, the benchmark records, states of many writers
// and many fields, and a record with a nil field.
func TestAppendRecordBytesUnchanged(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 3))
	var recs []*Record
	recs = append(recs, seedRecords(t)...)
	recs = append(recs, benchRecord(1), benchRecord(30), benchRecord(200), manyWriters(rng, 3, 5))
	for range 50 {
		recs = append(recs, manyWriters(rng, 1+rng.IntN(20), 1+rng.IntN(80)))
	}
	for range cases(300) {
		s := newSim(rng, 2+rng.IntN(3))
		s.run(t, 30+rng.IntN(60))
		for _, r := range s.reps {
			for _, id := range simRecords {
				recs = append(recs, r.recs[id])
			}
		}
	}
	withNil := benchRecord(3)
	withNil.Fields["nothing"] = nil
	recs = append(recs, withNil)
	// Names that share their first 8 bytes, hold NULs, or prefix others.
	odd := NewRecord("wigan", "people", "odd")
	for i, name := range []string{"a", "a\x00", "a\x00b", "ab", "\x00", "zzzzzzzzz1", "zzzzzzzzz0", "zzzzzzzz", "zzzzzzz\xff", "\xff\xff"} {
		op := odd.Write(at(int64(1000+i), ann), name, MustValue(i))
		if err := odd.Apply(&op); err != nil {
			t.Fatal(err)
		}
	}
	recs = append(recs, odd)
	for i, r := range recs {
		want := appendRecordReference(nil, r)
		got, err := MarshalRecord(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("record %d: MarshalRecord\n%x, want\n%x (%v)", i, got, want, err)
		}
		prefix := []byte{0x01, 0x02}
		if got := AppendRecord(prefix, r); !bytes.Equal(got[2:], want) || got[0] != 1 {
			t.Fatalf("record %d: AppendRecord differs", i)
		}
	}
}

// appendOpReference is AppendOp as it was before issue 17's third pass,
// every key through appendStr.
func appendOpReference(dst []byte, op *Op) []byte {
	n := 6
	if len(op.Value) > 0 {
		n++
	}
	if len(op.Pred) > 0 {
		n++
	}
	b := appendMapLen(dst, n)
	b = appendStr(b, "i")
	b = appendID(b, op.ID)
	b = appendStr(appendStr(b, "t"), op.Team)
	b = appendStr(appendStr(b, "c"), op.Collection)
	b = appendStr(appendStr(b, "r"), op.Record)
	b = appendStr(appendStr(b, "f"), op.Field)
	b = appendUint(appendStr(b, "k"), uint64(op.Kind))
	if len(op.Value) > 0 {
		b = append(appendStr(b, "v"), op.Value...)
	}
	if len(op.Pred) > 0 {
		b = appendIDs(appendStr(b, "p"), op.Pred)
	}
	return b
}

// TestAppendOpBytesUnchanged: AppendOp, MarshalOp and NewOpsBytes write
// exactly the bytes of the encoder before issue 17's third pass, for ops
// of every kind with strings of every length form, with and without a
// value and preds.
func TestAppendOpBytesUnchanged(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 5))
	str := func() string {
		n := []int{0, 1, 5, 31, 32, 255, 256, 65535, 65536}[rng.IntN(9)]
		if rng.IntN(3) > 0 {
			n = rng.IntN(40)
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a' + byte(rng.IntN(26))
		}
		return string(b)
	}
	ops := append(seedOps(), benchOps(benchRecord(20), 30)...)
	push, _ := pushOps(1_796_000_000_000)
	ops = append(ops, push[:60]...)
	for range 300 {
		op := Op{ID: OpID{Time: Timestamp(rng.Uint64()), Replica: ReplicaID{byte(rng.IntN(256))}},
			Team: str(), Collection: str(), Record: str(), Field: str(), Kind: Kind(rng.IntN(300))}
		if rng.IntN(4) > 0 {
			op.Value = MustValue(str())
		}
		for range []int{0, 0, 1, 3, 16, 70}[rng.IntN(6)] {
			op.Pred = append(op.Pred, OpID{Time: Timestamp(rng.Uint64()), Replica: ReplicaID{1, byte(rng.IntN(256))}})
		}
		ops = append(ops, op)
	}
	for i := range ops {
		want := appendOpReference(nil, &ops[i])
		if got, _ := MarshalOp(&ops[i]); !bytes.Equal(got, want) {
			t.Fatalf("op %d: MarshalOp\n%x, want\n%x", i, got, want)
		}
		if got := AppendOp([]byte{9}, &ops[i]); !bytes.Equal(got[1:], want) {
			t.Fatalf("op %d: AppendOp differs", i)
		}
	}
	want := appendArrayLen(nil, len(ops))
	for i := range ops {
		want = appendOpReference(want, &ops[i])
	}
	if got := NewOpsBytes(ops); !bytes.Equal(got, want) {
		t.Fatalf("NewOpsBytes differs")
	}
}
