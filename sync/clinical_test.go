package sync

import (
	"errors"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// pushOne pushes the device's pending ops as one change and returns the
// code of each op not merged (and whether it was quarantined); the change
// leaves the outbox as a device would drop an acknowledged one.
func pushOne(t *testing.T, e *Engine, d *device) []api.OpResult {
	t.Helper()
	ch := d.commit()
	res := push(t, e, d, ch)
	if res[0].Status != api.ChangeApplied {
		t.Fatalf("change %d: %+v", ch.Seq, res[0])
	}
	d.outbox = nil
	return res[0].Ops
}

func cfsValues(t *testing.T, e *Engine, ref api.RecordRef) map[crdt.OpID]int {
	t.Helper()
	rec, err := e.Record(bg, Caller{Teams: []string{ref.Team}}, ref)
	if err != nil {
		t.Fatal(err)
	}
	out := map[crdt.OpID]int{}
	for _, en := range rec.Field("cfs").Entries {
		var v int
		if err := decodeValue(en.Value, &v); err != nil {
			t.Fatal(err)
		}
		out[en.ID] = v
	}
	return out
}

// TestClinicalConflictRules: on a clinical field in conflict, a write
// covering only some concurrent values (one of them another author's) is
// quarantined conflict_in_review; one covering all from a link worker is
// refused resolve_forbidden; a device replacing only its own value, and a
// coordinator settling, are merged. Non-clinical conflicts are settled by
// anyone.
func TestClinicalConflictRules(t *testing.T) {
	e := openTest(t, Options{Validator: schema.Default()})
	ref := api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"}
	chloe := newDevice("chloe", time.Now, "wigan")
	amara := newDevice("amara", time.Now, "wigan")
	bob := newDevice("bob", time.Now, "wigan")
	coord := newDevice("cora", time.Now, "wigan")
	for _, d := range []*device{chloe, amara, bob} {
		d.caller.Role = api.RoleLinkWorker
	}
	coord.caller.Role = api.RoleCoordinator

	chloe.write("wigan", "people", "p1", "cfs", 4)
	chloe.write("wigan", "people", "p1", "phone", "1")
	chloe.commit()
	chloe.syncAll(t, e)
	amara.syncAll(t, e)
	chloe.write("wigan", "people", "p1", "cfs", 5)
	chloe.write("wigan", "people", "p1", "phone", "2")
	chloe.commit()
	chloe.syncAll(t, e)
	bob.syncAll(t, e) // bob has seen chloe's 5, not amara's 6
	amara.write("wigan", "people", "p1", "cfs", 6)
	amara.write("wigan", "people", "p1", "phone", "3")
	amara.commit()
	amara.syncAll(t, e)
	if n := len(cfsValues(t, e, ref)); n != 2 {
		t.Fatalf("cfs has %d values, want a conflict of 2", n)
	}

	// Bob's ordinary edit names chloe's 5 only: it would drop it.
	bob.write("wigan", "people", "p1", "cfs", 7)
	if ops := pushOne(t, e, bob); len(ops) != 1 || ops[0].Code != api.CodeConflictInReview || !ops[0].Quarantined {
		t.Fatalf("bob's partial overwrite: %+v", ops)
	}
	if vals := cfsValues(t, e, ref); len(vals) != 2 {
		t.Fatalf("after bob: %v", vals)
	}

	// Amara, a link worker, settles (pred covers both): refused.
	amara.syncAll(t, e)
	amara.write("wigan", "people", "p1", "cfs", 8)
	amara.write("wigan", "people", "p1", "phone", "4") // not clinical: settled by anyone
	if ops := pushOne(t, e, amara); len(ops) != 1 || ops[0].Index != 0 || ops[0].Code != api.CodeResolveForbidden || ops[0].Quarantined {
		t.Fatalf("link worker's resolve: %+v", ops)
	}
	if vals := cfsValues(t, e, ref); len(vals) != 2 {
		t.Fatalf("after amara's resolve: %v", vals)
	}
	if rec, _ := e.Record(bg, coord.caller, ref); rec.Field("phone").Conflict() {
		t.Fatal("non-clinical conflict not settled by a link worker")
	}
	// Refused ops are kept for admins.
	qs, err := e.Quarantined(bg, 0)
	if err != nil || len(qs) != 2 || qs[0].Code != api.CodeConflictInReview || !qs[0].Reapplicable ||
		qs[1].Code != api.CodeResolveForbidden || qs[1].Reapplicable {
		t.Fatalf("quarantine %+v %v", qs, err)
	}
	// Re-applying bob's op while the conflict stands changes nothing.
	if err := e.Reapply(bg, qs[0].ID); !errors.Is(err, ErrInvalid) {
		t.Fatalf("reapply during the conflict: %v", err)
	}

	// A device may replace its own concurrent value.
	var amaraSix crdt.OpID
	for id, v := range cfsValues(t, e, ref) {
		if v == 6 {
			amaraSix = id
		}
	}
	op := amara.rec("wigan", "people", "p1").Write(amara.nextID(), "cfs", crdt.MustValue(3))
	op.Pred = []crdt.OpID{amaraSix}
	amara.pending = append(amara.pending, op)
	if ops := pushOne(t, e, amara); len(ops) != 0 {
		t.Fatalf("own replace: %+v", ops)
	}

	// The review API refuses a link worker and an admin (cfs is settled by
	// coordinators only), and takes the coordinator's.
	for _, role := range []string{api.RoleLinkWorker, api.RoleAdmin} {
		c := coord.caller
		c.Role = role
		if _, err := e.Resolve(bg, c, ref, "cfs", crdt.MustValue(5)); !errors.Is(err, ErrForbidden) {
			t.Fatalf("review resolve by %s: %v", role, err)
		}
	}
	// A coordinator's device settles it.
	coord.syncAll(t, e)
	coord.write("wigan", "people", "p1", "cfs", 5)
	if ops := pushOne(t, e, coord); len(ops) != 0 {
		t.Fatalf("coordinator's resolve: %+v", ops)
	}
	if vals := cfsValues(t, e, ref); len(vals) != 1 {
		t.Fatalf("after the coordinator: %v", vals)
	}
	// Settled: bob's quarantined value may now join as a new concurrent
	// value (it overwrote nothing live), so nothing he wrote is lost.
	if err := e.Reapply(bg, qs[0].ID); err != nil {
		t.Fatalf("reapply after settling: %v", err)
	}
	if vals := cfsValues(t, e, ref); len(vals) != 2 {
		t.Fatalf("after reapply: %v", vals)
	}
	if _, err := e.Resolve(bg, coord.caller, ref, "cfs", crdt.MustValue(5)); err != nil {
		t.Fatalf("review resolve by the coordinator: %v", err)
	}
}

func TestSyncStatesScope(t *testing.T) {
	e := openTest(t, Options{})
	d := newDevice("ann", time.Now, "wigan", "ashton", "wigan")
	resp, err := e.Sync(bg, d.caller, d.request())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Scope == nil || len(resp.Scope.Teams) != 2 || resp.Scope.Teams[0] != "ashton" || resp.Scope.Teams[1] != "wigan" {
		t.Fatalf("scope %+v", resp.Scope)
	}
	d.caller.Teams = nil
	if resp, err = e.Sync(bg, d.caller, d.request()); err != nil || resp.Scope == nil || len(resp.Scope.Teams) != 0 {
		t.Fatalf("empty scope: %+v %v", resp.Scope, err)
	}
}

// TestDuplicateReportsOpsAgain: a change pushed again after a lost reply is
// a duplicate, and still reports the ops that were not merged (without
// their detail), so the device learns of them; the reply restates the
// record a clinical refusal was for.
func TestDuplicateReportsOpsAgain(t *testing.T) {
	e := openTest(t, Options{Validator: schema.Default()})
	d := newDevice("ann", time.Now, "wigan")
	d.caller.Role = api.RoleLinkWorker
	d.write("wigan", "people", "p1", "cfs", 4)
	d.write("wigan", "people", "p1", "cfs", 12) // out of range: quarantined
	ch := d.commit()
	first := push(t, e, d, ch)
	again := push(t, e, d, ch)
	if again[0].Status != api.ChangeDuplicate || len(again[0].Ops) != 1 || again[0].Ops[0].Index != 1 ||
		again[0].Ops[0].Code != first[0].Ops[0].Code || !again[0].Ops[0].Quarantined {
		t.Fatalf("first %+v, again %+v", first, again)
	}

	// A clinical refusal: the reply restates the record, on the first push
	// and on a resend alike. Carl writes cfs without having seen ann's 4:
	// a conflict at the server.
	carl := newDevice("carl", time.Now, "wigan")
	carl.write("wigan", "people", "p1", "cfs", 7)
	carl.commit()
	carl.syncAll(t, e)
	rec, err := e.Record(bg, d.caller, api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"})
	if err != nil || !rec.Field("cfs").Conflict() {
		t.Fatalf("no conflict at the server: %v", err)
	}
	ann := newDevice("ann2", time.Now, "wigan")
	ann.caller.Role = api.RoleLinkWorker
	ann.syncAll(t, e)
	ann.write("wigan", "people", "p1", "cfs", 8) // settles: pred covers every value
	req := ann.request()
	req.Changes = []api.Change{ann.commit()}
	for i := range 2 {
		resp, err := e.Sync(bg, ann.caller, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Results) != 1 || len(resp.Results[0].Ops) != 1 || resp.Results[0].Ops[0].Code != api.CodeResolveForbidden || len(resp.Replace) != 1 {
			t.Fatalf("sync %d: results %+v, restate %d", i, resp.Results, len(resp.Replace))
		}
		got, err := resp.Replace[0].Record()
		if err != nil || !got.Field("cfs").Conflict() {
			t.Fatalf("restated record %+v %v", got, err)
		}
	}
}
