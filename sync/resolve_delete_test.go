package sync

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// TestResolveDeleteConflict: a delete concurrent with an offline edit is a
// conflict; a coordinator settles it through Resolve on crdt.DeletedField,
// either way, and the devices converge on the settled state.
func TestResolveDeleteConflict(t *testing.T) {
	for _, del := range []bool{true, false} {
		t.Run(fmt.Sprintf("delete=%v", del), func(t *testing.T) {
			e := openTest(t, Options{})
			ann := newDevice("ann", time.Now, "wigan")
			bea := newDevice("bea", time.Now, "wigan")
			ref := api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"}
			ann.write("wigan", "people", "p1", "name", "Edna")
			ann.write("wigan", "people", "p1", "phone", "1")
			ann.commit()
			ann.syncAll(t, e)
			bea.syncAll(t, e)
			// Offline: Ann deletes, Bea edits the phone.
			ann.do(ann.rec("wigan", "people", "p1").Delete(ann.nextID()))
			ann.commit()
			bea.write("wigan", "people", "p1", "phone", "2")
			bea.commit()
			ann.syncAll(t, e)
			bea.syncAll(t, e)
			coord := Caller{User: "coord", Teams: []string{"wigan"}}
			rec, err := e.Record(bg, coord, ref)
			if err != nil {
				t.Fatal(err)
			}
			if !rec.Deleted() || len(rec.DeleteConflicts()) != 1 {
				t.Fatalf("setup: deleted %v, delete conflicts %v", rec.Deleted(), rec.DeleteConflicts())
			}
			if c, _ := e.Conflicts(bg, coord, "wigan"); len(c) != 1 {
				t.Fatalf("setup: conflicts %v", c)
			}

			if _, err := e.Resolve(bg, coord, ref, crdt.DeletedField, crdt.MustValue("yes")); !errors.Is(err, ErrInvalid) {
				t.Fatalf("non-boolean resolve: %v", err)
			}
			got, err := e.Resolve(bg, coord, ref, crdt.DeletedField, crdt.MustValue(del))
			if err != nil {
				t.Fatal(err)
			}
			if got.Deleted() != del || len(got.Conflicts()) != 0 {
				t.Fatalf("after resolve: deleted %v, conflicts %v", got.Deleted(), got.Conflicts())
			}
			if c, err := e.Conflicts(bg, coord, "wigan"); err != nil || len(c) != 0 {
				t.Fatalf("conflict index after resolve: %v %v", c, err)
			}
			if !del {
				var phone string
				w, _ := got.Field("phone").Winner()
				if err := decodeValue(w.Value, &phone); err != nil || phone != "2" {
					t.Fatalf("restored phone %q %v", phone, err)
				}
			}
			h, err := e.History(bg, coord, ref)
			if err != nil {
				t.Fatal(err)
			}
			last := h[len(h)-1]
			if last.Op.Field != crdt.DeletedField || last.Author != "coord" || last.Op.ID.Replica != e.ServerReplica() {
				t.Fatalf("history tail %+v", last)
			}
			ann.syncAll(t, e)
			bea.syncAll(t, e)
			for _, d := range []*device{ann, bea} {
				r := d.rec("wigan", "people", "p1")
				if r.Deleted() != del || len(r.Conflicts()) != 0 {
					t.Fatalf("%s: deleted %v conflicts %v", d.caller.User, r.Deleted(), r.Conflicts())
				}
			}
			if d := diffStates(encoded(t, ann.recs), encoded(t, bea.recs)); d != "" {
				t.Fatalf("devices differ: %s", d)
			}
		})
	}
}
