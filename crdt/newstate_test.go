package crdt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestAppendNewStateMatches: on random op lists, some of a record's first
// change's shape and most a little off it (a pred, a remove, a delete, a
// field twice, IDs out of order, another record), AppendNewState takes
// exactly the lists of that shape, and for those appends exactly the
// bytes MarshalRecord gives for a blank record the ops are applied to in
// a Batch, after whatever dst held; for the others it leaves dst as it
// was.
func TestAppendNewStateMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 17))
	reps := []ReplicaID{NewReplicaID(), NewReplicaID(), NewReplicaID()}
	names := []string{"a", "b", "f00", "f01", "f02", "f10", "given_name", "given_name_2", "given_nam", "aaaaaaaa", "aaaaaaaab", "aaaaaaaa\x00",
		strings.Repeat("long", 12), "z", "Z", "_x"}
	taken := 0
	for n := range cases(3000) {
		k := 1 + rng.IntN(12)
		if n%20 == 0 {
			k = 40 + rng.IntN(60) // past the stack buffer of the field order
		}
		nRep := 1
		if rng.IntN(5) == 0 {
			nRep = 1 + rng.IntN(len(reps))
		}
		spoil := rng.IntN(3) == 0
		t0 := Timestamp(1_700_000_000_000<<16 + rng.Uint64N(1<<20))
		var ops []Op
		perm := rng.Perm(len(names))
		sorted := rng.IntN(2) == 0
		for i := range k {
			t0 += Timestamp(1 + rng.IntN(3))
			if rng.IntN(4) == 0 {
				t0-- // the same time on another replica: the replica orders them
			}
			field := fmt.Sprintf("f%03d", i)
			if !sorted {
				field = fmt.Sprintf("g%03d", k-i)
			}
			if i < len(perm) && rng.IntN(3) == 0 {
				field = names[perm[i]]
			}
			kind := []Kind{KindWrite, KindWrite, KindWrite, KindAdd, KindAppend}[rng.IntN(5)]
			v := MustValue(rng.IntN(1000))
			if rng.IntN(10) == 0 {
				v = MustValue(strings.Repeat("v", rng.IntN(300)))
			}
			op := Op{ID: OpID{Time: t0, Replica: reps[rng.IntN(nRep)]}, Team: "t", Collection: "c", Record: "r1", Field: field, Kind: kind, Value: v}
			ops = append(ops, op)
		}
		if spoil {
			i := rng.IntN(k)
			switch rng.IntN(7) {
			case 0:
				if i > 0 && ops[i-1].ID.Compare(ops[i].ID) < 0 {
					ops[i].Pred = []OpID{ops[i-1].ID}
				}
			case 1:
				ops[i].Kind = KindRemove
			case 2:
				ops[i].Field, ops[i].Kind, ops[i].Value = DeletedField, KindWrite, MustValue(rng.IntN(2) == 0)
			case 3:
				ops[i].Field = ops[rng.IntN(k)].Field
			case 4:
				ops[i].ID = ops[rng.IntN(k)].ID
				ops[i].Pred = nil
			case 5:
				ops[i].Record = "r2"
			case 6:
				ops[i].ID.Time -= Timestamp(rng.IntN(4))
			}
		}
		for i := range ops {
			if err := ops[i].Validate(); err != nil {
				t.Fatalf("case %d: the test made an invalid op: %v", n, err)
			}
		}
		wantOK := newStateShape(ops)
		prefix := []byte{0xde, 0xad, byte(n)}
		got, ok := AppendNewState(bytes.Clone(prefix), ops)
		if ok != wantOK {
			t.Fatalf("case %d: AppendNewState takes %v, want %v, for %+v", n, ok, wantOK, ops)
		}
		if !ok {
			if !bytes.Equal(got, prefix) {
				t.Fatalf("case %d: refused, but dst changed", n)
			}
			continue
		}
		taken++
		rec := NewRecord(ops[0].Team, ops[0].Collection, ops[0].Record)
		b := NewBatch(rec)
		for i := range ops {
			if err := b.Add(&ops[i]); err != nil {
				t.Fatalf("case %d: a list AppendNewState takes is refused by Batch.Add: %v", n, err)
			}
		}
		b.Flush()
		want, _ := MarshalRecord(rec)
		if !bytes.Equal(got[:len(prefix)], prefix) || !bytes.Equal(got[len(prefix):], want) {
			t.Fatalf("case %d: bytes differ\n got %x\nwant %x", n, got[len(prefix):], want)
		}
		if len(rec.Conflicts()) > 0 || rec.Deleted() {
			t.Fatalf("case %d: a state of that shape is in conflict or deleted", n)
		}
		back, err := UnmarshalRecord(got[len(prefix):])
		if err != nil {
			t.Fatalf("case %d: %v", n, err)
		}
		if again, _ := MarshalRecord(back); !bytes.Equal(again, want) {
			t.Fatalf("case %d: decoded and encoded again, the bytes differ", n)
		}
	}
	if taken < cases(3000)/4 {
		t.Errorf("only %d lists of the shape taken", taken)
	}
}

// newStateShape is AppendNewState's condition, written plainly.
func newStateShape(ops []Op) bool {
	if len(ops) == 0 {
		return false
	}
	seen := map[string]bool{}
	for i, op := range ops {
		switch {
		case op.Kind == KindRemove, len(op.Pred) > 0, op.Field == DeletedField, seen[op.Field],
			op.Team != ops[0].Team, op.Collection != ops[0].Collection, op.Record != ops[0].Record,
			i > 0 && ops[i-1].ID.Compare(op.ID) >= 0:
			return false
		}
		seen[op.Field] = true
	}
	return true
}

// newRecordOps is a new record's first change: n writes of 18-byte
// values to fields f00, f01, ...
func newRecordOps(n int) []Op {
	ops := make([]Op, n)
	for i := range ops {
		ops[i] = Op{ID: OpID{Time: MakeTimestamp(1_796_000_000_000, 0) + Timestamp(i), Replica: ann}, Team: "wigan", Collection: "bench_rows",
			Record: "row-1-2-3", Field: fmt.Sprintf("f%02d", i), Kind: KindWrite, Value: MustValue("000000000000000001")}
	}
	return ops
}

// BenchmarkNewRecordState is a new record's 30 writes made into its
// state's encoding: straight from the ops, and by a Batch on a blank
// record and MarshalRecord.
func BenchmarkNewRecordState(b *testing.B) {
	ops := newRecordOps(30)
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := AppendNewState(nil, ops); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("append-reused", func(b *testing.B) { // into a buffer big enough: the encoding alone
		b.ReportAllocs()
		buf := make([]byte, 0, 4096)
		for b.Loop() {
			if _, ok := AppendNewState(buf[:0], ops); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("batch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := NewRecord("wigan", "bench_rows", "row-1-2-3")
			bt := NewBatch(r)
			for i := range ops {
				if err := bt.Add(&ops[i]); err != nil {
					b.Fatal(err)
				}
			}
			bt.Flush()
			if _, err := MarshalRecord(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzAppendNewState: for any op list (decoded from the fuzzer's bytes as
// an op-list encoding, kept if every op passes Validate), AppendNewState
// takes it exactly when it has the first-change shape, and then writes
// MarshalRecord of a blank record a Batch applied it to.
func FuzzAppendNewState(f *testing.F) {
	f.Add([]byte(NewOpsBytes(newRecordOps(5))))
	two := newRecordOps(3)
	two[2].Field = two[0].Field
	f.Add([]byte(NewOpsBytes(two)))
	f.Fuzz(func(t *testing.T, b []byte) {
		ops, err := OpsBytes(b).Ops()
		if err != nil || len(ops) == 0 || len(ops) > 200 {
			return
		}
		for i := range ops {
			if ops[i].Validate() != nil {
				return
			}
		}
		got, ok := AppendNewState(nil, ops)
		if want := newStateShape(ops); ok != want {
			t.Fatalf("takes %v, want %v", ok, want)
		}
		if !ok {
			return
		}
		rec := NewRecord(ops[0].Team, ops[0].Collection, ops[0].Record)
		bt := NewBatch(rec)
		for i := range ops {
			if err := bt.Add(&ops[i]); err != nil {
				t.Fatalf("Batch.Add refuses op %d of a list AppendNewState takes: %v", i, err)
			}
		}
		bt.Flush()
		if want, _ := MarshalRecord(rec); !bytes.Equal(got, want) {
			t.Fatalf("bytes differ\n got %x\nwant %x", got, want)
		}
	})
}
