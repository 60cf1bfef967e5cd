package store

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
)

// TestLogEntryWireSameBytes checks the two forms of a stored log entry
// over entries with every field set or left out: the layout 3 form
// (encodeLogEntry: ops packed under "O", logops.go) and the layout 2
// form (Encode: whole ops under "o") decode to the same entry, and a
// pull (DecodePulledEntry) serves both as exactly crdt.NewOpsBytes of
// the ops; packing ahead (PutLogEntryOps) writes the same bytes as
// packing in place; entries without ops are written as layout 2 wrote
// them.
func TestLogEntryWireSameBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 1))
	rec := crdt.NewRecord("t", "people", "p1")
	st, err := crdt.MarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	mkOps := func(n int) []crdt.Op {
		ops := make([]crdt.Op, n)
		for i := range ops {
			op := crdt.Op{
				ID:   crdt.OpID{Time: crdt.Timestamp(rng.Uint64()), Replica: crdt.NewReplicaID()},
				Team: "wigan", Collection: "people", Record: fmt.Sprint("p", rng.IntN(5)), Field: strings.Repeat("f", rng.IntN(40)),
				Kind: crdt.Kind(1 + rng.IntN(3)),
			}
			if rng.IntN(4) > 0 {
				op.Value = crdt.MustValue(strings.Repeat("v", rng.IntN(300)))
			}
			for range rng.IntN(3) {
				op.Pred = append(op.Pred, crdt.OpID{Time: crdt.Timestamp(rng.Uint64()), Replica: crdt.NewReplicaID()})
			}
			ops[i] = op
		}
		return ops
	}
	entries := []LogEntry{
		{},
		{Ops: []crdt.Op{}},
		{Author: "ann", Replica: crdt.NewReplicaID(), Seq: 1, ReceivedMS: 1, Ops: mkOps(1)},
		{Author: "", Seq: math.MaxUint64, ReceivedMS: -5, Reason: "coordinator's reason", Ops: mkOps(3)},
		{Author: strings.Repeat("a", 70000), Seq: 300, ReceivedMS: math.MaxInt64, Ops: mkOps(20)},
		{Author: "bob", Erased: []ErasedRecord{{Collection: "people", ID: "p9"}}},
		{Author: "bob", Erased: []ErasedRecord{{Collection: "people", ID: "p9"}}, Ops: mkOps(2)},
		{Author: "cy", States: []crdt.RecordBytes{st}, Ops: mkOps(1)},
		{Author: "cy", States: []crdt.RecordBytes{st}},
		{Author: "dee", Seq: 70000, Ops: mkOps(70000)}, // an array header over 16 bits
	}
	for range 50 {
		entries = append(entries, LogEntry{Author: "ed", Replica: crdt.NewReplicaID(), Seq: rng.Uint64() >> rng.IntN(64), ReceivedMS: rng.Int64() >> rng.IntN(63), Ops: mkOps(1 + rng.IntN(40))})
	}
	for i := range entries {
		le := &entries[i]
		old, err := Encode(le)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeLogEntry(le)
		if err != nil {
			t.Fatal(err)
		}
		if len(le.Ops) == 0 && !bytes.Equal(got, old) {
			t.Fatalf("entry %d without ops: written as %x, want layout 2's %x", i, got, old)
		}
		pre, err := encodeLogEntryPacked(le, PackLogOps(le.Ops)) // PutLogEntryOps
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pre, got) {
			t.Fatalf("entry %d (%d ops): with its ops packed ahead, %d bytes that differ from %d", i, len(le.Ops), len(pre), len(got))
		}
		wantOps := crdt.NewOpsBytes(le.Ops)
		for form, v := range map[string][]byte{"layout 2": old, "layout 3": got} {
			var back LogEntry
			if err := Decode(v, &back); err != nil {
				t.Fatalf("entry %d, %s: %v", i, form, err)
			}
			if back.Author != le.Author || back.Replica != le.Replica || back.Seq != le.Seq || back.ReceivedMS != le.ReceivedMS ||
				back.Reason != le.Reason || len(back.Erased) != len(le.Erased) || len(back.States) != len(le.States) {
				t.Fatalf("entry %d, %s: decoded %+v", i, form, back)
			}
			if b := crdt.NewOpsBytes(back.Ops); !bytes.Equal(b, wantOps) {
				t.Fatalf("entry %d, %s: decoded ops differ", i, form)
			}
			var pe PulledEntry
			if err := DecodePulledEntry(v, &pe); err != nil {
				t.Fatalf("entry %d, %s: pulled: %v", i, form, err)
			}
			if len(wantOps) == 0 && pe.Ops.Len() == 0 {
				pe.Ops = nil // layout 2 wrote no ops as nil
			}
			if !bytes.Equal(pe.Ops, wantOps) || pe.Author != le.Author || pe.Replica != le.Replica || pe.ReceivedMS != le.ReceivedMS ||
				pe.Reason != le.Reason || len(pe.Erased) != len(le.Erased) || len(pe.States) != len(le.States) {
				t.Fatalf("entry %d, %s: pulled %d op bytes, want %d (%+v)", i, form, len(pe.Ops), len(wantOps), pe)
			}
			if r, ok := LogEntryReplica(v); !ok || r != le.Replica {
				t.Fatalf("entry %d, %s: replica %v %v", i, form, r, ok)
			}
		}
		if len(le.Ops) > 2 && len(got) >= len(old) {
			t.Errorf("entry %d: packed %d bytes, not smaller than layout 2's %d", i, len(got), len(old))
		}
	}
}

// TestLogEntryEncodesInPlace: a push's log entry is encoded into one
// buffer, its ops packed into it directly (logOps through appendWriter),
// not built apart and copied in: the bytes allocated per entry stay under
// 1.5 times its size (building the ops apart takes twice).
func TestLogEntryEncodesInPlace(t *testing.T) {
	ops := make([]crdt.Op, 1000)
	for i := range ops {
		ops[i] = crdt.Op{
			ID:   crdt.OpID{Time: crdt.Timestamp(1000 + i), Replica: crdt.NewReplicaID()},
			Team: "wigan", Collection: "people", Record: fmt.Sprint("p", i/10), Field: fmt.Sprint("f", i%10),
			Kind: crdt.KindWrite, Value: crdt.MustValue("a typical short answer"), Pred: []crdt.OpID{{Time: 5, Replica: crdt.NewReplicaID()}},
		}
	}
	le := &LogEntry{Author: "ann", Replica: crdt.NewReplicaID(), Seq: 7, ReceivedMS: 1, Ops: ops}
	want, err := encodeLogEntryPacked(le, PackLogOps(le.Ops))
	if err != nil {
		t.Fatal(err)
	}
	const runs = 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		b, err := encodeLogEntry(le)
		if err != nil || !bytes.Equal(b, want) {
			t.Fatalf("encodeLogEntry: %v, or bytes differ from packing ahead", err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := float64(after.TotalAlloc-before.TotalAlloc) / runs; per > 1.5*float64(len(want)) {
		t.Errorf("encodeLogEntry of %d ops (%d bytes) allocates %.0f bytes, want under 1.5 times the entry", len(ops), len(want), per)
	}
}
