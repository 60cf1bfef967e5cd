package store_test

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/memory"
)

// allKeys lists every key of kv.
func allKeys(t *testing.T, kv store.KV) [][]byte {
	t.Helper()
	var out [][]byte
	err := kv.View(context.Background(), func(tx store.Tx) error {
		it := tx.Iterate(store.IterOptions{KeysOnly: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out = append(out, bytes.Clone(it.Key()))
		}
		return it.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantKeys(t *testing.T, kv store.KV, want ...[]byte) {
	t.Helper()
	slices.SortFunc(want, bytes.Compare)
	got := allKeys(t, kv)
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("keys\n%q\nwant\n%q", got, want)
	}
}

func update(t *testing.T, kv store.KV, fn func(store.Tx) error) {
	t.Helper()
	if err := kv.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

// TestPutRecordIndexes: PutRecord keeps a record's team, changed-since,
// conflict and term index entries in step with its state, moving or
// dropping what the old state's entries said, and DeleteRecord leaves
// no key of the record but what the caller keeps (purge marker).
func TestPutRecordIndexes(t *testing.T) {
	kv := memory.New(memory.Options{})
	defer kv.Close()
	const team, coll, id = "wigan", "people", "p1"
	update(t, kv, func(tx store.Tx) error {
		return store.PutRecord(tx, team, coll, id, []byte("s1"), nil, store.RecordIndex{UpdatedMS: 10, Conflict: true, Terms: []string{"h:1", "n:ann"}})
	})
	wantKeys(t, kv,
		store.RecordKey(team, coll, id), store.TeamIndexKey(coll, id), store.ChangedKey(team, 10, coll, id),
		store.ConflictKey(team, coll, id), store.TermKey(team, "h:1", coll, id), store.TermKey(team, "n:ann", coll, id))
	var owner string
	update(t, kv, func(tx store.Tx) (err error) { owner, err = store.RecordOwner(tx, coll, id); return err })
	if owner != team {
		t.Fatalf("owner %q", owner)
	}

	old := &store.RecordIndex{UpdatedMS: 10, Conflict: true, Terms: []string{"h:1", "n:ann"}}
	now := store.RecordIndex{UpdatedMS: 20, Terms: []string{"n:ann", "n:bea"}}
	update(t, kv, func(tx store.Tx) error { return store.PutRecord(tx, team, coll, id, []byte("s2"), old, now) })
	wantKeys(t, kv,
		store.RecordKey(team, coll, id), store.TeamIndexKey(coll, id), store.ChangedKey(team, 20, coll, id),
		store.TermKey(team, "n:ann", coll, id), store.TermKey(team, "n:bea", coll, id))
	update(t, kv, func(tx store.Tx) error {
		sr, err := store.GetRecord(tx, team, coll, id)
		if err != nil || sr.UpdatedMS != 20 || string(sr.State) != "s2" {
			t.Fatalf("GetRecord = %+v, %v", sr, err)
		}
		return nil
	})

	update(t, kv, func(tx store.Tx) error {
		if err := store.DeleteRecord(tx, team, coll, id, &now); err != nil {
			return err
		}
		return store.MarkErased(tx, coll, id, team)
	})
	wantKeys(t, kv, store.ErasedKey(coll, id))
	update(t, kv, func(tx store.Tx) error {
		if e, err := store.ErasedTeam(tx, coll, id); err != nil || e != team {
			t.Fatalf("ErasedTeam = %q, %v", e, err)
		}
		if o, err := store.RecordOwner(tx, coll, id); err != nil || o != "" {
			t.Fatalf("owner after delete = %q, %v", o, err)
		}
		return nil
	})
}

// TestLogEntryHistory: PutLogEntry indexes a position in the history of
// every record its ops and states touch; EraseFromLogEntry rewrites an
// entry without a record's ops, deletes one left empty, and drops the
// position from the record's history.
func TestLogEntryHistory(t *testing.T) {
	kv := memory.New(memory.Options{})
	defer kv.Close()
	r := crdt.NewReplicaID()
	op := func(ms int64, rec string) crdt.Op {
		return crdt.Op{ID: crdt.OpID{Time: crdt.MakeTimestamp(ms, 0), Replica: r}, Team: "t", Collection: "people", Record: rec,
			Field: "n", Kind: crdt.KindWrite, Value: crdt.MustValue("v")}
	}
	st := crdt.NewRecord("t", "people", "p3")
	if err := st.Apply(&crdt.Op{ID: crdt.OpID{Time: crdt.MakeTimestamp(5, 0), Replica: r}, Team: "t", Collection: "people", Record: "p3", Field: "n", Kind: crdt.KindWrite, Value: crdt.MustValue("x")}); err != nil {
		t.Fatal(err)
	}
	stb, err := crdt.MarshalRecord(st)
	if err != nil {
		t.Fatal(err)
	}
	update(t, kv, func(tx store.Tx) error {
		if err := store.PutLogEntry(tx, "t", 1, &store.LogEntry{Replica: r, Ops: []crdt.Op{op(1, "p1"), op(2, "p2"), op(3, "p1")}}); err != nil {
			return err
		}
		if err := store.PutLogEntry(tx, "t", 2, &store.LogEntry{Replica: r, States: []crdt.RecordBytes{stb}}); err != nil {
			return err
		}
		return store.PutLogEntry(tx, "t", 3, &store.LogEntry{Replica: r, Erased: []store.ErasedRecord{{Collection: "people", ID: "p9"}}})
	})
	wantKeys(t, kv, store.LogKey("t", 1), store.LogKey("t", 2), store.LogKey("t", 3),
		store.HistoryKey("t", "people", "p1", 1), store.HistoryKey("t", "people", "p2", 1), store.HistoryKey("t", "people", "p3", 2))

	update(t, kv, func(tx store.Tx) error {
		if pos, err := store.HistoryPositions(tx, "t", "people", "p1"); err != nil || !slices.Equal(pos, []uint64{1}) {
			t.Fatalf("history of p1 = %v, %v", pos, err)
		}
		n, ch, err := store.EraseFromLogEntry(tx, "t", "people", "p1", 1)
		if err != nil || n != 2 || ch != store.EntryRewritten {
			t.Fatalf("erase p1 from 1 = %d, %v, %v", n, ch, err)
		}
		le, err := store.GetLogEntry(tx, "t", 1)
		if err != nil || len(le.Ops) != 1 || le.Ops[0].Record != "p2" {
			t.Fatalf("entry 1 after erasing p1: %+v, %v", le, err)
		}
		if n, ch, err := store.EraseFromLogEntry(tx, "t", "people", "p1", 1); err != nil || n != 0 || ch != store.EntryUnchanged {
			t.Fatalf("erase p1 from 1 again = %d, %v, %v", n, ch, err)
		}
		if n, ch, err := store.EraseFromLogEntry(tx, "t", "people", "p2", 1); err != nil || n != 1 || ch != store.EntryDeleted {
			t.Fatalf("erase p2 from 1 = %d, %v, %v", n, ch, err)
		}
		if n, ch, err := store.EraseFromLogEntry(tx, "t", "people", "p3", 2); err != nil || n != 0 || ch != store.EntryDeleted {
			t.Fatalf("erase p3's state from 2 = %d, %v, %v", n, ch, err)
		}
		return nil
	})
	wantKeys(t, kv, store.LogKey("t", 3))
}

// TestPutRecordValueHeader: a state encoded after room for the header,
// with the header written by PutRecordValueHeader, is EncodeRecordValue's
// bytes, and writing it again for another time rewrites the header only.
func TestPutRecordValueHeader(t *testing.T) {
	state := []byte("\x81\xa1z\x02 some state bytes")
	v := append(make([]byte, store.RecordValueHeaderLen), state...)
	for _, ms := range []int64{1795253400123, 0, -1, 1 << 62} {
		store.PutRecordValueHeader(v, ms)
		if want := store.EncodeRecordValue(ms, state); !bytes.Equal(v, want) {
			t.Fatalf("ms %d: %x, want %x", ms, v, want)
		}
		got, b, err := store.DecodeRecordValue(v)
		if err != nil || got != ms || !bytes.Equal(b, state) {
			t.Fatalf("ms %d: decodes to %d %q %v", ms, got, b, err)
		}
	}
}
