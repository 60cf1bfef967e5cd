package web

import (
	"context"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// TestOutcomesCacheFollowsChanges: the cached export equals a fresh
// computation after new assessments (caught up from the changed records)
// and after an erasure (rebuilt), and another team's export is refused.
func TestOutcomesCacheFollowsChanges(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	team := "wigan-frailty"
	coord := e.callers["amara"] // a member of the team; the console only needs the scope
	fresh := func() schema.Outcomes {
		recs, err := e.eng.CollectionRecords(ctx, coord, team, "assessments", 0)
		if err != nil {
			t.Fatal(err)
		}
		return schema.TeamOutcomes(recs)
	}
	same := func(what string) {
		t.Helper()
		got, err := e.console.Outcomes(ctx, coord, team)
		if err != nil {
			t.Fatal(err)
		}
		want := fresh()
		if len(got.ONS4) != len(want.ONS4) || len(got.UCLA3) != len(want.UCLA3) || got.ONS4Summary[0] != want.ONS4Summary[0] || got.ONS4Summary[3] != want.ONS4Summary[3] || got.UCLA3Total != want.UCLA3Total {
			t.Fatalf("%s: cached %d/%d people %+v, fresh %d/%d %+v", what, len(got.ONS4), len(got.UCLA3), got.ONS4Summary, len(want.ONS4), len(want.UCLA3), want.ONS4Summary)
		}
	}
	same("first")
	before, _ := e.console.Outcomes(ctx, coord, team)

	// A new person with a baseline and a follow-up ONS4 and UCLA-3.
	w := e.callers["ben"]
	clock := crdt.NewClock(time.Now, time.Hour)
	var ops []crdt.Op
	person := crdt.NewReplicaID().String()
	for k, d := range []int{40, 2} {
		for _, in := range []string{"ons4", "ucla3"} {
			rec := crdt.NewRecord(team, "assessments", crdt.NewReplicaID().String())
			at := time.Now().AddDate(0, 0, -d).UTC().Format(time.RFC3339)
			for _, kv := range [][2]any{{"person_id", person}, {"instrument", in}, {"administered_by", "self_completed"}, {"assessed_at", at}} {
				op := rec.Write(crdt.OpID{Time: clock.Now(), Replica: w.Replica}, kv[0].(string), crdt.MustValue(kv[1]))
				ops = append(ops, op)
			}
			answers := map[string]int{"ons4_life_satisfaction": 2 + 6*k, "ons4_worthwhile": 5, "ons4_happy": 5, "ons4_anxious": 9 - 7*k}
			if in == "ucla3" {
				answers = map[string]int{"ucla_companionship": 3 - 2*k, "ucla_left_out": 3, "ucla_isolated": 3}
			}
			ops = append(ops, rec.Append(crdt.OpID{Time: clock.Now(), Replica: w.Replica}, "responses", crdt.MustValue(map[string]any{"instrument": in, "answers": answers})))
		}
	}
	if res, err := e.eng.Push(ctx, w, []api.Change{{Seq: e.nextSeq(w), Ops: ops}}); err != nil || res[0].Status != api.ChangeApplied || len(res[0].Ops) > 0 {
		t.Fatalf("push: %+v %v", res, err)
	}
	same("after new assessments")
	after, _ := e.console.Outcomes(ctx, coord, team)
	if len(after.ONS4) != len(before.ONS4)+1 || len(after.UCLA3) != len(before.UCLA3)+1 {
		t.Fatalf("new person not in the export: %d→%d ONS4, %d→%d UCLA-3", len(before.ONS4), len(after.ONS4), len(before.UCLA3), len(after.UCLA3))
	}

	// Erasing one of the new assessments: rebuilt, the pair is gone.
	refs, _, err := e.eng.Changes(ctx, coord, team, dsyncFilterAssessments())
	if err != nil || len(refs) == 0 {
		t.Fatal(err)
	}
	admin := e.callers["amara"]
	if _, err := e.eng.Erase(ctx, admin, refs[len(refs)-1].Ref, false); err != nil {
		t.Fatal(err)
	}
	same("after an erasure")

	if _, err := e.console.Outcomes(ctx, coord, "ashton-pcn"); err == nil {
		t.Fatal("another team's outcomes were served")
	}
}

// TestWarmUp: the background warm-up fills the outcomes cache for every
// team and Close stops it (also when it never started, and twice).
func TestWarmUp(t *testing.T) {
	e := newEnv(t)
	e.console.StartWarm()
	deadline := time.Now().Add(20 * time.Second)
	for {
		e.console.outMu.Lock()
		n := len(e.console.outCache)
		e.console.outMu.Unlock()
		if n == len(e.ds.Teams) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm-up cached %d of %d teams", n, len(e.ds.Teams))
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.console.Close()
	e.console.Close()
	idle, err := New(Config{Engine: e.eng, Auth: e.auth, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	idle.Close()
	idle.StartWarm() // after Close: starts nothing
	if idle.warmStop != nil {
		t.Fatal("StartWarm after Close started a warm-up")
	}
}
