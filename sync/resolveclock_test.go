package sync

import (
	"context"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// TestResolveAfterClockWentBack: a server restarted with its wall clock an
// hour behind still stamps a coordinator's resolve newer than every op of
// the record, so the record's causal context does not read the resolve as
// one it already applied (which would drop it), and devices converge.
func TestResolveAfterClockWentBack(t *testing.T) {
	dir := t.TempDir()
	wall := newFakeWall()
	ref := api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"}
	coord := Caller{User: "cara", Teams: []string{"wigan"}}
	e := openTestAt(t, dir, Options{Wall: wall.Now})
	ann := newDevice("ann", wall.Now, "wigan")
	ann.write("wigan", "people", "p1", "mobility", "stick")
	ann.commit()
	ann.syncAll(t, e)
	if _, err := e.Resolve(context.Background(), coord, ref, "mobility", crdt.MustValue("frame")); err != nil {
		t.Fatal(err)
	}
	ann.syncAll(t, e)
	e.Close()

	back := &fakeWall{t: wall.Now().Add(-time.Hour)}
	e2 := openTestAt(t, dir, Options{Wall: back.Now})
	rec, err := e2.Resolve(context.Background(), coord, ref, "mobility", crdt.MustValue("wheelchair"))
	if err != nil {
		t.Fatal(err)
	}
	w, _ := rec.Field("mobility").Winner()
	if string(w.Value) != string(crdt.MustValue("wheelchair")) || rec.Field("mobility").Conflict() {
		t.Fatalf("resolve after the clock went back did not take: %+v", rec.Field("mobility"))
	}
	ann.syncAll(t, e2)
	if diff := diffStates(encoded(t, ann.recs), encoded(t, serverRecords(t, e2, "wigan"))); diff != "" {
		t.Fatalf("device and server differ: %s", diff)
	}
}
