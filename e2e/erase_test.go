package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/crdt"
)

// sdkLogin signs a user in over HTTP and returns the access token.
func sdkLogin(t *testing.T, e *sdkEnv, user, password string) string {
	t.Helper()
	body, _ := json.Marshal(api.LoginRequest{Username: user, Password: password, DeviceID: crdt.NewReplicaID().String(), DeviceName: "desk"})
	resp, err := http.Post(e.http.URL+"/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr api.TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login %s: %d %v", user, resp.StatusCode, err)
	}
	return tr.AccessToken
}

// sdkPostJSON posts a JSON body with a bearer token and decodes a 200
// reply into out; it returns the status.
func sdkPostJSON(t *testing.T, e *sdkEnv, token, path string, in, out any) int {
	t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(rb, out); err != nil {
			t.Fatalf("POST %s: %v: %s", path, err, rb)
		}
	}
	return resp.StatusCode
}

type erasureReply struct {
	Records       []api.RecordRef `json:"records"`
	Ops           int             `json:"ops"`
	AlreadyErased bool            `json:"already_erased"`
}

// TestSDKErasure: two tablets hold a person and a need for them; an admin
// erases the person with cascade over HTTP; both tablets lose the records
// on their next sync, an offline edit made before that sync is refused
// with record_erased and does not bring the record back, and a new tablet
// never sees it.
func TestSDKErasure(t *testing.T) {
	ctx := context.Background()
	env := newSDKEnv(t, nil)
	if _, err := env.srv.Auth().CreateUser(ctx, auth.NewUser{Username: "ada", Name: "ada", Password: "ada-password", Role: api.RoleAdmin, Teams: []string{sdkTeam}}); err != nil {
		t.Fatal(err)
	}
	ann := env.device("ann", "", nil)
	bea := env.device("bea", "", nil)
	person := client.Ref{Team: sdkTeam, Collection: "people", ID: "p-erase"}
	need := client.Ref{Team: sdkTeam, Collection: "needs", ID: "n-erase"}
	kept := client.Ref{Team: sdkTeam, Collection: "people", ID: "p-keep"}
	if err := ann.CreateWithID(ctx, person, sdkPerson("Edith")); err != nil {
		t.Fatal(err)
	}
	if err := ann.CreateWithID(ctx, need, map[string]any{"person_id": person.ID, "category": "mobility_falls"}); err != nil {
		t.Fatal(err)
	}
	if err := ann.CreateWithID(ctx, kept, sdkPerson("Keep")); err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	sdkMustSync(t, bea)
	if _, err := bea.Get(ctx, person); err != nil {
		t.Fatalf("bea before erasure: %v", err)
	}
	// Bea edits the person offline before she hears of the erasure.
	if err := bea.Set(ctx, person, "phone", "0161 496 0000"); err != nil {
		t.Fatal(err)
	}

	req := map[string]any{"team": sdkTeam, "collection": "people", "id": person.ID, "cascade": true}
	if st := sdkPostJSON(t, env, sdkLogin(t, env, "cora", "cora-password"), "/v1/admin/erasures", req, nil); st != http.StatusForbidden {
		t.Fatalf("coordinator erasure: status %d, want 403", st)
	}
	admin := sdkLogin(t, env, "ada", "ada-password")
	var rep erasureReply
	if st := sdkPostJSON(t, env, admin, "/v1/admin/erasures", req, &rep); st != http.StatusOK {
		t.Fatalf("erasure: status %d", st)
	}
	if len(rep.Records) != 2 || rep.Records[0].ID != person.ID || rep.Records[1].ID != need.ID || rep.Ops == 0 {
		t.Fatalf("erasure report %+v", rep)
	}

	res := sdkMustSync(t, ann)
	if res.Purged != 2 {
		t.Fatalf("ann purged %d, want 2", res.Purged)
	}
	res, err := bea.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Bea is told her edit was refused, without its value; nothing of it
	// stays on the tablet (no residue in Rejected).
	if len(res.Rejected) != 1 || res.Rejected[0].Code != api.CodeRecordErased || res.Purged != 2 ||
		res.Rejected[0].Op.Record != person.ID || res.Rejected[0].Op.Value != nil {
		t.Fatalf("bea's sync: rejected %+v, purged %d", res.Rejected, res.Purged)
	}
	if rj, err := bea.Rejected(ctx); err != nil || len(rj) != 0 {
		t.Fatalf("bea's rejected list after the purge %+v %v", rj, err)
	}
	// Once more each, so nothing pending could bring it back.
	sdkMustSync(t, bea)
	sdkMustSync(t, ann)
	for _, r := range []*client.Replica{ann, bea} {
		for _, ref := range []client.Ref{person, need} {
			if _, err := r.Get(ctx, ref); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("%s still reads %v: %v", r.ID(), ref, err)
			}
		}
		if _, err := r.Get(ctx, kept); err != nil {
			t.Fatalf("%s lost the other person: %v", r.ID(), err)
		}
	}
	sdkAssertConverged(t, ann, bea)
	if st := env.coordinatorGET("/v1/teams/"+sdkTeam+"/records/people/"+person.ID, nil); st != http.StatusNotFound {
		t.Fatalf("server record after erasure: status %d", st)
	}
	// A new tablet bootstraps without the erased records.
	cal := env.device("cal", "", nil)
	sdkMustSync(t, cal)
	if _, err := cal.Get(ctx, person); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("new tablet reads the erased person: %v", err)
	}
	sdkAssertConverged(t, ann, cal)

	// Erasing again is reported, not repeated.
	if st := sdkPostJSON(t, env, admin, "/v1/admin/erasures", req, &rep); st != http.StatusOK || !rep.AlreadyErased {
		t.Fatalf("second erasure: %d %+v", st, rep)
	}
	if st := sdkPostJSON(t, env, admin, "/v1/admin/erasures", map[string]any{"team": "elsewhere", "collection": "people", "id": "x"}, nil); st != http.StatusForbidden {
		t.Fatalf("erasure in another team: status %d", st)
	}
}
