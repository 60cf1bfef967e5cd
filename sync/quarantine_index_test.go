package sync

import (
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// TestRefusedSummaryKeepsHeldIndex: a device reuses the ID of an op held
// in the quarantine (reapplicable) for an op on another record that is
// refused (unknown_pred), so a refused summary carries the same op ID.
// Erasing that other record, or dismissing the summary, must not drop
// the held op's index: a later op naming the held one in pred is still
// merged, as it was before (found through the quarantine).
func TestRefusedSummaryKeepsHeldIndex(t *testing.T) {
	for _, how := range []string{"erase", "dismiss"} {
		t.Run(how, func(t *testing.T) {
			wall := newFakeWall()
			e := openTest(t, Options{Wall: wall.Now, Validator: rejectFields{"score": true}})
			d := newDevice("ann", wall.Now, "wigan")
			held := d.write("wigan", "people", "a", "score", 11) // invalid_value: held, reapplicable
			res := push(t, e, d, d.commit())
			if ops := res[0].Ops; len(ops) != 1 || ops[0].Code != api.CodeInvalidValue || !ops[0].Quarantined {
				t.Fatalf("held op: %+v", res[0])
			}
			d.outbox = nil
			// The same ID on record b, with a pred the server never saw.
			reuse := crdt.Op{ID: held.ID, Team: "wigan", Collection: "people", Record: "b", Field: "n", Kind: crdt.KindWrite,
				Value: crdt.MustValue(1), Pred: []crdt.OpID{{Time: held.ID.Time - 1, Replica: crdt.NewReplicaID()}}}
			d.seq++
			res = push(t, e, d, api.Change{Seq: d.seq, Ops: []crdt.Op{reuse, {ID: d.nextID(), Team: "wigan", Collection: "people", Record: "b", Field: "m", Kind: crdt.KindWrite, Value: crdt.MustValue(2)}}})
			if ops := res[0].Ops; len(ops) != 1 || ops[0].Code != api.CodeUnknownPred {
				t.Fatalf("reused ID: %+v", res[0])
			}
			q, err := e.Quarantined(bg, 0)
			if err != nil || len(q) != 2 || q[1].Code != api.CodeUnknownPred || q[1].Op.ID != held.ID {
				t.Fatalf("quarantine %+v, %v", q, err)
			}
			switch how {
			case "erase":
				if _, err := e.Erase(bg, Caller{User: "admin"}, api.RecordRef{Team: "wigan", Collection: "people", ID: "b"}, false); err != nil {
					t.Fatal(err)
				}
			case "dismiss":
				if _, err := e.Dismiss(bg, q[1].ID); err != nil {
					t.Fatal(err)
				}
			}
			// A later write on a naming the held op.
			fix := crdt.Op{ID: crdt.OpID{Time: held.ID.Time + 1000, Replica: d.caller.Replica}, Team: "wigan", Collection: "people", Record: "a",
				Field: "score", Kind: crdt.KindWrite, Value: crdt.MustValue(3), Pred: []crdt.OpID{held.ID}}
			d.seq++
			res = push(t, e, d, api.Change{Seq: d.seq, Ops: []crdt.Op{fix}})
			if res[0].Status != api.ChangeApplied || len(res[0].Ops) != 0 {
				t.Fatalf("write naming the held op after %s: %+v", how, res[0])
			}
		})
	}
}
