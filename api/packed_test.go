package api_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// packedSample builds pulled changes of every op shape: writes with and
// without preds (of several replicas, and 20 preds, past the kind byte's
// count), adds, removes without a value, appends, hex and non-hex record
// IDs, times that go backwards between changes.
func packedSample(rng *rand.Rand, changes, opsPer int) []api.PulledChange {
	reps := make([]crdt.ReplicaID, 4)
	for i := range reps {
		reps[i][0], reps[i][15] = byte(i+1), 0xee
	}
	ids := []string{"p1", "0123456789abcdef0123456789abcdef", "ffffffffffffffffffffffffffffffff", "visit-7"}
	fields := []string{"given_name", "case_notes", "needs", "cfs"}
	base := crdt.MakeTimestamp(1795253400000, 0)
	out := make([]api.PulledChange, changes)
	for c := range out {
		rep := reps[c%len(reps)]
		t := base + crdt.Timestamp(rng.IntN(1<<30))
		ops := make([]crdt.Op, opsPer)
		for i := range ops {
			t += crdt.Timestamp(1 + rng.IntN(3)<<rng.IntN(20))
			op := crdt.Op{ID: crdt.OpID{Time: t, Replica: rep}, Team: []string{"wigan", "ashton"}[rng.IntN(2)],
				Collection: "people", Record: ids[rng.IntN(len(ids))], Field: fields[rng.IntN(len(fields))]}
			switch rng.IntN(4) {
			case 0:
				op.Kind, op.Value = crdt.KindWrite, crdt.MustValue(fmt.Sprintf("value %d", rng.IntN(50)))
				np := rng.IntN(3)
				if rng.IntN(10) == 0 {
					np = 20
				}
				for j := range np {
					op.Pred = append(op.Pred, crdt.OpID{Time: t - crdt.Timestamp(1+j+rng.IntN(1<<40)), Replica: reps[rng.IntN(len(reps))]})
				}
			case 1:
				op.Kind, op.Value = crdt.KindAdd, crdt.MustValue(rng.IntN(5))
			case 2:
				op.Kind = crdt.KindRemove
				op.Pred = []crdt.OpID{{Time: t - 5, Replica: reps[rng.IntN(len(reps))]}}
				if rng.IntN(2) == 0 {
					op.Value = crdt.MustValue(rng.IntN(5))
				}
			default:
				op.Kind, op.Value = crdt.KindAppend, crdt.MustValue(map[string]any{"n": rng.IntN(9), "text": "note"})
			}
			ops[i] = op
		}
		out[c] = api.PulledChange{Author: fmt.Sprintf("user-%d", c%3), Ops: crdt.NewOpsBytes(ops)}
	}
	return out
}

// TestPackedRoundTrip: UnpackChanges(PackChanges(x)) gives x's changes,
// authors and op bytes exactly, for every op shape, and the packed block
// is smaller than the msgpack changes.
func TestPackedRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 1))
	for _, n := range [][2]int{{0, 0}, {1, 1}, {1, 0}, {3, 50}, {20, 200}} {
		in := packedSample(rng, n[0], n[1])
		b, err := api.PackChanges(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := api.UnpackChanges(b)
		if err != nil {
			t.Fatalf("%v: %v", n, err)
		}
		if len(out) != len(in) {
			t.Fatalf("%v: %d changes back, want %d", n, len(out), len(in))
		}
		plain := 0
		for i := range in {
			plain += len(in[i].Ops)
			if out[i].Author != in[i].Author || !bytes.Equal(out[i].Ops, in[i].Ops) {
				a, _ := in[i].Ops.Ops()
				b, _ := out[i].Ops.Ops()
				t.Fatalf("%v: change %d differs:\n%+v\n%+v", n, i, a, b)
			}
		}
		if n[1] >= 50 && len(b) >= plain {
			t.Errorf("%v: packed %d bytes, msgpack ops %d", n, len(b), plain)
		}
		t.Logf("%d changes × %d ops: packed %d B, msgpack ops %d B", n[0], n[1], len(b), plain)
	}
}

// TestUnpackRefusesMalformed: every truncation and every one-byte
// corruption of a valid block is refused with ErrPacked or decodes to
// valid ops; nothing panics, and declared counts far beyond the bytes are
// refused before anything is allocated for them.
func TestUnpackRefusesMalformed(t *testing.T) {
	b, err := api.PackChanges(packedSample(rand.New(rand.NewPCG(3, 4)), 2, 8))
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, x []byte) {
		t.Helper()
		if _, err := api.UnpackChanges(x); err != nil && !errors.Is(err, api.ErrPacked) {
			t.Fatalf("%s: error does not wrap ErrPacked: %v", what, err)
		}
	}
	for i := range b {
		if _, err := api.UnpackChanges(b[:i]); !errors.Is(err, api.ErrPacked) {
			t.Fatalf("truncated to %d of %d bytes: %v, want ErrPacked", i, len(b), err)
		}
		for _, x := range []byte{0x00, 0x7f, 0x80, 0xff} {
			c := bytes.Clone(b)
			c[i] = x
			check(fmt.Sprintf("byte %d = %#x", i, x), c)
		}
	}
	if _, err := api.UnpackChanges(append(bytes.Clone(b), 0)); !errors.Is(err, api.ErrPacked) {
		t.Fatalf("trailing byte: %v", err)
	}
	huge := []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f} // 2^32-1 strings declared in 6 bytes
	if _, err := api.UnpackChanges(huge); !errors.Is(err, api.ErrPacked) {
		t.Fatalf("huge string count: %v", err)
	}
	// One change declaring 2^31 ops, one replica, no strings.
	huge = []byte{1, 0, 0, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x08}
	if _, err := api.UnpackChanges(huge); !errors.Is(err, api.ErrPacked) {
		t.Fatalf("huge op count: %v", err)
	}
}

// FuzzUnpackChanges: UnpackChanges never panics, refuses with ErrPacked,
// and whatever it accepts packs again and unpacks to the same changes.
//
//	go test -run '^$' -fuzz FuzzUnpackChanges -fuzztime 60s ./api
func FuzzUnpackChanges(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range [][2]int{{1, 1}, {2, 5}, {3, 12}} {
		b, err := api.PackChanges(packedSample(rng, n[0], n[1]))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := api.UnpackChanges(b)
		if err != nil {
			if !errors.Is(err, api.ErrPacked) {
				t.Fatalf("error does not wrap ErrPacked: %v", err)
			}
			return
		}
		for i := range out {
			if _, err := out[i].Ops.Ops(); err != nil {
				t.Fatalf("accepted change %d whose ops do not decode: %v", i, err)
			}
		}
		again, err := api.PackChanges(out)
		if err != nil {
			t.Fatalf("accepted changes do not pack: %v", err)
		}
		back, err := api.UnpackChanges(again)
		if err != nil || !reflect.DeepEqual(back, out) {
			t.Fatalf("pack of accepted changes does not unpack to them: %v", err)
		}
	})
}

// TestPackedPushRoundTrip: UnpackPush(PackPush(x)) gives x's seqs and ops,
// stubs (changes without ops) included, and refuses more ops than asked.
func TestPackedPushRoundTrip(t *testing.T) {
	pulled := packedSample(rand.New(rand.NewPCG(9, 9)), 6, 40)
	var in []api.Change
	for i, pc := range pulled {
		ops, err := pc.Ops.Ops()
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, api.Change{Seq: uint64(1000 + i), Ops: ops})
		if i == 2 {
			in = append(in, api.Change{Seq: 1 << 40}) // a stub
		}
	}
	b, err := api.PackPush(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := api.UnpackPush(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("unpacked push differs")
	}
	if _, err := api.UnpackPush(b, 6*40-1); !errors.Is(err, api.ErrPacked) {
		t.Fatalf("over maxOps: %v", err)
	}
	if _, err := api.UnpackPush(b, 6*40); err != nil {
		t.Fatalf("at maxOps: %v", err)
	}
}

// TestUnpackBoundsOpsByColumns: a block declaring many ops whose field,
// kind, time or replica column is too short for them is refused before
// anything is allocated for the ops (the bytes of another column would
// otherwise let it declare an op per byte of the block).
func TestUnpackBoundsOpsByColumns(t *testing.T) {
	const n = 200_000
	b := []byte{1, 0, 0, 1, 1} // version, no strings, no replicas, one change of seq 1
	b = binary.AppendUvarint(b, n)
	for c := range 7 {
		if c == 6 { // the value column carries the bytes
			b = binary.AppendUvarint(b, n)
			b = append(b, make([]byte, n)...)
			continue
		}
		b = append(b, 1, 0)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := api.UnpackPush(b, 0)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, api.ErrPacked) {
		t.Fatalf("%v, want ErrPacked", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4*n {
		t.Fatalf("allocated %d bytes for a refused block of %d", got, len(b))
	}
}
