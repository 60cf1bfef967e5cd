package sync

import (
	"fmt"
	"math/rand/v2"
	gosync "sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/memory"
)

// pretendShared is a store that reports Shared, as PostgreSQL does, so
// that two engines in one test process over one memory store behave as two
// server processes over one database (the memory store serializes writers
// and gives snapshot reads, which is all Shared promises). Close does not
// close it: the test owns the memory store.
type pretendShared struct{ store.KV }

func (pretendShared) Shared() bool { return true }
func (pretendShared) Close() error { return nil }

// sharedPair returns two handles on one shared store of the test backend:
// two connections to one PostgreSQL database, or one memory store
// pretending to be shared (Badger, one process's store, falls back to
// memory).
func sharedPair(t *testing.T) (store.KV, store.KV) {
	t.Helper()
	if currentBackend() == "postgres" {
		dir := t.TempDir()
		return postgresKV(t, dir), postgresKV(t, dir)
	}
	m := memory.New(memory.Options{MaxTxnBytes: 2 << 20})
	return pretendShared{m}, pretendShared{m}
}

// TestSharedStoreTwoEngines runs two engines (two server processes) over
// one shared store: devices push through either at random and resend
// through the other as a lost reply makes them do; a device pulls in small
// pages alternating between the engines while the pushes go on; the
// coordinators resolve conflicts through both, with both server clocks
// stuck at the same instant. Every change applies exactly once (a resend
// is a duplicate, whichever engine gets it), the puller receives every op
// exactly once and each device's ops in the order it pushed them, and no
// two server ops share an ID.
func TestSharedStoreTwoEngines(t *testing.T) {
	seed := testSeed(t)
	kv1, kv2 := sharedPair(t)
	// One instant for both server clocks: without the persisted server
	// clock, resolves through both engines would be stamped with equal
	// op IDs (one server replica, one HLC reading).
	frozen := time.Now()
	stuck := func() time.Time { return frozen }
	e1 := openTest(t, Options{Store: kv1, PageBytes: 4 << 10, Wall: stuck})
	e2 := openTest(t, Options{Store: kv2, PageBytes: 4 << 10, Wall: stuck})
	engines := []*Engine{e1, e2}
	if e1.ServerReplica() != e2.ServerReplica() || e1.Epoch() != e2.Epoch() {
		t.Fatal("two engines on one store disagree on the server replica or epoch")
	}

	const pushers, changesEach = 4, 30
	teams := []string{"wigan", "ashton"}
	puller := Caller{User: "cara", Replica: crdt.NewReplicaID(), Teams: teams}
	seen := map[crdt.OpID]int{}
	lastOf := map[crdt.ReplicaID]crdt.Timestamp{}
	var cur []byte
	pages := 0
	pull := func() bool {
		e := engines[pages%2] // the cursor one engine minted, served by the other
		resp, err := e.Pull(bg, puller, cur, 3)
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		pages++
		if len(resp.Snapshot) > 0 && pages > 1 {
			t.Fatalf("page %d bootstraps again (%d records)", pages, len(resp.Snapshot))
		}
		for _, c := range resp.Changes {
			// A change's ops are all newer than its device's earlier
			// changes (the device clock only moves on), so the changes
			// of one device arrive in push order when each one's oldest
			// op is newer than the newest op before it.
			ops := pulledOps(t, c)
			first, last := ops[0].ID.Time, ops[0].ID.Time
			for _, op := range ops {
				seen[op.ID]++
				first, last = min(first, op.ID.Time), max(last, op.ID.Time)
			}
			r := ops[0].ID.Replica
			if r == e1.ServerReplica() {
				continue
			}
			if first <= lastOf[r] {
				t.Fatalf("a change of %s pulled after a newer one: out of push order", r)
			}
			lastOf[r] = last
		}
		cur = resp.Cursor
		return resp.More
	}
	pull() // an empty store: the cursor then follows the log from 0

	var mu gosync.Mutex
	pushed := map[crdt.OpID]bool{}
	var wg gosync.WaitGroup
	for p := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(p)))
			d := newDevice(fmt.Sprintf("dev%d", p), time.Now, teams...)
			for i := range changesEach {
				for range 1 + rng.IntN(4) {
					team := teams[rng.IntN(len(teams))]
					d.write(team, "contacts", fmt.Sprintf("%s-c%d-%d", team, p, rng.IntN(8)), fmt.Sprintf("f%d", rng.IntN(3)), i)
				}
				ch := d.commit()
				k := rng.IntN(2)
				res, err := engines[k].Push(bg, d.caller, []api.Change{ch})
				if err != nil || res[0].Status != api.ChangeApplied || len(res[0].Ops) != 0 {
					t.Errorf("push through engine %d: %+v %v", k+1, res, err)
					return
				}
				mu.Lock()
				for _, op := range ch.Ops {
					pushed[op.ID] = true
				}
				mu.Unlock()
				if rng.IntN(4) == 0 {
					// The reply was lost; the device resends through the
					// other server.
					res, err := engines[1-k].Push(bg, d.caller, []api.Change{ch})
					if err != nil || res[0].Status != api.ChangeDuplicate {
						t.Errorf("resend through engine %d: %+v %v", 2-k, res, err)
						return
					}
				}
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
			time.Sleep(200 * time.Microsecond)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Conflicts on ten records, resolved through both engines at once.
	ann := newDevice("ann", time.Now, "wigan")
	bea := newDevice("bea", time.Now, "wigan")
	const conflicted = 10
	for i := range conflicted {
		ann.write("wigan", "people", fmt.Sprintf("p%d", i), "mobility", "stick")
	}
	ann.commit()
	ann.syncAll(t, e1)
	bea.syncAll(t, e2)
	for i := range conflicted {
		ann.write("wigan", "people", fmt.Sprintf("p%d", i), "mobility", "frame")
		bea.write("wigan", "people", fmt.Sprintf("p%d", i), "mobility", "wheelchair")
	}
	ann.commit()
	bea.commit()
	ann.syncAll(t, e2)
	bea.syncAll(t, e1)
	coord := Caller{User: "cara", Teams: []string{"wigan"}, Role: api.RoleCoordinator}
	errs := make(chan error, conflicted)
	for i := range conflicted {
		go func() {
			ref := api.RecordRef{Team: "wigan", Collection: "people", ID: fmt.Sprintf("p%d", i)}
			_, err := engines[i%2].Resolve(bg, coord, ref, "mobility", crdt.MustValue("frame"))
			errs <- err
		}()
	}
	for range conflicted {
		if err := <-errs; err != nil {
			t.Fatalf("resolve: %v", err)
		}
	}
	for pull() {
	}

	for id := range pushed {
		if seen[id] != 1 {
			t.Fatalf("pushed op %s pulled %d times", id, seen[id])
		}
	}
	server := 0
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("op %s pulled %d times (two ops under one ID?)", id, n)
		}
		if id.Replica == e1.ServerReplica() {
			server++
		}
	}
	if server != conflicted {
		t.Fatalf("%d distinct server ops pulled, want %d resolves", server, conflicted)
	}
	// Both devices converge on the resolutions, through either engine.
	ann.syncAll(t, e1)
	bea.syncAll(t, e2)
	if diff := diffStates(encoded(t, ann.recs), encoded(t, bea.recs)); diff != "" {
		t.Fatal(diff)
	}

	// An erasure through one engine (its scrub on a shared store drops only
	// deleted keys): the puller learns of it once, from either engine, and
	// a new device bootstrapping through the other gets every other record
	// of the rewritten changes, and not the erased one.
	erased := api.RecordRef{Team: "wigan", Collection: "people", ID: "p0"}
	rep, err := e2.Erase(bg, Caller{User: "admin", Teams: []string{"wigan"}}, erased, false)
	if err != nil || rep.ScrubError != "" || rep.EntriesRewritten == 0 {
		t.Fatalf("erase: %+v %v", rep, err)
	}
	purged := 0
	for more := true; more; {
		resp, err := engines[pages%2].Pull(bg, puller, cur, 3)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, p := range resp.Purged {
			if p != erased {
				t.Fatalf("purged %v", p)
			}
			purged++
		}
		cur, more = resp.Cursor, resp.More
	}
	if purged != 1 {
		t.Fatalf("erasure pulled %d times, want once", purged)
	}
	zed := newDevice("zed", time.Now, "wigan")
	zed.syncAll(t, e1)
	want := encoded(t, bea.recs)
	delete(want, erased)
	got := encoded(t, zed.recs)
	for ref := range got {
		if ref.Collection != "people" {
			delete(got, ref)
		}
	}
	for ref := range want {
		if ref.Collection != "people" {
			delete(want, ref)
		}
	}
	if diff := diffStates(got, want); diff != "" {
		t.Fatalf("bootstrap after the erasure: %s", diff)
	}
	t.Logf("%d pages, %d ops pulled", pages, len(seen))
}
