package sync

import (
	"context"
	"fmt"
	"slices"
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

// TestPreparedPackedSameAsPlain: a push decoded from packed blocks
// (api.SyncRequest.UnpackPacked: its ops validated as decoded, so
// precheck leaves crdt.Op.Validate out) is answered and stored exactly
// as the same changes sent plain, with ops precheck refuses for what
// Validate does not check among them: another replica's op ID, a team
// the caller is not in, a bad record ID, a name too long, an add with a
// pred; and a run of new records merged ahead.
func TestPreparedPackedSameAsPlain(t *testing.T) {
	ctx := context.Background()
	wall := newFakeWall()
	ann := newDevice("ann", wall.Now, "wigan")
	for r := range 3 {
		for f := range 6 {
			ann.write("wigan", "people", fmt.Sprintf("p%d", r), fmt.Sprintf("f%d", f), fmt.Sprint(r, f))
		}
	}
	first := ann.commit()
	other := crdt.NewReplicaID()
	second := api.Change{Seq: 2, Ops: []crdt.Op{
		ann.write("wigan", "people", "p0", "f0", "again"),
		{ID: crdt.OpID{Time: ann.clock.Now(), Replica: other}, Team: "wigan", Collection: "people", Record: "p1", Field: "f1", Kind: crdt.KindWrite, Value: crdt.MustValue("x")},
		{ID: ann.nextID(), Team: "ashton", Collection: "people", Record: "p9", Field: "f1", Kind: crdt.KindWrite, Value: crdt.MustValue("x")},
		{ID: ann.nextID(), Team: "wigan", Collection: "people", Record: "bad id!", Field: "f1", Kind: crdt.KindWrite, Value: crdt.MustValue("x")},
		{ID: ann.nextID(), Team: "wigan", Collection: "people", Record: "p2", Field: string(make([]byte, maxNameLen+1)), Kind: crdt.KindWrite, Value: crdt.MustValue("x")},
		{ID: ann.nextID(), Team: "wigan", Collection: "people", Record: "p2", Field: "tags", Kind: crdt.KindAdd, Value: crdt.MustValue("x"), Pred: []crdt.OpID{first.Ops[0].ID}},
	}}
	for i := range second.Ops {
		if err := second.Ops[i].Validate(); err != nil {
			t.Fatalf("op %d does not pass Validate (a packed push could not carry it): %v", i, err)
		}
	}
	changes := []api.Change{first, second}
	run := func(packed bool) ([]api.ChangeResult, map[api.RecordRef]*crdt.Record) {
		e := openTest(t, Options{Wall: wall.Now})
		req := &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: ann.caller.Replica, Clock: ann.clock.Now(), PushOnly: true}
		if packed {
			for _, c := range changes {
				for _, part := range [][]crdt.Op{c.Ops[:len(c.Ops)/2], c.Ops[len(c.Ops)/2:]} { // continued over two blocks
					b, err := api.PackPush([]api.Change{{Seq: c.Seq, Ops: part}})
					if err != nil {
						t.Fatal(err)
					}
					req.Packed = append(req.Packed, b)
				}
			}
			if err := req.UnpackPacked(0); err != nil || !req.OpsValidated() {
				t.Fatalf("unpack: %v, validated %v", err, req.OpsValidated())
			}
		} else {
			req.Changes = slices.Clone(changes)
		}
		p := e.PrepareSync(ann.caller, req)
		if p.push == nil || len(p.push.ahead[0]) != 3 {
			t.Fatalf("packed %v: prepared %v, want 3 runs merged ahead in the first change", packed, p.push)
		}
		resp, err := e.SyncPrepared(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Results, serverRecords(t, e, "wigan")
	}
	plainRes, plainRecs := run(false)
	packedRes, packedRecs := run(true)
	if fmt.Sprint(plainRes) != fmt.Sprint(packedRes) {
		t.Fatalf("results differ:\nplain  %+v\npacked %+v", plainRes, packedRes)
	}
	if len(plainRes) != 2 || len(plainRes[1].Ops) != 5 {
		t.Fatalf("want 5 ops of the second change refused: %+v", plainRes)
	}
	if diff := diffStates(encoded(t, plainRecs), encoded(t, packedRecs)); diff != "" {
		t.Fatal(diff)
	}
}
