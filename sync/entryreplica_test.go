package sync

import (
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// TestEntryReplica reads the replica of real encoded log entries, with and
// without ops, and refuses what is not one.
func TestEntryReplica(t *testing.T) {
	r := crdt.NewReplicaID()
	for _, le := range []store.LogEntry{
		{Author: "u-1", Replica: r, Seq: 3, ReceivedMS: 1, Ops: []crdt.Op{{ID: crdt.OpID{Time: 1, Replica: r}, Team: "t", Collection: "c", Record: "x", Field: "f", Kind: crdt.KindWrite, Value: crdt.MustValue("v")}}},
		{Replica: r},
	} {
		b, err := store.Encode(&le)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := entryReplica(b)
		if !ok || got != r {
			t.Fatalf("entryReplica = %s, %v; want %s", got, ok, r)
		}
	}
	for _, b := range [][]byte{nil, {0x80}, {0x81, 0xa1}, {0xc1}, {0x81, 0xa1, 'd', 0xc4, 0x01, 0x00}} {
		if _, ok := entryReplica(b); ok {
			t.Fatalf("entryReplica(%x) ok", b)
		}
	}
}
