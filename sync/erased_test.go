package sync

import (
	"errors"
	"testing"

	"github.com/doorstep-health/doorstep/api"
)

// Erased is true for a record erased in the caller's team only: not for
// one never erased, nor for a record of that ID in another team; a caller
// outside the team is refused.
func TestErased(t *testing.T) {
	wall := newFakeWall()
	e := openTestAt(t, t.TempDir(), Options{Wall: wall.Now})
	const team = "wigan"
	ann := newDevice("ann", wall.Now, team)
	ann.write(team, "people", "p-gone", "name", "Ada")
	ann.write(team, "people", "p-kept", "name", "Bob")
	ann.commit()
	ann.syncAll(t, e)
	c := Caller{User: "admin", Teams: []string{team}}
	gone := api.RecordRef{Team: team, Collection: "people", ID: "p-gone"}
	if erased, err := e.Erased(bg, c, gone); err != nil || erased {
		t.Fatalf("before the erasure: %v %v", erased, err)
	}
	if _, err := e.Erase(bg, c, gone, false); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref  api.RecordRef
		want bool
	}{
		{gone, true},
		{api.RecordRef{Team: team, Collection: "people", ID: "p-kept"}, false},
		{api.RecordRef{Team: team, Collection: "people", ID: "never"}, false},
	} {
		if erased, err := e.Erased(bg, c, tc.ref); err != nil || erased != tc.want {
			t.Errorf("Erased(%v) = %v, %v; want %v", tc.ref, erased, err, tc.want)
		}
	}
	other := Caller{User: "x", Teams: []string{"ashton"}}
	if _, err := e.Erased(bg, other, gone); !errors.Is(err, ErrForbidden) {
		t.Errorf("another team's caller: %v, want ErrForbidden", err)
	}
	if erased, err := e.Erased(bg, other, api.RecordRef{Team: "ashton", Collection: "people", ID: "p-gone"}); err != nil || erased {
		t.Errorf("the same ID in another team: %v %v, want false", erased, err)
	}
}
