package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/crdt"
)

var writeFixtures = flag.Bool("write-fixtures", false, "rewrite the store fixtures under testdata (only with the code that wrote layout 1)")

// The layout-1 fixture: every key and value of a device store written by
// the code whose record states kept per-field removed-ID lists, and what
// its records showed then.
const (
	fixtureReplicaV1 = "testdata/replica-layout1.kv"
	fixtureVisibleV1 = "testdata/replica-layout1.visible.json"
)

type kv struct {
	K []byte `msgpack:"k"`
	V []byte `msgpack:"v"`
}

type visibleField struct {
	Type    string   `json:"type"`
	Entries []string `json:"entries"` // "opid-hex=value-hex", in ID order
}

type visibleRecord struct {
	Fields          map[string]visibleField `json:"fields"`
	Deleted         bool                    `json:"deleted"`
	Conflicts       []string                `json:"conflicts"`
	DeleteConflicts []string                `json:"delete_conflicts"`
}

func visibleAll(recs map[Ref]*crdt.Record) map[string]visibleRecord {
	out := map[string]visibleRecord{}
	for ref, r := range recs {
		v := visibleRecord{Fields: map[string]visibleField{}, Deleted: r.Deleted(), Conflicts: r.Conflicts(), DeleteConflicts: r.DeleteConflicts()}
		for _, name := range r.FieldNames() {
			f := r.Field(name)
			vf := visibleField{Type: f.Type.String(), Entries: []string{}}
			for _, e := range f.Entries {
				vf.Entries = append(vf.Entries, hex.EncodeToString(e.ID.AppendBinary(nil))+"="+hex.EncodeToString(e.Value))
			}
			v.Fields[name] = vf
		}
		out[ref.Team+"/"+ref.Collection+"/"+ref.ID] = v
	}
	return out
}

// TestWriteFixtureV1 writes the layout-1 device fixture; it runs only with
// -write-fixtures.
func TestWriteFixtureV1(t *testing.T) {
	if !*writeFixtures {
		t.Skip("run with -args -write-fixtures to rewrite the fixture")
	}
	ctx := context.Background()
	r := openTest(t, t.TempDir(), nil)
	ref, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": "Mrs Jones", "mobility": "stick"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if err := r.Set(ctx, ref, "phone", i); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Add(ctx, ref, "needs", "mobility"))
	must(r.Add(ctx, ref, "needs", "money"))
	must(r.Remove(ctx, ref, "needs", "money"))
	must(r.Append(ctx, ref, "case_notes", "first visit"))
	st, err := r.GetState(ctx, ref)
	must(err)
	// A colleague's concurrent write and a concurrent add, received.
	bea := crdt.ReplicaID{0xbe, 0xa0, 1}
	t0 := crdt.MakeTimestamp(time.Now().UnixMilli()+1000, 0)
	c1 := st.Write(crdt.OpID{Time: t0, Replica: bea}, "mobility", crdt.MustValue("wheelchair"))
	c1.Pred = nil // concurrent with "stick": a conflict
	c2 := st.Add(crdt.OpID{Time: t0 + 1, Replica: bea}, "needs", crdt.MustValue("loneliness"))
	must(r.ApplyRemote(ctx, []crdt.Op{c1, c2}))
	// A second person, deleted while a colleague edited.
	ref2, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": "Mr Smith"})
	must(err)
	must(r.Delete(ctx, ref2))
	c3 := crdt.Op{ID: crdt.OpID{Time: t0 + 2, Replica: bea}, Team: "wigan", Collection: "people", Record: ref2.ID,
		Field: "phone", Kind: crdt.KindWrite, Value: crdt.MustValue("01942 000000")}
	must(r.ApplyRemote(ctx, []crdt.Op{c3}))
	states, err := r.States(ctx)
	must(err)
	var kvs []kv
	err = r.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			kvs = append(kvs, kv{K: it.Item().KeyCopy(nil), V: v})
		}
		return nil
	})
	must(err)
	b, err := msgpack.Marshal(kvs)
	must(err)
	must(os.WriteFile(fixtureReplicaV1, b, 0o644))
	j, _ := json.MarshalIndent(visibleAll(states), "", "  ")
	must(os.WriteFile(fixtureVisibleV1, append(j, '\n'), 0o644))
	t.Logf("wrote %d keys, %d records", len(kvs), len(states))
}

// TestMigrateLayout1Fixture opens a device store written by layout 1 (the
// fixture) and checks that Open moves it to LayoutVersion with every record
// in the version 2 state encoding, showing exactly what it showed before;
// that reopening changes nothing more; and that the replica keeps working.
func TestMigrateLayout1Fixture(t *testing.T) {
	ctx := context.Background()
	b, err := os.ReadFile(fixtureReplicaV1)
	if err != nil {
		t.Fatal(err)
	}
	var kvs []kv
	if err := msgpack.Unmarshal(b, &kvs); err != nil {
		t.Fatal(err)
	}
	var want map[string]visibleRecord
	j, err := os.ReadFile(fixtureVisibleV1)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j, &want); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The store exactly as layout 1 left it: its keys, no m/layout.
	r, err := Open(ctx, Options{Dir: dir, EncryptionKey: testKey, NoValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	err = r.db.DropAll()
	if err == nil {
		err = r.db.Update(func(txn *badger.Txn) error {
			for _, x := range kvs {
				if err := txn.Set(x.K, x.V); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		r, err := Open(ctx, Options{Dir: dir, EncryptionKey: testKey, NoValidation: true})
		if err != nil {
			t.Fatalf("open (round %d): %v", round, err)
		}
		states, err := r.States(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := visibleAll(states)
		if gj, _ := json.Marshal(got); string(gj) != string(mustJSON(t, want)) {
			t.Fatalf("round %d: records show\n%s\nwant (layout 1)\n%s", round, gj, mustJSON(t, want))
		}
		err = r.db.View(func(txn *badger.Txn) error {
			v, err := get(txn, keyLayout)
			if err != nil || len(v) != 4 || binary.BigEndian.Uint32(v) != CurrentLayout {
				return fmt.Errorf("layout %x %v", v, err)
			}
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefRecord})
			defer it.Close()
			for it.Seek(prefRecord); it.ValidForPrefix(prefRecord); it.Next() {
				v, _ := it.Item().ValueCopy(nil)
				rec, err := crdt.UnmarshalRecord(v)
				if err != nil {
					return err
				}
				if b, _ := crdt.MarshalRecord(rec); !bytes.Equal(b, v) {
					return fmt.Errorf("record %q not stored in the current encoding", it.Item().Key())
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			// Pending changes and the replica ID survived: writes go on.
			for ref, st := range states {
				if st.Deleted() {
					continue
				}
				if err := r.Set(ctx, ref, "phone", "01942 111111"); err != nil {
					t.Fatalf("write after migration: %v", err)
				}
				delete(want, ref.Team+"/"+ref.Collection+"/"+ref.ID)
				st, _ := r.GetState(ctx, ref)
				want[ref.Team+"/"+ref.Collection+"/"+ref.ID] = visibleAll(map[Ref]*crdt.Record{ref: st})[ref.Team+"/"+ref.Collection+"/"+ref.ID]
			}
		}
		r.Close()
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
