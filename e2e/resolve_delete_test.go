package e2e

import (
	"net/http"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
)

// TestCoordinatorSettlesDeleteConflict: a tablet deletes a person while
// another edits them offline; the coordinator settles the delete conflict
// through the resolve route on "_deleted", and the tablets pull it.
func TestCoordinatorSettlesDeleteConflict(t *testing.T) {
	e := newEnv(t)
	ann, bea, cat := e.login("ann"), e.login("bea"), e.login("cat")
	ann.sync(ann.change(
		ann.write("wigan", "people", "p1", "given_name", "Edna"),
		ann.write("wigan", "people", "p1", "phone", "0161 496 0001"),
	))
	bea.sync()
	// Offline: Ann deletes the person, Bea updates the phone.
	r := ann.rec("wigan", "people", "p1")
	del := r.Delete(crdt.OpID{Time: ann.clock.Now(), Replica: ann.id})
	if err := r.Apply(&del); err != nil {
		t.Fatal(err)
	}
	edit := bea.write("wigan", "people", "p1", "phone", "0161 496 0002")
	ann.sync(ann.change(del))
	bea.sync(bea.change(edit))

	var rec server.RecordJSON
	if st, p := e.doJSON(http.MethodGet, "/v1/teams/wigan/records/people/p1", cat.access, nil, &rec); st != http.StatusOK {
		t.Fatalf("record: %d %+v", st, p)
	}
	if !rec.Deleted || len(rec.DeleteConflicts) != 1 || rec.DeleteConflicts[0] != "phone" {
		t.Fatalf("setup: deleted %v delete conflicts %v", rec.Deleted, rec.DeleteConflicts)
	}
	path := "/v1/teams/wigan/records/people/p1/resolve"
	if st, p := e.doJSON(http.MethodPost, path, cat.access, map[string]any{"field": crdt.DeletedField, "value": "yes"}, nil); st != http.StatusBadRequest || p.Code != api.CodeBadRequest {
		t.Fatalf("non-boolean _deleted: %d %+v", st, p)
	}
	var resolved server.RecordJSON
	if st, p := e.doJSON(http.MethodPost, path, cat.access, map[string]any{"field": crdt.DeletedField, "value": true}, &resolved); st != http.StatusOK {
		t.Fatalf("resolve _deleted: %d %+v", st, p)
	}
	if !resolved.Deleted || len(resolved.DeleteConflicts) != 0 || len(resolved.Conflicts) != 0 {
		t.Fatalf("after resolve: %+v", resolved)
	}
	var conflicts struct{ Records []api.RecordRef }
	if st, _ := e.doJSON(http.MethodGet, "/v1/teams/wigan/conflicts", cat.access, nil, &conflicts); st != http.StatusOK || len(conflicts.Records) != 0 {
		t.Fatalf("conflicts after resolve: %d %+v", st, conflicts)
	}
	for _, d := range []*device{ann, bea} {
		for range 3 {
			d.sync()
		}
		got := d.rec("wigan", "people", "p1")
		if !got.Deleted() || len(got.Conflicts()) != 0 {
			t.Fatalf("%s: deleted %v conflicts %v", d.user, got.Deleted(), got.Conflicts())
		}
	}
	// Restoring settles it the other way; Bea's phone survives.
	if st, p := e.doJSON(http.MethodPost, path, cat.access, map[string]any{"field": crdt.DeletedField, "value": false}, &resolved); st != http.StatusOK {
		t.Fatalf("restore: %d %+v", st, p)
	}
	if resolved.Deleted || resolved.Fields["phone"].Value != "0161 496 0002" {
		t.Fatalf("after restore: deleted %v phone %+v", resolved.Deleted, resolved.Fields["phone"])
	}
}
