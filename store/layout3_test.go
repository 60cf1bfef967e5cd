package store_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/badger"
	"github.com/doorstep-health/doorstep/store/memory"
)

// TestLayout2LogEntriesUpgrade: a store of layout 2, whose log entries
// hold whole ops ("o"), migrates to layout 3 without rewriting them; its
// old entries read as they did (whole, pulled, erased from), next to new
// entries written packed, on each backend.
func TestLayout2LogEntriesUpgrade(t *testing.T) {
	for _, b := range []struct {
		name string
		open func(t *testing.T) store.KV
	}{
		{"memory", func(*testing.T) store.KV { return memory.New(memory.Options{}) }},
		{"badger", func(t *testing.T) store.KV {
			kv, err := badger.Open(badger.Options{Dir: t.TempDir(), Logger: quiet(), SmallMemory: true})
			if err != nil {
				t.Fatal(err)
			}
			return kv
		}},
	} {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			kv := b.open(t)
			defer kv.Close()
			r := crdt.NewReplicaID()
			mk := func(n int, base crdt.Timestamp) []crdt.Op {
				var ops []crdt.Op
				for i := range n {
					ops = append(ops, crdt.Op{ID: crdt.OpID{Time: base + crdt.Timestamp(i), Replica: r}, Team: "wigan", Collection: "people",
						Record: fmt.Sprint("p", i%2), Field: fmt.Sprint("f", i), Kind: crdt.KindWrite, Value: crdt.MustValue(fmt.Sprint("answer ", i))})
				}
				return ops
			}
			old := store.LogEntry{Author: "ann", Replica: r, Seq: 1, ReceivedMS: 5, Ops: mk(4, 100)}
			oldBytes, err := store.Encode(&old) // how layout 2 wrote it
			if err != nil {
				t.Fatal(err)
			}
			if err := kv.Update(ctx, func(txn store.Tx) error {
				if err := txn.Set(store.KeyVersion, store.VersionBytes(2)); err != nil {
					return err
				}
				for _, id := range []string{"p0", "p1"} {
					if err := txn.Set(store.HistoryKey("wigan", "people", id, 1), nil); err != nil {
						return err
					}
				}
				return txn.Set(store.LogKey("wigan", 1), oldBytes)
			}); err != nil {
				t.Fatal(err)
			}
			if err := store.Migrate(ctx, kv, quiet()); err != nil {
				t.Fatal(err)
			}
			fresh := store.LogEntry{Author: "bea", Replica: r, Seq: 2, ReceivedMS: 6, Ops: mk(6, 200)}
			err = kv.Update(ctx, func(txn store.Tx) error {
				v, err := txn.Get(store.KeyVersion)
				if err != nil || !bytes.Equal(v, store.VersionBytes(3)) {
					return fmt.Errorf("version %v after migrating: %v", v, err)
				}
				if v, err := txn.Get(store.LogKey("wigan", 1)); err != nil || !bytes.Equal(v, oldBytes) {
					return fmt.Errorf("the layout 2 entry was rewritten (%v)", err)
				}
				if err := store.PutLogEntry(txn, "wigan", 2, &fresh); err != nil {
					return err
				}
				v, err = txn.Get(store.LogKey("wigan", 2))
				if err != nil {
					return err
				}
				if len(v) >= len(oldBytes)*6/4 {
					return fmt.Errorf("new entry of 6 ops: %d bytes, the old of 4 took %d: not packed", len(v), len(oldBytes))
				}
				for pos, want := range map[uint64]*store.LogEntry{1: &old, 2: &fresh} {
					le, err := store.GetLogEntry(txn, "wigan", pos)
					if err != nil {
						return err
					}
					if le.Author != want.Author || !bytes.Equal(crdt.NewOpsBytes(le.Ops), crdt.NewOpsBytes(want.Ops)) {
						return fmt.Errorf("entry %d reads %+v", pos, le)
					}
					raw, _ := txn.Get(store.LogKey("wigan", pos))
					var pe store.PulledEntry
					if err := store.DecodePulledEntry(raw, &pe); err != nil || !bytes.Equal(pe.Ops, crdt.NewOpsBytes(want.Ops)) {
						return fmt.Errorf("entry %d pulls differently (%v)", pos, err)
					}
				}
				// Erasing p0 from the layout 2 entry rewrites it (packed)
				// with p1's ops only.
				n, change, err := store.EraseFromLogEntry(txn, "wigan", "people", "p0", 1)
				if err != nil || n != 2 || change != store.EntryRewritten {
					return fmt.Errorf("erase: %d %v %v", n, change, err)
				}
				le, err := store.GetLogEntry(txn, "wigan", 1)
				if err != nil {
					return err
				}
				if len(le.Ops) != 2 || le.Ops[0].Record != "p1" || le.Ops[1].Record != "p1" || le.Author != "ann" {
					return fmt.Errorf("after erasure: %+v", le)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
