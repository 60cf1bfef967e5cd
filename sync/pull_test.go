package sync

import (
	"bytes"
	"fmt"
	"github.com/doorstep-health/doorstep/store"
	"math/rand/v2"
	gosync "sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// TestPullPagesNeverSkipOrRepeat pulls in small pages while several devices
// push concurrently, across two teams, and checks that every accepted op of
// the puller's teams arrives exactly once and in log order.
func TestPullPagesNeverSkipOrRepeat(t *testing.T) {
	seed := testSeed(t)
	e := openTest(t, Options{PageBytes: 4 << 10})
	teams := []string{"wigan", "ashton", "bury"}
	const pushers, changesEach = 4, 40

	puller := Caller{User: "cara", Replica: crdt.NewReplicaID(), Teams: []string{"wigan", "ashton"}}
	seen := map[crdt.OpID]int{}
	var cur []byte
	pages := 0
	pull := func() bool {
		resp, err := e.Pull(bg, puller, cur, 3)
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		pages++
		for _, raw := range resp.Snapshot {
			s, err := raw.Record()
			if err != nil {
				t.Fatalf("decode snapshot record: %v", err)
			}
			t.Fatalf("snapshot record %s/%s on an empty-at-start store", s.Collection, s.ID)
		}
		for _, c := range resp.Changes {
			for _, op := range pulledOps(t, c) {
				seen[op.ID]++
				if op.Team == "bury" {
					t.Fatalf("pulled an op of team bury")
				}
			}
		}
		cur = resp.Cursor
		return resp.More
	}
	pull() // bootstraps on an empty store: the cursor then follows the log from 0

	var mu gosync.Mutex
	pushed := map[crdt.OpID]string{} // op → team, for the ops acknowledged
	var wg gosync.WaitGroup
	for p := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(p)))
			d := newDevice(fmt.Sprintf("dev%d", p), time.Now, teams...)
			for i := range changesEach {
				for range 1 + rng.IntN(5) {
					team := teams[rng.IntN(len(teams))]
					d.write(team, "contacts", fmt.Sprintf("%s-c%d-%d", team, p, rng.IntN(10)), fmt.Sprintf("f%d", rng.IntN(4)), i)
				}
				ch := d.commit()
				res, err := e.Push(bg, d.caller, []api.Change{ch})
				if err != nil || res[0].Status != api.ChangeApplied || len(res[0].Ops) != 0 {
					t.Errorf("push: %+v %v", res, err)
					return
				}
				mu.Lock()
				for _, op := range ch.Ops {
					pushed[op.ID] = op.Team
				}
				mu.Unlock()
			}
		}()
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			pull()
			time.Sleep(100 * time.Microsecond)
		}
	}
	for pull() {
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("op %s pulled %d times", id, n)
		}
	}
	for id, team := range pushed {
		if team != "bury" && seen[id] != 1 {
			t.Fatalf("op %s of %s never pulled", id, team)
		}
	}
	t.Logf("%d pages, %d ops pulled", pages, len(seen))
}

// TestPullLogOrderAndCursorBoundaries checks page boundaries exactly: a
// change that spans two teams arrives once, as one change, never split.
func TestPullLogOrderAndCursorBoundaries(t *testing.T) {
	e := openTest(t, Options{})
	d := newDevice("ann", time.Now, "wigan", "ashton")
	for i := range 20 {
		d.write("wigan", "people", "p1", "n", i)
		if i%3 == 0 {
			d.write("ashton", "people", "p2", "n", i)
		}
		d.commit()
	}
	d.syncAll(t, e)
	c := Caller{User: "x", Replica: crdt.NewReplicaID(), Teams: []string{"ashton", "wigan"}}
	cur := cursor{mode: modeLog, teams: teamsHash(teamSet(c.Teams))}.encode()
	var got []int
	for {
		resp, err := e.Pull(bg, c, cur, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Changes) > 4 {
			t.Fatalf("page of %d changes, limit 4", len(resp.Changes))
		}
		for _, ch := range resp.Changes {
			var v int
			if err := decodeValue(pulledOps(t, ch)[0].Value, &v); err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
			want := 1
			if v%3 == 0 {
				want = 2
			}
			if ch.Ops.Len() != want {
				t.Fatalf("change %d has %d ops, want %d", v, ch.Ops.Len(), want)
			}
		}
		cur = resp.Cursor
		if !resp.More {
			break
		}
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("changes out of order: %v", got)
		}
	}
	if len(got) != 20 {
		t.Fatalf("pulled %d changes, want 20", len(got))
	}
}

// TestSnapshotFollowEqualsReplay bootstraps a device from a snapshot in
// small pages while writes continue between pages, then follows the log;
// its states must equal, byte for byte, both the server's and a full
// replay of the log from position 0.
func TestSnapshotFollowEqualsReplay(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	e := openTest(t, Options{PageBytes: 2 << 10})
	writers := []*device{newDevice("ann", time.Now, "wigan"), newDevice("bea", time.Now, "wigan")}
	work := func(n int) {
		for range n {
			w := writers[rng.IntN(len(writers))]
			id := fmt.Sprintf("p%d", rng.IntN(30))
			switch rng.IntN(4) {
			case 0:
				w.add("wigan", "people", id, "needs", fmt.Sprintf("need%d", rng.IntN(5)))
			case 1:
				w.remove("wigan", "people", id, "needs", fmt.Sprintf("need%d", rng.IntN(5)))
			case 2:
				w.appendLog("wigan", "people", id, "notes", rng.Int())
			default:
				w.write("wigan", "people", id, fmt.Sprintf("f%d", rng.IntN(6)), rng.IntN(100))
			}
			if rng.IntN(3) == 0 {
				w.commit()
				w.syncAll(t, e)
			}
		}
		for _, w := range writers {
			w.commit()
			w.syncAll(t, e)
		}
	}
	work(300)
	fresh := newDevice("cara", time.Now, "wigan")
	pages := 0
	for {
		resp, err := e.Pull(bg, fresh.caller, fresh.cursor, 5)
		if err != nil {
			t.Fatal(err)
		}
		// The stored bytes served as they are must be what decoding and
		// re-encoding them would send: the canonical form.
		for _, raw := range resp.Snapshot {
			rec, err := raw.Record()
			if err != nil {
				t.Fatalf("snapshot record: %v", err)
			}
			if b, err := crdt.MarshalRecord(rec); err != nil || !bytes.Equal(b, raw) {
				t.Fatalf("snapshot record %s is not canonical (%v):\n got %x\nwant %x", rec.ID, err, raw, b)
			}
		}
		fresh.receive(t, resp)
		pages++
		if len(resp.Snapshot) > 0 {
			work(20) // writes land between snapshot pages
		}
		if !resp.More {
			break
		}
	}
	fresh.syncAll(t, e)
	server := encoded(t, serverRecords(t, e, "wigan"))
	if d := diffStates(server, encoded(t, fresh.recs)); d != "" {
		t.Fatalf("snapshot+follow vs server: %s", d)
	}
	replay := newDevice("dan", time.Now, "wigan")
	replay.cursor = cursor{mode: modeLog, teams: teamsHash([]string{"wigan"})}.encode()
	replay.syncAll(t, e)
	if d := diffStates(server, encoded(t, replay.recs)); d != "" {
		t.Fatalf("full replay vs server: %s", d)
	}
	for _, w := range writers {
		w.syncAll(t, e)
		if d := diffStates(server, encoded(t, w.recs)); d != "" {
			t.Fatalf("writer %s vs server: %s", w.caller.User, d)
		}
	}
	t.Logf("%d records, bootstrap in %d pages", len(server), pages)
}

// TestCursorForOtherTeamsBootstraps: a cursor minted for another team set
// starts a new snapshot, so a user added to a team receives its records.
func TestCursorForOtherTeamsBootstraps(t *testing.T) {
	e := openTest(t, Options{})
	a := newDevice("ann", time.Now, "wigan")
	a.write("wigan", "people", "p1", "n", 1)
	a.commit()
	a.syncAll(t, e)
	b := newDevice("bea", time.Now, "ashton")
	b.write("ashton", "people", "p2", "n", 2)
	b.commit()
	b.syncAll(t, e)
	if len(b.recs) != 1 {
		t.Fatalf("ashton device holds %d records", len(b.recs))
	}
	b.caller.Teams = []string{"ashton", "wigan"}
	b.syncAll(t, e)
	if len(b.recs) != 2 {
		t.Fatalf("after joining wigan the device holds %d records, want 2", len(b.recs))
	}
}

// TestExpiredOrForeignCursorBootstraps: a log cursor older than the
// retained log, or ahead of it (a server restored from an older backup),
// bootstraps from a snapshot instead of skipping changes.
func TestExpiredOrForeignCursorBootstraps(t *testing.T) {
	e := openTest(t, Options{})
	a := newDevice("ann", time.Now, "wigan")
	for i := range 5 {
		a.write("wigan", "people", fmt.Sprintf("p%d", i), "n", i)
		a.commit()
	}
	a.syncAll(t, e)
	c := Caller{User: "bea", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	old := cursor{mode: modeLog, pos: 1, teams: teamsHash(c.Teams)}.encode()

	resp, err := e.Pull(bg, c, old, 0)
	if err != nil || len(resp.Snapshot) != 0 || len(resp.Changes) != 4 {
		t.Fatalf("within retention: %d records, %d changes, %v", len(resp.Snapshot), len(resp.Changes), err)
	}
	// Log entries at or below 3 may be gone.
	if err := e.kv.Update(bg, func(txn store.Tx) error { return txn.Set(store.KeyLogFloor, store.PutU64(3)) }); err != nil {
		t.Fatal(err)
	}
	resp, err = e.Pull(bg, c, old, 0)
	if err != nil || len(resp.Snapshot) != 5 || len(resp.Changes) != 0 {
		t.Fatalf("expired cursor: %d records, %d changes, %v", len(resp.Snapshot), len(resp.Changes), err)
	}
	ahead := cursor{mode: modeLog, pos: 1000, teams: teamsHash(c.Teams)}.encode()
	resp, err = e.Pull(bg, c, ahead, 0)
	if err != nil || len(resp.Snapshot) != 5 {
		t.Fatalf("cursor ahead of the log: %d records, %v", len(resp.Snapshot), err)
	}
}
