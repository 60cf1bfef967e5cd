package sync

import (
	"context"
	"fmt"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// storedState returns the canonical encoding of a stored record, as c reads it.
func storedState(t *testing.T, e *Engine, c Caller, ref api.RecordRef) string {
	t.Helper()
	r, err := e.Record(context.Background(), c, ref)
	if err != nil {
		t.Fatalf("read %v: %v", ref, err)
	}
	b, err := crdt.MarshalRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPreparedPushMergedAheadOfAWriteSinceIsCheckedAgain: a push prepared
// while its record is still blank (its run merged ahead into a new
// record's state) and committed after another device's ops and the same
// device's change before it have reached that record stores what pushing
// it then would have: the committer does not take the stale merged-ahead
// state, but merges the ops into what is stored. A pipelined request
// prepared before the one it follows commits is still refused as seq_gap,
// and changes nothing.
func TestPreparedPushMergedAheadOfAWriteSinceIsCheckedAgain(t *testing.T) {
	ctx := context.Background()
	wall := newFakeWall()
	ann := newDevice("ann", wall.Now, "wigan")
	bea := newDevice("bea", wall.Now, "wigan")
	ref := api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"}
	for i := range 6 { // seq 1: a run of six ops on p1
		ann.write("wigan", "people", "p1", fmt.Sprintf("f%d", i), "one")
	}
	first := ann.commit()
	for i := range 6 { // seq 2: six more fields of the same record, merged ahead in its prepare
		ann.write("wigan", "people", "p1", fmt.Sprintf("f%d", i+6), "two")
	}
	second := ann.commit()
	for i := range 5 {
		bea.write("wigan", "people", "p1", fmt.Sprintf("g%d", i), "bea")
	}
	beas := bea.commit()
	run := func(prepareEarly bool) (string, []api.ChangeResult) {
		e := openTest(t, Options{Wall: wall.Now})
		req2 := &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: ann.caller.Replica, Clock: ann.clock.Now(), Changes: []api.Change{second}, PushOnly: true}
		var p2 *PreparedSync
		if prepareEarly {
			p2 = e.PrepareSync(ann.caller, req2)
			if p2.push == nil || len(p2.push.ahead[0]) != 1 {
				t.Fatalf("seq 2 prepared with runs merged ahead %v, want one", p2.push)
			}
			// Seq 2 before seq 1: seq_gap, nothing stored; its prepared
			// work is not spent (a retry would prepare again).
			gap := e.PrepareSync(ann.caller, req2)
			resp, err := e.SyncPrepared(ctx, gap)
			if err != nil || len(resp.Results) != 1 || resp.Results[0].Code != api.CodeSeqGap {
				t.Fatalf("seq 2 before seq 1: %+v, %v", resp, err)
			}
		}
		// Another device writes p1 meanwhile, then seq 1 commits.
		if _, err := e.Push(ctx, bea.caller, []api.Change{beas}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Push(ctx, ann.caller, []api.Change{first}); err != nil {
			t.Fatal(err)
		}
		if !prepareEarly {
			p2 = e.PrepareSync(ann.caller, req2)
		}
		resp, err := e.SyncPrepared(ctx, p2)
		if err != nil {
			t.Fatal(err)
		}
		return storedState(t, e, ann.caller, ref), resp.Results
	}
	late, lateRes := run(false)
	early, earlyRes := run(true)
	if len(earlyRes) != 1 || earlyRes[0].Status != api.ChangeApplied || len(earlyRes[0].Ops) != 0 {
		t.Fatalf("seq 2 prepared early: %+v", earlyRes)
	}
	if fmt.Sprint(earlyRes) != fmt.Sprint(lateRes) {
		t.Fatalf("results differ: prepared early %+v, late %+v", earlyRes, lateRes)
	}
	if early != late {
		t.Fatal("a push prepared before the writes ahead of it committed stored another state than one prepared after them")
	}
	rec, err := crdt.UnmarshalRecord([]byte(early))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"f0", "f8", "g4"} {
		if _, ok := rec.Fields[f]; !ok {
			t.Fatalf("field %s lost: %v", f, rec.Fields)
		}
	}
}
