package sync

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/backup"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// restoreInto loads a records backup into a new directory as doorstep
// restore does (without the auth store) and starts a new epoch.
func restoreInto(t *testing.T, file []byte) string {
	t.Helper()
	dir := t.TempDir()
	kv := testKV(t, dir)
	if _, err := backup.Load(context.Background(), bytes.NewReader(file), map[string]backup.Target{"records": &kvTarget{kv: kv}}, backup.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.NewEpoch(context.Background(), kv); err != nil {
		t.Fatal(err)
	}
	kv.Close()
	return dir
}

// kvTarget loads a backup section into any store.KV, some hundred items
// per write transaction.
type kvTarget struct {
	kv   store.KV
	keys [][]byte
	vals [][]byte
}

func (k *kvTarget) Put(it *backup.Item) error {
	k.keys = append(k.keys, bytes.Clone(it.Key))
	k.vals = append(k.vals, bytes.Clone(it.Value))
	if len(k.keys) >= 500 {
		return k.Finish()
	}
	return nil
}

func (k *kvTarget) Finish() error {
	err := k.kv.Update(context.Background(), func(txn store.Tx) error {
		for i := range k.keys {
			if err := txn.Set(k.keys[i], k.vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
	k.keys, k.vals = k.keys[:0], k.vals[:0]
	return err
}

func takeBackup(t *testing.T, e *Engine) []byte {
	t.Helper()
	txn, meta, release, err := e.BackupTxn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	var buf bytes.Buffer
	if _, err := backup.Write(context.Background(), &buf, backup.Header{LogPosition: meta.LogPos}, []backup.Section{{Name: "records", Each: func(put func(*backup.Item) error) error {
		return backup.EachIter(txn.Iterate(store.IterOptions{Batch: 256}), put)
	}}}, backup.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The server side of epochs: a request from an older epoch applies and
// pulls nothing; restated states merge only within the caller's teams and
// never bring back an erased record; the done page re-bases the
// high-water (never lowering it) once per epoch.
func TestRestateAfterRestore(t *testing.T) {
	wall := newFakeWall()
	e1 := openTest(t, Options{Wall: wall.Now})
	ann := newDevice("ann", wall.Now, "wigan")
	ann.write("wigan", "people", "p1", "given_name", "before")
	ann.commit()
	ann.syncAll(t, e1)
	file := takeBackup(t, e1)
	oldEpoch := e1.Epoch()
	// After the backup: two more acknowledged changes, one pending.
	ann.write("wigan", "people", "p2", "given_name", "after 1")
	ann.commit()
	ann.write("wigan", "people", "p3", "given_name", "after 2")
	ann.commit()
	resp, err := e1.Sync(bg, ann.caller, ann.request())
	if err != nil {
		t.Fatal(err)
	}
	ann.receive(t, resp)
	if !bytes.Equal(resp.Epoch, oldEpoch[:]) {
		t.Fatal("reply carries no epoch")
	}
	ann.write("wigan", "people", "p1", "phone", "pending")
	pending := ann.commit() // seq 4, not sent
	e1.Close()

	e2 := openTestAt(t, restoreInto(t, file), Options{Wall: wall.Now})
	if e2.Epoch() == oldEpoch {
		t.Fatal("restored engine kept the epoch")
	}
	// A record created and erased on the restored server before ann
	// comes back, which ann also holds (she pulled it).
	bea := newDevice("bea", wall.Now, "wigan")
	bea.write("wigan", "people", "p9", "given_name", "to erase")
	bea.commit()
	bea.syncAll(t, e2)
	if _, err := e2.Erase(bg, Caller{User: "admin", Teams: []string{"wigan"}}, api.RecordRef{Team: "wigan", Collection: "people", ID: "p9"}, false); err != nil {
		t.Fatal(err)
	}
	ann.rec("wigan", "people", "p9").Merge(bea.rec("wigan", "people", "p9"))

	// 1. The stale request: nothing applied, nothing pulled.
	req := ann.request()
	req.Epoch = oldEpoch[:]
	resp, err = e2.Sync(bg, ann.caller, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != 0 || len(resp.Snapshot) != 0 || len(resp.Changes) != 0 || bytes.Equal(resp.Epoch, oldEpoch[:]) {
		t.Fatalf("stale reply %+v", resp)
	}
	// 2. Restate: ann's records, plus a forged record of another team.
	var states []crdt.RecordBytes
	for _, r := range ann.recs {
		b, _ := crdt.MarshalRecord(r)
		states = append(states, b)
	}
	other := crdt.NewRecord("ashton", "people", "x1")
	other.Apply(&crdt.Op{ID: ann.nextID(), Team: "ashton", Collection: "people", Record: "x1", Field: "given_name", Kind: crdt.KindWrite, Value: crdt.MustValue("forged")})
	ob, _ := crdt.MarshalRecord(other)
	states = append(states, ob)
	resp, err = e2.Sync(bg, ann.caller, &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: ann.caller.Replica, Epoch: oldEpoch[:], Restate: states, RestateDone: true, Rebase: pending.Seq - 1})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Restated != 3 { // p1 (phone pending), p2, p3 — not p9 (erased), not x1 (other team)
		t.Fatalf("restated %d, want 3", resp.Restated)
	}
	// ann never pulled p9's erasure and her bootstrap will not list it:
	// the reply that refuses its state tells her to purge it.
	if want := []api.RecordRef{{Team: "wigan", Collection: "people", ID: "p9"}}; !slices.Equal(resp.Purged, want) {
		t.Fatalf("restate reply purges %v, want %v", resp.Purged, want)
	}
	cat := Caller{User: "cat", Teams: []string{"wigan", "ashton"}}
	for _, id := range []string{"p2", "p3"} {
		if _, err := e2.Record(bg, cat, api.RecordRef{Team: "wigan", Collection: "people", ID: id}); err != nil {
			t.Fatalf("%s not restored: %v", id, err)
		}
	}
	for _, ref := range []api.RecordRef{{Team: "wigan", Collection: "people", ID: "p9"}, {Team: "ashton", Collection: "people", ID: "x1"}} {
		if _, err := e2.Record(bg, cat, ref); err == nil {
			t.Fatalf("%v merged from a restate", ref)
		}
	}
	// 3. Re-based: the pending change is applied at its own seq.
	req = ann.request()
	req.Epoch, req.Cursor = resp.Epoch, nil
	resp, err = e2.Sync(bg, ann.caller, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != 1 || resp.Results[0].Status != api.ChangeApplied {
		t.Fatalf("pending change after the rebase: %+v", resp.Results)
	}
	// 4. A repeated restate in the same epoch merges nothing and cannot
	// lower the high-water.
	resp, err = e2.Sync(bg, ann.caller, &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: ann.caller.Replica, Epoch: oldEpoch[:], Restate: states, RestateDone: true, Rebase: 1})
	if err != nil || resp.Restated != 0 {
		t.Fatalf("repeat restate: %v %+v", err, resp)
	}
	ann.write("wigan", "people", "p1", "phone", "next")
	ch := ann.commit()
	if res, err := e2.Push(bg, ann.caller, []api.Change{ch}); err != nil || res[0].Status != api.ChangeApplied {
		t.Fatalf("next change: %+v %v", res, err)
	}
	// bea, following the log since before the restate, pulls the
	// restated records as snapshot states; a new device bootstraps them.
	bea.syncAll(t, e2)
	if w, _ := bea.rec("wigan", "people", "p2").Field("given_name").Winner(); !bytes.Equal(w.Value, crdt.MustValue("after 1")) {
		t.Fatalf("bea's p2: %+v", bea.rec("wigan", "people", "p2"))
	}
	cal := newDevice("cal", wall.Now, "wigan")
	cal.syncAll(t, e2)
	if w, _ := cal.rec("wigan", "people", "p3").Field("given_name").Winner(); !bytes.Equal(w.Value, crdt.MustValue("after 2")) {
		t.Fatalf("cal's p3: %+v", cal.rec("wigan", "people", "p3"))
	}
}

// A restate naming an epoch the store never had may only hand over the
// caller's own entries: a device cannot plant values under another
// device's op IDs with a made-up epoch.
func TestRestateUnknownEpochOwnOnly(t *testing.T) {
	wall := newFakeWall()
	e := openTest(t, Options{Wall: wall.Now})
	ann := newDevice("ann", wall.Now, "wigan")
	victim := crdt.NewReplicaID()
	rec := crdt.NewRecord("wigan", "people", "p1")
	rec.Apply(&crdt.Op{ID: crdt.OpID{Time: ann.clock.Now(), Replica: victim}, Team: "wigan", Collection: "people", Record: "p1", Field: "phone", Kind: crdt.KindWrite, Value: crdt.MustValue("planted")})
	rec.Apply(&crdt.Op{ID: ann.nextID(), Team: "wigan", Collection: "people", Record: "p1", Field: "given_name", Kind: crdt.KindWrite, Value: crdt.MustValue("own")})
	b, _ := crdt.MarshalRecord(rec)
	made := bytes.Repeat([]byte{7}, 16)
	if _, err := e.Sync(bg, ann.caller, &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: ann.caller.Replica, Epoch: made, Restate: []crdt.RecordBytes{b}, RestateDone: true}); err != nil {
		t.Fatal(err)
	}
	got, err := e.Record(bg, Caller{User: "cat", Teams: []string{"wigan"}}, api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Field("phone") != nil || got.Field("given_name") == nil {
		t.Fatalf("from an unknown epoch: %+v", got.Fields)
	}
}

// A device that predates epochs (no Epoch in its requests) is not wedged
// by a restore: its cursor names the old epoch, so its high-water seq is
// re-based to just below its first change, and it bootstraps again.
func TestLegacyDeviceRebased(t *testing.T) {
	wall := newFakeWall()
	e1 := openTest(t, Options{Wall: wall.Now})
	old := newDevice("old", wall.Now, "wigan")
	old.write("wigan", "people", "p1", "given_name", "one")
	old.commit()
	old.syncAll(t, e1)
	file := takeBackup(t, e1)
	old.write("wigan", "people", "p2", "given_name", "two")
	old.commit()
	old.syncAll(t, e1) // seq 2 acknowledged, then lost by the restore
	old.write("wigan", "people", "p3", "given_name", "three")
	old.commit() // seq 3 pending
	e1.Close()
	e2 := openTestAt(t, restoreInto(t, file), Options{Wall: wall.Now})
	resp, err := e2.Sync(bg, old.caller, old.request()) // no Epoch: an old SDK
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != 1 || resp.Results[0].Status != api.ChangeApplied {
		t.Fatalf("old device after the restore: %+v", resp.Results)
	}
	if len(resp.Snapshot) == 0 {
		t.Fatal("old-epoch cursor did not bootstrap again")
	}
}

// A restated register removal with no newer write is not taken: a device
// cannot blank a field, or take a concurrent value out of review, by
// listing its ID as removed.
func TestRestateRemovalNeedsWrite(t *testing.T) {
	wall := newFakeWall()
	e1 := openTest(t, Options{Wall: wall.Now})
	bea := newDevice("bea", wall.Now, "wigan")
	w := bea.write("wigan", "people", "p1", "phone", "bea's number")
	bea.commit()
	bea.syncAll(t, e1)
	file := takeBackup(t, e1)
	old := e1.Epoch()
	e1.Close()
	e2 := openTestAt(t, restoreInto(t, file), Options{Wall: wall.Now})
	ann := newDevice("ann", wall.Now, "wigan")
	forged := crdt.NewRecord("wigan", "people", "p1")
	// It claims to have seen bea's write and holds only an older one of its own.
	older := crdt.OpID{Time: w.ID.Time - 1, Replica: ann.caller.Replica}
	forged.Fields["phone"] = &crdt.Field{Type: crdt.Register, Entries: []crdt.Entry{{ID: older, Value: crdt.MustValue("forged")}}}
	forged.Clock = []crdt.Seen{{Replica: older.Replica, Time: older.Time}, {Replica: w.ID.Replica, Time: w.ID.Time}}
	slices.SortFunc(forged.Clock, func(a, b crdt.Seen) int { return bytes.Compare(a.Replica[:], b.Replica[:]) })
	b, _ := crdt.MarshalRecord(forged)
	if _, err := e2.Sync(bg, ann.caller, &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: ann.caller.Replica, Epoch: old[:], Restate: []crdt.RecordBytes{b}, RestateDone: true}); err != nil {
		t.Fatal(err)
	}
	got, err := e2.Record(bg, Caller{User: "cat", Teams: []string{"wigan"}}, api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	if win, ok := got.Field("phone").Winner(); !ok || !bytes.Equal(win.Value, crdt.MustValue("bea's number")) {
		t.Fatalf("phone blanked by a restate: %+v", got.Field("phone"))
	}
}
