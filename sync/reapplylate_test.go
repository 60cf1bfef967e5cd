package sync

import (
	"reflect"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// TestReapplyAfterLaterOps: a quarantined op reapplied after its device's
// later ops on the same record were merged arrives out of its writer's
// order, which a record's causal context cannot take as it is (it would
// read as already applied, and a log entry would vanish). Reapply then
// merges it as a new op of the server replica that names the original in
// pred, so every replica, the writer included, converges on one copy.
func TestReapplyAfterLaterOps(t *testing.T) {
	wall := newFakeWall()
	val := rejectFields{"notes": true, "score": true}
	e := openTest(t, Options{Wall: wall.Now, Validator: val})
	ann := newDevice("ann", wall.Now, "wigan")
	bad := ann.appendLog("wigan", "people", "p1", "notes", 11) // quarantined
	badW := ann.write("wigan", "people", "p1", "score", 12)    // quarantined
	ann.appendLog("wigan", "people", "p1", "notes", 3)
	ann.write("wigan", "people", "p1", "mobility", "frame")
	res := push(t, e, ann, ann.commit())
	if len(res[0].Ops) != 2 || !res[0].Ops[0].Quarantined || !res[0].Ops[1].Quarantined {
		t.Fatalf("op results %+v", res[0].Ops)
	}
	ann.outbox = nil
	ann.syncAll(t, e)
	bea := newDevice("bea", wall.Now, "wigan")
	bea.syncAll(t, e)

	// The schema is fixed; an admin reapplies both.
	delete(val, "notes")
	delete(val, "score")
	q, err := e.Quarantined(bg, 10)
	if err != nil || len(q) != 2 {
		t.Fatalf("quarantine %+v %v", q, err)
	}
	for _, qo := range q {
		if err := e.Reapply(bg, qo.ID); err != nil {
			t.Fatalf("reapply %d: %v", qo.ID, err)
		}
	}
	ann.syncAll(t, e)
	bea.syncAll(t, e)
	ref := api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"}
	srv := serverRecords(t, e, "wigan")[ref]
	for who, r := range map[string]*crdt.Record{"server": srv, "ann": ann.recs[ref], "bea": bea.recs[ref]} {
		notes := r.Field("notes")
		if notes == nil || len(notes.Entries) != 2 {
			t.Fatalf("%s: notes %+v, want both entries", who, notes)
		}
		var got []int
		for _, en := range notes.Entries {
			var n int
			if err := decodeValue(en.Value, &n); err != nil {
				t.Fatal(err)
			}
			got = append(got, n)
		}
		if got[0]+got[1] != 14 {
			t.Fatalf("%s: notes %v, want 11 and 3", who, got)
		}
		w, _ := r.Field("score").Winner()
		if r.Field("score").Conflict() || string(w.Value) != string(badW.Value) {
			t.Fatalf("%s: score %+v", who, r.Field("score"))
		}
		if notes.HasEntry(bad.ID) {
			t.Fatalf("%s: the original entry is live: no server copy replaced it", who)
		}
	}
	// The states hold the same values; their causal contexts differ
	// (the server remembers the original as skipped, bea never saw it,
	// ann applied and replaced it), which no reader sees.
	if a, b, c := visibleOf(ann.recs[ref]), visibleOf(bea.recs[ref]), visibleOf(srv); !reflect.DeepEqual(a, b) || !reflect.DeepEqual(b, c) {
		t.Fatalf("replicas show different values:\nann %+v\nbea %+v\nserver %+v", a, b, c)
	}
}
