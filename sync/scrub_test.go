package sync

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/internal/rawgrep"
	"github.com/doorstep-health/doorstep/store"
)

// filesMentioning lists the files under dir whose raw bytes contain s.
func filesMentioning(t *testing.T, dir, s string) []string {
	t.Helper()
	out, err := rawgrep.Files(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	for i := range out {
		out[i] = filepath.Base(out[i])
	}
	return out
}

// An erasure reaches the disk: once Erase returns, the erased person's
// distinctive strings are in no file of the data directory — neither the
// write-ahead log (*.mem) nor tables (*.sst) written before a restart —
// while a neighbour sharing log entries with them keeps every op and
// other devices still pull them.
func TestEraseScrubsDataFiles(t *testing.T) {
	for _, restart := range []bool{false, true} {
		name := "in memtable"
		if restart {
			name = "in tables after a restart"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			wall := newFakeWall()
			e, err := Open(context.Background(), Options{Store: badgerKV(t, dir), Wall: wall.Now, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			const team = "wigan"
			d := newDevice("ann", wall.Now, team)
			const secret, phone, street = "Zebedee Quartermaine", "07700 900461", "17 Pennyfeather Close"
			d.write(team, "people", "p1", "given_name", secret)
			d.write(team, "people", "p2", "given_name", "Neighbour Norah")
			d.commit()
			d.write(team, "people", "p1", "phone", phone)
			d.write(team, "people", "p1", "phone", phone+" (mobile)")
			d.write(team, "people", "p1", "address", street)
			d.write(team, "people", "p2", "phone", "01942 111222")
			d.commit()
			d.write(team, "contacts", "c1", "person_id", "p1")
			d.appendLog(team, "contacts", "c1", "notes", "Visited "+secret+" at "+street)
			d.commit()
			d.syncAll(t, e)
			if restart {
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
				if e, err = Open(context.Background(), Options{Store: badgerKV(t, dir), Wall: wall.Now, Logger: quietLogger()}); err != nil {
					t.Fatal(err)
				}
			}
			defer e.Close()
			for _, s := range []string{secret, phone, street} {
				if len(filesMentioning(t, dir, s)) == 0 {
					t.Fatalf("%q not on disk before the erasure: the test proves nothing", s)
				}
			}
			rep, err := e.Erase(bg, Caller{User: "admin", Teams: []string{team}}, api.RecordRef{Team: team, Collection: "people", ID: "p1"}, true)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Scrubbed || len(rep.Records) != 2 {
				t.Fatalf("report %+v", rep)
			}
			for _, s := range []string{secret, phone, street} {
				if f := filesMentioning(t, dir, s); len(f) > 0 {
					t.Errorf("%q still in %v after the erasure", s, f)
				}
			}
			// The neighbour is intact and still pulled by a new device.
			other := newDevice("bea", wall.Now, team)
			other.syncAll(t, e)
			p2 := other.rec(team, "people", "p2")
			if w, _ := p2.Field("phone").Winner(); !bytes.Equal(w.Value, crdt.MustValue("01942 111222")) {
				t.Fatalf("neighbour lost: %+v", p2.Fields)
			}
			if len(filesMentioning(t, dir, "Neighbour Norah")) == 0 {
				t.Fatal("neighbour's name gone from disk")
			}
			// A watcher following the log from position 0 still gets the
			// neighbour's ops from the rewritten entries.
			ids, _, _ := pullAllOps(t, e, Caller{User: "w", Replica: crdt.NewReplicaID(), Teams: []string{team}}, logCursorAt(0), 100)
			if len(ids) != 2 {
				t.Fatalf("pulled %d ops from the log, want the neighbour's 2", len(ids))
			}
		})
	}
}

func logCursorAt(pos uint64) []byte {
	return cursor{mode: modeLog, pos: pos, teams: teamsHash([]string{"wigan"})}.encode()
}

// A crash between a scrub's drop and its write-back loses nothing: the
// held copy of a log entry is put back when the engine opens.
func TestScrubHoldRecovered(t *testing.T) {
	dir := t.TempDir()
	wall := newFakeWall()
	e := openTest(t, Options{Store: badgerKV(t, dir), Wall: wall.Now})
	d := newDevice("ann", wall.Now, "wigan")
	d.write("wigan", "people", "p1", "given_name", "Kept Kate")
	d.commit()
	d.syncAll(t, e)
	key := store.LogKey("wigan", 1)
	// The state a crash after DropPrefix leaves: the hold, no entry.
	err := e.kv.Update(context.Background(), func(txn store.Tx) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err := item, error(nil)
		if err != nil {
			return err
		}
		if err := txn.Set(store.ScrubHoldKey(key), v); err != nil {
			return err
		}
		return txn.Delete(key)
	})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	e = openTest(t, Options{Store: badgerKV(t, dir), Wall: wall.Now})
	ids, _, _ := pullAllOps(t, e, Caller{User: "w", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}, logCursorAt(0), 100)
	if len(ids) != 1 {
		t.Fatalf("log entry not recovered: %d ops", len(ids))
	}
	if err := e.kv.View(context.Background(), func(txn store.Tx) error {
		_, err := txn.Get(store.ScrubHoldKey(key))
		if err == nil {
			t.Error("hold key left behind")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// While a backup transaction is open the scrub waits (its snapshot must
// keep reading every key); it runs as soon as the backup ends.
func TestScrubWaitsForBackup(t *testing.T) {
	dir := t.TempDir()
	wall := newFakeWall()
	e := openTest(t, Options{Store: badgerKV(t, dir), Wall: wall.Now})
	d := newDevice("ann", wall.Now, "wigan")
	const secret = "Ottoline Brackenbury"
	d.write("wigan", "people", "p1", "given_name", secret)
	d.commit()
	d.syncAll(t, e)
	_, _, release, err := e.BackupTxn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := e.Erase(bg, Caller{User: "admin", Teams: []string{"wigan"}}, api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scrubbed || !rep.ScrubPending {
		t.Fatalf("report during a backup: %+v", rep)
	}
	if len(filesMentioning(t, dir, secret)) == 0 {
		t.Fatal("scrubbed while a backup was open")
	}
	release()
	deadline := time.Now().Add(10 * time.Second)
	for len(filesMentioning(t, dir, secret)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("pending scrub did not run after the backup ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
