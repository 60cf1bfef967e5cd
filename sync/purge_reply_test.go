package sync

import (
	"slices"
	"testing"

	"github.com/doorstep-health/doorstep/api"
)

// A push refused record_erased tells the device to purge the record
// (SyncResponse.Purged), once per reply, also when the pull does not list
// the erasure: a device whose cursor is past it (it bootstrapped after a
// restore, which lists no erasures) would otherwise keep its copy.
func TestPushToErasedRecordPurges(t *testing.T) {
	wall := newFakeWall()
	e := openTest(t, Options{Wall: wall.Now})
	ann := newDevice("ann", wall.Now, "wigan")
	ann.write("wigan", "people", "p1", "given_name", "Edna")
	ann.write("wigan", "people", "p2", "given_name", "Kept")
	ann.commit()
	ann.syncAll(t, e)
	bea := newDevice("bea", wall.Now, "wigan")
	bea.syncAll(t, e)
	p1 := api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"}
	if _, err := e.Erase(bg, Caller{User: "admin", Teams: []string{"wigan"}}, p1, false); err != nil {
		t.Fatal(err)
	}
	want := []api.RecordRef{p1}

	// Bea's cursor is before the erasure: the pull lists it, the refused
	// push does not list it again.
	bea.write("wigan", "people", "p1", "phone", "0161 496 0000")
	bea.write("wigan", "people", "p2", "phone", "0161 496 0001")
	bea.commit()
	resp, err := e.Sync(bg, bea.caller, bea.request())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != 1 || len(resp.Results[0].Ops) != 1 || resp.Results[0].Ops[0].Code != api.CodeRecordErased {
		t.Fatalf("bea's push: %+v", resp.Results)
	}
	if !slices.Equal(resp.Purged, want) {
		t.Fatalf("bea's reply purges %v, want %v", resp.Purged, want)
	}

	// Cal's cursor is past the erasure: only the refusal can tell her.
	cal := newDevice("cal", wall.Now, "wigan")
	cal.syncAll(t, e)
	cal.write("wigan", "people", "p1", "phone", "0161 496 0002")
	cal.write("wigan", "people", "p1", "address", "2 Library Street")
	cal.commit()
	resp, err = e.Sync(bg, cal.caller, cal.request())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != 1 || len(resp.Results[0].Ops) != 2 {
		t.Fatalf("cal's push: %+v", resp.Results)
	}
	if !slices.Equal(resp.Purged, want) {
		t.Fatalf("cal's reply purges %v, want %v", resp.Purged, want)
	}
}
