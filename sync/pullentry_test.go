package sync

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// TestDecodePulledEntry: the parts of a stored log entry a pull serves
// decode as store.Decode would read them, with the ops as the exact bytes
// their []crdt.Op encodes to, whether "o" is the last key or not.
func TestDecodePulledEntry(t *testing.T) {
	d := newDevice("ann", newFakeWall().Now, "wigan")
	ops := []crdt.Op{d.write("wigan", "people", "p1", "n", 1), d.write("wigan", "people", "p2", "n", 2)}
	for _, le := range []store.LogEntry{
		{Author: "ann", Replica: d.caller.Replica, Seq: 3, ReceivedMS: 99, Ops: ops},
		{Author: "ann", Replica: d.caller.Replica, Seq: 4, ReceivedMS: 99, Ops: ops[:1], Erased: []store.ErasedRecord{{Collection: "people", ID: "p9"}}},
		{Author: "admin", Replica: d.caller.Replica, ReceivedMS: 99, Erased: []store.ErasedRecord{{Collection: "people", ID: "p1"}}},
	} {
		v, err := store.Encode(&le)
		if err != nil {
			t.Fatal(err)
		}
		var got pulledEntry
		if err := decodePulledEntry(v, &got); err != nil {
			t.Fatalf("seq %d: %v", le.Seq, err)
		}
		if got.Author != le.Author || got.Replica != le.Replica || !reflect.DeepEqual(got.Erased, le.Erased) {
			t.Fatalf("seq %d: decoded %+v from %+v", le.Seq, got, le)
		}
		if got.Ops.Len() != len(le.Ops) {
			t.Fatalf("seq %d: %d ops, want %d", le.Seq, got.Ops.Len(), len(le.Ops))
		}
		if len(le.Ops) > 0 && !bytes.Equal(got.Ops, crdt.NewOpsBytes(le.Ops)) {
			t.Fatalf("seq %d: ops bytes %x, want %x", le.Seq, []byte(got.Ops), []byte(crdt.NewOpsBytes(le.Ops)))
		}
		if len(le.Ops) == 0 {
			if err := decodePulledEntry(v[:len(v)-2], new(pulledEntry)); !errors.Is(err, store.ErrBadValue) {
				t.Fatalf("truncated erasure entry: %v", err)
			}
		}
	}
	if err := decodePulledEntry([]byte{0x07}, new(pulledEntry)); !errors.Is(err, store.ErrBadValue) {
		t.Fatalf("not a map: %v", err)
	}
}
