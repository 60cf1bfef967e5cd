package sync

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// An erasure reaches the disk for big values too: a record state and a log
// entry of over 1 MiB (Badger's value threshold, past which Badger would
// keep them in its value log, *.vlog, which a scrub never rewrote) are gone
// from every file once Erase reports "scrubbed", with or without a restart
// between the write and the erasure, and a neighbour is intact. Before
// store/badger stored big values in chunks, the secret stayed in
// 000001.vlog.
func TestEraseScrubsBigValues(t *testing.T) {
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
			const secret = "Zebedee Quartermaine"
			// 40 fields of 30 kB: a 1.2 MB record state and a 1.2 MB log entry.
			for f := range 40 {
				d.write(team, "people", "p1", fmt.Sprint("notes", f), secret+strings.Repeat("x", 30000))
			}
			d.write(team, "people", "p2", "given_name", "Neighbour Norah")
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
			if len(filesMentioning(t, dir, secret)) == 0 {
				t.Fatalf("%q not on disk before the erasure: the test proves nothing", secret)
			}
			// The big record reads back whole (from its chunks) before the erasure.
			other := newDevice("bea", wall.Now, team)
			other.syncAll(t, e)
			if w, _ := other.rec(team, "people", "p1").Field("notes39").Winner(); !bytes.Equal(w.Value, crdt.MustValue(secret+strings.Repeat("x", 30000))) {
				t.Fatal("big record not pulled whole")
			}
			rep, err := e.Erase(bg, Caller{User: "admin", Teams: []string{team}}, api.RecordRef{Team: team, Collection: "people", ID: "p1"}, true)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Scrubbed {
				t.Fatalf("report %+v", rep)
			}
			if f := filesMentioning(t, dir, secret); len(f) > 0 {
				t.Errorf("%q still in %v after the erasure reported scrubbed", secret, f)
			}
			third := newDevice("cat", wall.Now, team)
			third.syncAll(t, e)
			if w, _ := third.rec(team, "people", "p2").Field("given_name").Winner(); !bytes.Equal(w.Value, crdt.MustValue("Neighbour Norah")) {
				t.Fatal("neighbour lost")
			}
		})
	}
}

// A record near MaxRecordBytes is still accepted by a Badger store with
// small memtables (a 2.4 MiB transaction limit): its chunks are written
// ahead of the commit, so a 3 MB record state and a 3 MB log entry do not
// make the push's transaction too big.
func TestPushBigRecordBadger(t *testing.T) {
	wall := newFakeWall()
	e, err := Open(context.Background(), Options{Store: badgerKV(t, t.TempDir()), Wall: wall.Now, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d := newDevice("ann", wall.Now, "wigan")
	for f := range 3 {
		d.write("wigan", "people", "p1", fmt.Sprint("scan", f), strings.Repeat(fmt.Sprint(f), 1000000))
	}
	d.commit()
	d.syncAll(t, e)
	other := newDevice("bea", wall.Now, "wigan")
	other.syncAll(t, e)
	if w, _ := other.rec("wigan", "people", "p1").Field("scan2").Winner(); !bytes.Equal(w.Value, crdt.MustValue(strings.Repeat("2", 1000000))) {
		t.Fatal("big record not pulled whole")
	}
}
