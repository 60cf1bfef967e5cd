package sync

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// The layout-2 fixture: every key and value of a server store written by
// the code of layout 2 (log entries holding whole ops, "o"), and what a
// new device pulled from it then, change by change, as the bytes of the
// ops served. Layout 3 packs new log entries and must serve the old ones
// exactly as layout 2 did.
const (
	fixtureStoreV2  = "testdata/store-layout2.kv"
	fixturePulledV2 = "testdata/store-layout2.pulled.json"
)

// pulledChange is one pulled change as a fixture keeps it.
type pulledChange struct {
	Author string `json:"author"`
	Ops    string `json:"ops"` // hex of the crdt.OpsBytes served
}

// pullLog pulls the caller's whole log from position 0, in default
// pages.
func pullLog(t *testing.T, e *Engine, c Caller) []pulledChange {
	t.Helper()
	var out []pulledChange
	cur := cursor{mode: modeLog, teams: teamsHash(c.Teams)}.encode()
	for range 1000 {
		resp, err := e.Pull(bg, c, cur, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range resp.Changes {
			out = append(out, pulledChange{Author: ch.Author, Ops: hex.EncodeToString(ch.Ops)})
		}
		cur = resp.Cursor
		if !resp.More {
			return out
		}
	}
	t.Fatal("pull never ended")
	return nil
}

// TestWriteFixtureV2 writes the layout-2 fixture; it runs only with
// -write-fixtures, with the code that wrote layout 2 (main 963e767: copy
// this file there and run it).
func TestWriteFixtureV2(t *testing.T) {
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
	pulled := pullLog(t, e, Caller{User: "new", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}})
	b, err := msgpack.Marshal(kvs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fixtureStoreV2, b, 0o644); err != nil {
		t.Fatal(err)
	}
	j, _ := json.MarshalIndent(pulled, "", " ")
	if err := os.WriteFile(fixturePulledV2, append(j, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d keys, %d pulled changes", len(kvs), len(pulled))
}

// TestMigrateLayout2Fixture opens a server store written by layout 2 and
// checks that it moves to layout 3 without its log entries being
// rewritten, that a new device pulls from it exactly the bytes layout 2
// served, and that entries written since (packed) are pulled after them
// and read back as pushed.
func TestMigrateLayout2Fixture(t *testing.T) {
	var want []pulledChange
	j, err := os.ReadFile(fixturePulledV2)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j, &want); err != nil {
		t.Fatal(err)
	}
	var kvs []kv
	b, err := os.ReadFile(fixtureStoreV2)
	if err != nil {
		t.Fatal(err)
	}
	if err := msgpack.Unmarshal(b, &kvs); err != nil {
		t.Fatal(err)
	}
	stored := map[string][]byte{}
	for _, x := range kvs {
		stored[string(x.K)] = x.V
	}
	dir := loadFixture(t, fixtureStoreV2)
	wall := newFakeWall()
	e := openTestAt(t, dir, Options{Wall: wall.Now})
	err = e.kv.View(bg, func(txn store.Tx) error {
		v, err := txn.Get(store.KeyVersion)
		if err != nil || !bytes.Equal(v, []byte{0, 0, 0, 3}) {
			t.Fatalf("layout %x after opening (%v), want 3", v, err)
		}
		it := txn.Iterate(store.IterOptions{Prefix: store.LogPrefix("wigan")})
		defer it.Close()
		n := 0
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Value()
			if err != nil {
				return err
			}
			if !bytes.Equal(v, stored[string(it.Key())]) {
				t.Fatalf("log entry %x rewritten by the upgrade", it.Key())
			}
			n++
		}
		if n == 0 {
			t.Fatal("no log entries in the fixture: the test proves nothing")
		}
		return it.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	dev := Caller{User: "new", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	got := pullLog(t, e, dev)
	if a, b := mustJSON(t, got), mustJSON(t, want); !bytes.Equal(a, b) {
		t.Fatalf("pulled from the layout 2 store:\n%s\nlayout 2 served:\n%s", a, b)
	}
	// A change pushed now is stored packed and pulled after the old ones.
	d := newDevice("eve", wall.Now, "wigan")
	d.write("wigan", "people", "p1", "phone", "01942 333333")
	d.write("wigan", "people", "p9", "name", "Ms New")
	d.commit()
	d.syncAll(t, e)
	var ops crdt.OpsBytes
	for _, ch := range pullLog(t, e, dev)[len(want):] {
		if ch.Author == "eve" {
			b, _ := hex.DecodeString(ch.Ops)
			ops = b
		}
	}
	got2, err := ops.Ops()
	if err != nil || len(got2) != 2 || got2[0].Record != "p1" || got2[1].Record != "p9" {
		t.Fatalf("the change pushed after the upgrade pulls as %+v (%v)", got2, err)
	}
	err = e.kv.View(bg, func(txn store.Tx) error {
		it := txn.Iterate(store.IterOptions{Prefix: store.LogPrefix("wigan"), Reverse: true})
		defer it.Close()
		it.Rewind()
		if !it.Valid() {
			t.Fatal("no log")
		}
		v, err := it.Value()
		if err == nil && !bytes.Contains(v, []byte{0xa1, 'O', 0xc6}) {
			t.Fatalf("the entry written after the upgrade is not packed: %x", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := serverRecords(t, e, "wigan")
	if w, _ := srv[api.RecordRef{Team: "wigan", Collection: "people", ID: "p9"}].Field("name").Winner(); !bytes.Equal(w.Value, crdt.MustValue("Ms New")) {
		t.Fatalf("p9 after the upgrade: %x", w.Value)
	}
}
