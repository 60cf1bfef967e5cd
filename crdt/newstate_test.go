package crdt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// newRecordOps returns random ops in the shape of a create: one replica,
// increasing times (with gaps), fields in name order, a register field one
// write, a set or log field one or more adds or appends.
func newRecordOps(rng *rand.Rand, rep ReplicaID) []Op {
	names := map[string]bool{}
	for range 1 + rng.IntN(40) {
		n := fmt.Sprintf("f%d", rng.IntN(60))
		if rng.IntN(10) == 0 {
			n = strings.Repeat("long", 1+rng.IntN(12)) + n // past 8 bytes and 32 bytes
		}
		names[n] = true
	}
	if rng.IntN(20) == 0 {
		names[DeletedField] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)
	t := Timestamp(1 + rng.Uint64N(1<<50))
	var ops []Op
	for _, n := range sorted {
		kind := []Kind{KindWrite, KindAdd, KindAppend}[rng.IntN(3)]
		count := 1
		if n == DeletedField {
			kind = KindWrite
		} else if kind != KindWrite {
			count += rng.IntN(4)
		}
		for range count {
			t += Timestamp(1 + rng.IntN(3)*rng.IntN(300))
			var v any
			switch rng.IntN(5) {
			case 0:
				v = rng.IntN(1 << 20)
			case 1:
				v = strings.Repeat("x", rng.IntN(300))
			case 2:
				v = nil
			case 3:
				v = rng.IntN(2) == 0
			default:
				v = fmt.Sprintf("%06d%s", rng.IntN(1e6), "vvvvvvvvvvvvvv")
			}
			ops = append(ops, Op{ID: OpID{Time: t, Replica: rep}, Team: "wigan", Collection: "people", Record: "r1",
				Field: n, Kind: kind, Value: MustValue(v)})
		}
	}
	return ops
}

// built is the state encoding of ops applied to a new record, the way
// AppendNewRecord must match: a Batch, as a device's create applies them.
func built(t *testing.T, ops []Op) []byte {
	t.Helper()
	rec := NewRecord("wigan", "people", "r1")
	b := NewBatch(rec)
	for i := range ops {
		if err := b.Add(&ops[i]); err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
	b.Flush()
	out, err := MarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	// Applied one by one the ops leave the same state.
	one := NewRecord("wigan", "people", "r1")
	for i := range ops {
		if err := one.Apply(&ops[i]); err != nil {
			t.Fatal(err)
		}
	}
	if x, _ := MarshalRecord(one); !bytes.Equal(x, out) {
		t.Fatalf("batch and one by one differ")
	}
	return out
}

func TestAppendNewRecordMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 3))
	rep := NewReplicaID()
	for i := range 3000 {
		ops := newRecordOps(rng, rep)
		for j := range ops {
			if err := ops[j].Validate(); err != nil {
				t.Fatalf("case %d: generated an invalid op: %v", i, err)
			}
		}
		want := built(t, ops)
		prefix := []byte{0xde, 0xad}
		got, ok := AppendNewRecord(slices.Clone(prefix), "wigan", "people", "r1", ops)
		if !ok {
			t.Fatalf("case %d: refused a create's ops", i)
		}
		if !bytes.Equal(got[:2], prefix) || !bytes.Equal(got[2:], want) {
			t.Fatalf("case %d (%d ops):\n got %x\nwant %x", i, len(ops), got[2:], want)
		}
		if _, err := UnmarshalRecord(got[2:]); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if got, _ := AppendNewRecord(nil, "wigan", "people", "r1", ops); !bytes.Equal(got, want) {
			t.Fatalf("case %d: with a nil dst", i)
		}
	}
}

// TestAppendNewRecordRefuses: ops not in a create's shape are left to the
// caller, dst unchanged.
func TestAppendNewRecordRefuses(t *testing.T) {
	rep := NewReplicaID()
	op := func(tm Timestamp, field string, kind Kind) Op {
		return Op{ID: OpID{Time: tm, Replica: rep}, Team: "wigan", Collection: "people", Record: "r1",
			Field: field, Kind: kind, Value: MustValue("v")}
	}
	other := op(3, "b", KindWrite)
	other.ID.Replica = NewReplicaID()
	withPred := op(3, "b", KindWrite)
	withPred.Pred = []OpID{{Time: 1, Replica: rep}}
	elsewhere := op(3, "b", KindWrite)
	elsewhere.Record = "r2"
	cases := map[string][]Op{
		"none":               nil,
		"two replicas":       {op(1, "a", KindWrite), other},
		"a pred":             {op(1, "a", KindWrite), withPred},
		"a remove":           {op(1, "a", KindAdd), op(2, "a", KindRemove)},
		"another record":     {op(1, "a", KindWrite), elsewhere},
		"times not rising":   {op(2, "a", KindWrite), op(2, "b", KindWrite)},
		"names not sorted":   {op(1, "b", KindWrite), op(2, "a", KindWrite)},
		"a field split":      {op(1, "a", KindAdd), op(2, "b", KindWrite), op(3, "a", KindAdd)},
		"kinds of a field":   {op(1, "a", KindAdd), op(2, "a", KindAppend)},
		"delete not a write": {op(1, DeletedField, KindAdd)},
	}
	for name, ops := range cases {
		dst := []byte{1, 2, 3}
		got, ok := AppendNewRecord(dst, "wigan", "people", "r1", ops)
		if ok || !bytes.Equal(got, []byte{1, 2, 3}) {
			t.Errorf("%s: ok %v, dst %x", name, ok, got)
		}
	}
}

func BenchmarkAppendNewRecord(b *testing.B) {
	rep := NewReplicaID()
	var ops []Op
	for k := range 30 {
		ops = append(ops, Op{ID: OpID{Time: Timestamp(1000 + k), Replica: rep}, Team: "wigan", Collection: "people", Record: "r1",
			Field: fmt.Sprintf("f%02d", k), Kind: KindWrite, Value: MustValue("000001vvvvvvvvvvvvvv")})
	}
	b.Run("append", func(b *testing.B) {
		buf := make([]byte, 0, 2048)
		for b.Loop() {
			buf, _ = AppendNewRecord(buf[:0], "wigan", "people", "r1", ops)
		}
	})
	b.Run("build+marshal", func(b *testing.B) {
		for b.Loop() {
			rec := NewRecord("wigan", "people", "r1")
			bt := NewBatch(rec)
			for i := range ops {
				_ = bt.Add(&ops[i])
			}
			bt.Flush()
			_, _ = MarshalRecord(rec)
		}
	})
}

func TestAppendStringValue(t *testing.T) {
	for _, n := range []int{0, 1, 31, 32, 255, 256, 65535, 65536, 70000} {
		s := strings.Repeat("é", n/2) + strings.Repeat("x", n%2)
		want, err := EncodeValue(s)
		if err != nil {
			t.Fatal(err)
		}
		got := AppendStringValue([]byte{7}, s)
		if got[0] != 7 || !bytes.Equal(got[1:], want) {
			t.Fatalf("%d bytes: got %x, want %x", len(s), got[1:min(len(got), 8)], want[:min(len(want), 7)])
		}
	}
}
