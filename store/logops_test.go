package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
)

// opsFromSeed builds a list of ops from fuzz bytes: runs of one record,
// a few replicas, times going up and down, values, preds and names of
// every length class the packed form distinguishes.
func opsFromSeed(seed []byte) []crdt.Op {
	next := func() byte {
		if len(seed) == 0 {
			return 0
		}
		c := seed[0]
		seed = seed[1:]
		return c
	}
	reps := []crdt.ReplicaID{crdt.NewReplicaID(), crdt.NewReplicaID(), {}}
	var ops []crdt.Op
	var t crdt.Timestamp = 1 << 40
	team, coll, rec := "wigan", "people", "p0"
	for len(seed) > 0 && len(ops) < 300 {
		c := next()
		if c&1 != 0 {
			rec = fmt.Sprint("p", next())
		}
		if c&2 != 0 {
			coll = string(bytes.Repeat([]byte{'c'}, int(next())))
		}
		if c&4 != 0 {
			team = fmt.Sprint("t", next()%3)
		}
		switch d := int64(int8(next())); {
		case c&8 != 0:
			t = crdt.Timestamp(binary.BigEndian.Uint64(append(bytes.Repeat([]byte{next()}, 7), next())))
		default:
			t += crdt.Timestamp(d)
		}
		op := crdt.Op{
			ID:   crdt.OpID{Time: t, Replica: reps[int(next())%len(reps)]},
			Team: team, Collection: coll, Record: rec, Field: fmt.Sprint("f", next()%40),
			Kind: crdt.Kind(next() % 6),
		}
		if c&16 != 0 {
			op.Value = crdt.MustValue(string(bytes.Repeat([]byte{'v'}, int(next())*int(next()%3))))
		}
		for range next() % 3 {
			op.Pred = append(op.Pred, crdt.OpID{Time: crdt.Timestamp(next()) << 20, Replica: reps[int(next())%len(reps)]})
		}
		ops = append(ops, op)
	}
	return ops
}

// FuzzPackedLogOps: packing any list of ops and reading it back gives
// the same ops, and expanding it gives exactly crdt.NewOpsBytes of them;
// arbitrary bytes read as packed ops give ErrBadValue or ops, never a
// panic, and the two readers agree.
func FuzzPackedLogOps(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17})
	f.Add(bytes.Repeat([]byte{0x1f, 200, 3, 0xff, 9}, 40))
	f.Add(bytes.Repeat([]byte{0x08, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 20))
	f.Fuzz(func(t *testing.T, seed []byte) {
		ops := opsFromSeed(seed)
		if pk, wh := packedSizes(ops); pk != packedOpsSize(ops) || wh != wholeOpsSize(ops) {
			t.Fatalf("%d ops: packedSizes %d, %d; want %d, %d", len(ops), pk, wh, packedOpsSize(ops), wholeOpsSize(ops))
		}
		p := PackLogOps(ops)
		back, err := p.Ops()
		if err != nil {
			t.Fatalf("%d ops: %v", len(ops), err)
		}
		want := crdt.NewOpsBytes(ops)
		if got := crdt.NewOpsBytes(back); !bytes.Equal(got, want) {
			t.Fatalf("%d ops read back differ", len(ops))
		}
		got, err := p.OpsBytes()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d ops expanded: %v, bytes differ: %v", len(ops), err, !bytes.Equal(got, want))
		}
		// The seed as packed bytes.
		junk := PackedLogOps(seed)
		jops, err1 := junk.Ops()
		jb, err2 := junk.OpsBytes()
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("readers disagree: %v, %v", err1, err2)
		}
		if err1 != nil {
			if !errors.Is(err1, ErrBadValue) || !errors.Is(err2, ErrBadValue) {
				t.Fatalf("errors %v, %v", err1, err2)
			}
			return
		}
		if !bytes.Equal(crdt.NewOpsBytes(jops), jb) {
			t.Fatal("readers of the seed disagree")
		}
	})
}

// TestPackedLogOpsSize: an op of the issue 17 push (30 fields of 20
// bytes per record, one replica) packs to under a third of its whole
// form, and a corrupt packed form is refused, not misread.
func TestPackedLogOpsSize(t *testing.T) {
	r := crdt.NewReplicaID()
	var ops []crdt.Op
	tm := crdt.MakeTimestamp(1_700_000_000_000, 0)
	for rec := range 100 {
		for f := range 30 {
			tm++
			ops = append(ops, crdt.Op{ID: crdt.OpID{Time: tm, Replica: r}, Team: "wigan", Collection: "bench_rows",
				Record: fmt.Sprintf("row-1-0-%d", rec), Field: fmt.Sprintf("f%02d", f), Kind: crdt.KindWrite, Value: crdt.MustValue("000000000000000001")})
		}
	}
	p, whole := PackLogOps(ops), crdt.NewOpsBytes(ops)
	if 3*len(p) > len(whole) {
		t.Errorf("packed %d bytes for %d whole", len(p), len(whole))
	}
	t.Logf("%d ops: %d bytes whole, %d packed (%.1f per op)", len(ops), len(whole), len(p), float64(len(p))/float64(len(ops)))
	for _, cut := range []int{1, 2, 17, len(p) / 2, len(p) - 1} {
		if _, err := p[:cut].Ops(); !errors.Is(err, ErrBadValue) {
			t.Errorf("cut at %d: %v", cut, err)
		}
	}
	bad := PackedLogOps(bytes.Clone(p))
	bad[1] |= 0x80 // unknown flag on the first op
	if _, err := bad.Ops(); !errors.Is(err, ErrBadValue) {
		t.Errorf("unknown flag: %v", err)
	}
}

// TestPackedSizes: packedSizes gives packedOpsSize and wholeOpsSize, in
// one pass, for ops of every shape opsFromSeed makes, and for none
// (FuzzPackedLogOps checks it too).
func TestPackedSizes(t *testing.T) {
	for n := range 200 {
		seed := make([]byte, 3*n)
		for i := range seed {
			seed[i] = byte(i*i*31 + n*7 + i>>3)
		}
		ops := opsFromSeed(seed)
		p, w := packedSizes(ops)
		if p != packedOpsSize(ops) || w != wholeOpsSize(ops) {
			t.Fatalf("%d ops: packedSizes %d, %d; want %d, %d", len(ops), p, w, packedOpsSize(ops), wholeOpsSize(ops))
		}
	}
}
