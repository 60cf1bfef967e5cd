package e2e

import (
	"net/http"
	"testing"

	"github.com/doorstep-health/doorstep/api"
)

func TestLoginAndSyncBetweenTwoDevices(t *testing.T) {
	e := newEnv(t)
	// Wrong password.
	st, p := e.doJSON(http.MethodPost, "/v1/auth/login", "", api.LoginRequest{Username: "ann", Password: "nope", DeviceID: "0123456789abcdef0123456789abcdef"}, nil)
	if st != http.StatusUnauthorized || p.Code != api.CodeInvalidCredentials {
		t.Fatalf("bad password: %d %+v", st, p)
	}
	ann, bea := e.login("ann"), e.login("bea")
	ann.sync()
	bea.sync()

	resp := ann.sync(ann.change(
		ann.write("wigan", "people", "p1", "given_name", "Edna"),
		ann.write("wigan", "people", "p1", "family_name", "Jones"),
	))
	if len(resp.Results) != 1 || resp.Results[0].Status != api.ChangeApplied || len(resp.Results[0].Ops) != 0 {
		t.Fatalf("push results %+v", resp.Results)
	}
	// Retrying the same change is a duplicate, applied once.
	st2, resp2, p2 := ann.e.postSync(ann.access, encode(t, &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: ann.id, Clock: ann.clock.Now(), Changes: []api.Change{{Seq: 1, Ops: nil}}, Cursor: ann.cursor}), nil)
	if st2 != http.StatusOK || resp2.Results[0].Status != api.ChangeDuplicate {
		t.Fatalf("duplicate: %d %+v %+v", st2, resp2, p2)
	}

	for i := 0; i < 5 && bea.value("people", "p1", "family_name") == nil; i++ {
		bea.sync()
	}
	if got := bea.value("people", "p1", "family_name"); got != "Jones" {
		t.Fatalf("bea sees family_name %v", got)
	}
	// Bea edits; Ann pulls it.
	bea.sync(bea.change(bea.write("wigan", "people", "p1", "preferred_name", "Eddie")))
	for i := 0; i < 5 && ann.value("people", "p1", "preferred_name") == nil; i++ {
		ann.sync()
	}
	if got := ann.value("people", "p1", "preferred_name"); got != "Eddie" {
		t.Fatalf("ann sees preferred_name %v", got)
	}
	// A device of another team sees none of it.
	eve := e.login("eve")
	eve.sync()
	if len(eve.records) != 0 {
		t.Fatalf("ashton device pulled wigan records: %v", eve.records)
	}
	// A push into another team's record is refused per op.
	resp = eve.sync(eve.change(eve.write("wigan", "people", "p1", "given_name", "Mallory")))
	if r := resp.Results[0]; len(r.Ops) != 1 || r.Ops[0].Code != api.CodeForbiddenTeam {
		t.Fatalf("cross-team push: %+v", resp.Results)
	}
	// The sync request replica must be the token's device.
	req := ann.request()
	req.Replica = bea.id
	st, _, p = e.postSync(ann.access, encode(t, req), nil)
	if st != http.StatusForbidden || p.Code != api.CodeDeviceMismatch {
		t.Fatalf("replica mismatch: %d %+v", st, p)
	}
}
