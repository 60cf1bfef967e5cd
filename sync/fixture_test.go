package sync

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

var writeFixtures = flag.Bool("write-fixtures", false, "rewrite the store fixtures under testdata (only with the code that wrote layout 1)")

// The layout-1 fixture: every key and value of a server store written by
// the code of layout 1 (record states with per-field removed-ID lists),
// and what its records showed then. The migration test opens a store
// loaded from it with today's code and checks every record still shows
// exactly that.
const (
	fixtureStoreV1   = "testdata/store-layout1.kv"
	fixtureVisibleV1 = "testdata/store-layout1.visible.json"
)

// kv is one stored key and value of a fixture.
type kv struct {
	K []byte `msgpack:"k"`
	V []byte `msgpack:"v"`
}

// visibleField is what a field shows a reader: its live entries (which
// give the winner, the conflict and a set's members).
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

func visibleOf(r *crdt.Record) visibleRecord {
	v := visibleRecord{Fields: map[string]visibleField{}, Deleted: r.Deleted(), Conflicts: r.Conflicts(), DeleteConflicts: r.DeleteConflicts()}
	for _, name := range r.FieldNames() {
		f := r.Field(name)
		vf := visibleField{Type: f.Type.String(), Entries: []string{}}
		for _, e := range f.Entries {
			vf.Entries = append(vf.Entries, hex.EncodeToString(e.ID.AppendBinary(nil))+"="+hex.EncodeToString(e.Value))
		}
		v.Fields[name] = vf
	}
	return v
}

func visibleAll(recs map[api.RecordRef]*crdt.Record) map[string]visibleRecord {
	out := map[string]visibleRecord{}
	for ref, r := range recs {
		out[ref.Team+"/"+ref.Collection+"/"+ref.ID] = visibleOf(r)
	}
	return out
}

// fixtureHistory builds a small but varied history on e: overwrites (a
// field written 40 times), a register conflict, a set with removes, a log,
// a delete with a concurrent offline edit, a restore, a coordinator
// resolve, and a quarantined op later named in pred.
func fixtureHistory(t *testing.T, e *Engine, wall *fakeWall) {
	ann := newDevice("ann", wall.Now, "wigan")
	bea := newDevice("bea", wall.Now, "wigan")
	for i := range 40 {
		ann.write("wigan", "people", "p1", "phone", i)
	}
	ann.write("wigan", "people", "p1", "mobility", "stick")
	ann.add("wigan", "people", "p1", "needs", "mobility")
	ann.add("wigan", "people", "p1", "needs", "money")
	ann.appendLog("wigan", "people", "p1", "case_notes", "first visit")
	ann.write("wigan", "people", "p2", "name", "Mr Smith")
	ann.commit()
	ann.syncAll(t, e)
	bea.syncAll(t, e)
	ann.write("wigan", "people", "p1", "mobility", "frame")
	ann.remove("wigan", "people", "p1", "needs", "money")
	ann.appendLog("wigan", "people", "p1", "case_notes", "phoned")
	ann.commit()
	bea.write("wigan", "people", "p1", "mobility", "wheelchair")
	bea.add("wigan", "people", "p1", "needs", "loneliness")
	bea.write("wigan", "people", "p2", "phone", "01942 000000")
	bea.commit()
	ann.do(ann.rec("wigan", "people", "p2").Delete(ann.nextID()))
	ann.commit()
	ann.syncAll(t, e)
	bea.syncAll(t, e)
	ann.syncAll(t, e)
	// p3: deleted and restored.
	bea.write("wigan", "people", "p3", "name", "Mrs Green")
	bea.do(bea.rec("wigan", "people", "p3").Delete(bea.nextID()))
	bea.do(bea.rec("wigan", "people", "p3").Restore(bea.nextID()))
	bea.write("wigan", "people", "p3", "name", "Mrs Green-Jones")
	bea.commit()
	bea.syncAll(t, e)
	// A quarantined value, then a fix naming it, and a later quarantined
	// value that is never fixed.
	cat := newDevice("cat", wall.Now, "wigan")
	cat.write("wigan", "assessments", "a1", "ons4_happy", 7)
	cat.write("wigan", "assessments", "a1", "ons4_anxiety", 11)
	cat.write("wigan", "assessments", "a1", "ons4_anxiety", 3)
	cat.appendLog("wigan", "assessments", "a1", "notes", "scored at home")
	cat.write("wigan", "assessments", "a1", "ons4_worthwhile", 12)
	cat.write("wigan", "assessments", "a1", "ons4_life", 8)
	push(t, e, cat, cat.commit())
	coord := Caller{User: "cara", Teams: []string{"wigan"}}
	if _, err := e.Resolve(bg, coord, api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"}, "mobility", crdt.MustValue("frame")); err != nil {
		t.Fatal(err)
	}
	ann.syncAll(t, e)
	bea.syncAll(t, e)
}

// TestWriteFixtureV1 writes the layout-1 fixture; it runs only with
// -write-fixtures (with the code that wrote layout 1).
func TestWriteFixtureV1(t *testing.T) {
	if !*writeFixtures {
		t.Skip("run with -args -write-fixtures to rewrite the fixture")
	}
	wall := newFakeWall()
	dir := t.TempDir()
	e := openTestAt(t, dir, Options{Wall: wall.Now, Validator: rejectFields{"ons4_anxiety": true, "ons4_worthwhile": true}})
	fixtureHistory(t, e, wall)
	var kvs []kv
	err := e.kv.View(context.Background(), func(txn store.Tx) error {
		it := txn.Iterate(store.IterOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Value()
			if err != nil {
				return err
			}
			kvs = append(kvs, kv{K: bytes.Clone(it.Key()), V: v})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	vis := visibleAll(serverRecords(t, e, "wigan"))
	b, err := msgpack.Marshal(kvs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fixtureStoreV1, b, 0o644); err != nil {
		t.Fatal(err)
	}
	j, _ := json.MarshalIndent(vis, "", "  ")
	if err := os.WriteFile(fixtureVisibleV1, append(j, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d keys, %d records", len(kvs), len(vis))
}

// loadFixture writes a fixture's keys and values into a new store of the
// test backend, as the code that wrote them left them, and returns the
// store's name (a directory, see testKV).
func loadFixture(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var kvs []kv
	if err := msgpack.Unmarshal(b, &kvs); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "store")
	db := testKV(t, dir)
	err = db.Update(context.Background(), func(txn store.Tx) error {
		for _, x := range kvs {
			if err := txn.Set(x.K, x.V); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rejectFields rejects values over 10 in the named fields.
type rejectFields map[string]bool

func (v rejectFields) ValidateOp(op *crdt.Op) error {
	var n int
	if v[op.Field] && (decodeValue(op.Value, &n) != nil || n > 10) {
		return errors.New("value not allowed")
	}
	return nil
}

// TestMigrateLayout1Fixture opens a server store written by layout 1 (the
// fixture) and checks that the store moves to store.CurrentVersion with
// every record state in the current encoding, showing exactly what it
// showed under layout 1; that the quarantined op still reapplies; and that
// a new device syncing from it converges with the server.
func TestMigrateLayout1Fixture(t *testing.T) {
	var want map[string]visibleRecord
	j, err := os.ReadFile(fixtureVisibleV1)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j, &want); err != nil {
		t.Fatal(err)
	}
	dir := loadFixture(t, fixtureStoreV1)
	wall := newFakeWall()
	e := openTestAt(t, dir, Options{Wall: wall.Now})
	got := visibleAll(serverRecords(t, e, "wigan"))
	if gj, wj := mustJSON(t, got), mustJSON(t, want); string(gj) != string(wj) {
		t.Fatalf("records show\n%s\nwant (layout 1)\n%s", gj, wj)
	}
	err = e.kv.View(context.Background(), func(txn store.Tx) error {
		item, err := txn.Get(store.KeyVersion)
		if err != nil {
			return err
		}
		v, _ := item, error(nil)
		if binary.BigEndian.Uint32(v) != store.CurrentVersion {
			return fmt.Errorf("layout %x", v)
		}
		prefix := store.RecordPrefix("wigan")
		it := txn.Iterate(store.IterOptions{Prefix: prefix, KeysOnly: true})
		defer it.Close()
		for it.Seek(prefix); it.Valid(); it.Next() {
			v, _ := it.Value()
			_, b, err := store.DecodeRecordValue(v)
			if err != nil {
				return err
			}
			rec, err := crdt.UnmarshalRecord(b)
			if err != nil {
				return err
			}
			if nb, _ := crdt.MarshalRecord(rec); !bytes.Equal(nb, b) {
				return fmt.Errorf("record %q not stored in the current encoding", it.Key())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The never-fixed quarantined value reapplies once allowed (no
	// validator now), and a new device converges with the server.
	q, err := e.Quarantined(bg, 10)
	if err != nil || len(q) == 0 {
		t.Fatalf("quarantine %+v %v", q, err)
	}
	for _, qo := range q {
		if qo.Reapplicable {
			if err := e.Reapply(bg, qo.ID); err != nil {
				t.Fatalf("reapply %d: %v", qo.ID, err)
			}
		}
	}
	dev := newDevice("dan", wall.Now, "wigan")
	dev.syncAll(t, e)
	dev.write("wigan", "people", "p1", "phone", "01942 222222")
	dev.commit()
	dev.syncAll(t, e)
	srv := visibleAll(serverRecords(t, e, "wigan"))
	mine := visibleAll(dev.recs)
	if a, b := mustJSON(t, srv), mustJSON(t, mine); string(a) != string(b) {
		t.Fatalf("device and server differ after migration:\n%s\n%s", b, a)
	}
	w, _ := serverRecords(t, e, "wigan")[api.RecordRef{Team: "wigan", Collection: "assessments", ID: "a1"}].Field("ons4_worthwhile").Winner()
	if string(w.Value) != string(crdt.MustValue(12)) {
		t.Fatalf("reapplied value missing: %x", w.Value)
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
