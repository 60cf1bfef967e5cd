package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
)

// sdkDoJSON sends a JSON request with a bearer token and decodes a 2xx
// reply into out; it returns the status.
func sdkDoJSON(t *testing.T, e *sdkEnv, method, token, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.http.URL+path, body)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode < 300 && out != nil {
		if err := json.Unmarshal(rb, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, rb)
		}
	}
	return resp.StatusCode
}

// sdkAdmin creates an admin of the given teams (once) and returns a token.
func sdkAdmin(t *testing.T, e *sdkEnv, teams ...string) string {
	t.Helper()
	if _, err := e.srv.Auth().CreateUser(context.Background(), auth.NewUser{Username: "ada", Name: "ada", Password: "ada-password", Role: api.RoleAdmin, Teams: teams}); err != nil && !errors.Is(err, auth.ErrExists) {
		t.Fatal(err)
	}
	return sdkLogin(t, e, "ada", "ada-password")
}

// cfsValues returns the concurrent values of cfs on a replica, sorted.
func cfsValues(t *testing.T, r *client.Replica, ref client.Ref) []string {
	t.Helper()
	rec, err := r.Get(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range rec.Fields["cfs"].Values {
		out = append(out, fmt.Sprint(v.Value))
	}
	slices.Sort(out)
	return out
}

// serverCFS returns the concurrent values of cfs as the coordinator's
// review API shows them, sorted.
func serverCFS(t *testing.T, e *sdkEnv, ref client.Ref) []string {
	t.Helper()
	var rec server.RecordJSON
	if st := e.coordinatorGET("/v1/teams/"+ref.Team+"/records/"+ref.Collection+"/"+ref.ID, &rec); st != http.StatusOK {
		t.Fatalf("GET record: %d", st)
	}
	f := rec.Fields["cfs"]
	if !f.Conflict {
		return []string{fmt.Sprint(f.Value)}
	}
	var out []string
	for _, v := range f.Values {
		out = append(out, fmt.Sprint(v.Value))
	}
	slices.Sort(out)
	return out
}

// TestSDKSetDuringClinicalConflict: Chloe (ann here) wrote CFS 5 and Amara
// (bea) 6 concurrently. A plain Set on either tablet is refused with
// ErrInConflict whichever value is the displayed winner, and stores
// nothing; a non-clinical field in conflict takes a Set that keeps the
// other author's value. In the other order (cal edits before her tablet
// has seen the conflict) the server quarantines the write as
// conflict_in_review, the conflict stays whole for the coordinator, and
// cal's tablet is told and shows the conflict again, not its refused 7.
func TestSDKSetDuringClinicalConflict(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	ann := e.device("ann", "", nil)
	bea := e.device("bea", "", nil)
	cal := e.device("cal", "", nil)
	id, err := ann.Create(ctx, client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson("Edith"))
	if err != nil {
		t.Fatal(err)
	}
	ref := id
	if err := ann.Set(ctx, ref, "cfs", 4); err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	sdkMustSync(t, bea)
	sdkMustSync(t, cal)

	// Ann writes 5 and syncs; cal pulls it; bea (offline) wrote 6.
	for _, w := range []struct {
		r     *client.Replica
		field string
		v     any
	}{{ann, "cfs", 5}, {ann, "phone", "0161 1"}, {bea, "cfs", 6}, {bea, "phone", "0161 2"}} {
		if err := w.r.Set(ctx, ref, w.field, w.v); err != nil {
			t.Fatal(err)
		}
	}
	sdkMustSync(t, ann)
	sdkMustSync(t, cal) // cal has seen 5, not 6
	sdkMustSync(t, bea)
	sdkMustSync(t, ann)
	if got := cfsValues(t, ann, ref); !slices.Equal(got, []string{"5", "6"}) {
		t.Fatalf("ann's cfs %v, want the conflict 5, 6", got)
	}

	// The conflict is on both tablets; the winner is bea's 6 for one and
	// someone else's for the other: Set is refused on both, nothing stored.
	for _, r := range []*client.Replica{ann, bea} {
		before := r.Status().Pending
		if err := r.Set(ctx, ref, "cfs", 7); !errors.Is(err, client.ErrInConflict) {
			t.Fatalf("Set during a clinical conflict on %s: %v", r.ID(), err)
		}
		if r.Status().Pending != before {
			t.Fatalf("refused Set stored ops on %s", r.ID())
		}
		if got := cfsValues(t, r, ref); !slices.Equal(got, []string{"5", "6"}) {
			t.Fatalf("cfs on %s after refused Set: %v", r.ID(), got)
		}
	}
	// Non-clinical: ann's Set replaces her own value only; bea's stays.
	if err := ann.Set(ctx, ref, "phone", "0161 3"); err != nil {
		t.Fatal(err)
	}
	rec, _ := ann.Get(ctx, ref)
	var phones []string
	for _, v := range rec.Fields["phone"].Values {
		phones = append(phones, fmt.Sprint(v.Value))
	}
	slices.Sort(phones)
	if !slices.Equal(phones, []string{"0161 2", "0161 3"}) {
		t.Fatalf("phone after a Set in conflict: %v", phones)
	}
	sdkMustSync(t, ann)

	// The other order: cal saw only 5 and sets 7, overwriting ann's 5.
	if got := cfsValues(t, cal, ref); !slices.Equal(got, []string{"5"}) {
		t.Fatalf("cal's cfs %v", got)
	}
	if err := cal.Set(ctx, ref, "cfs", 7); err != nil {
		t.Fatal(err)
	}
	res, err := cal.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) != 1 || res.Rejected[0].Code != api.CodeConflictInReview || !res.Rejected[0].Quarantined {
		t.Fatalf("cal told %+v", res.Rejected)
	}
	if rj, _ := cal.Rejected(ctx); len(rj) != 1 || rj[0].Op.Field != "cfs" {
		t.Fatalf("cal's Rejected %+v", rj)
	}
	if got := serverCFS(t, e, ref); !slices.Equal(got, []string{"5", "6"}) {
		t.Fatalf("server's review shows %v, want 5 and 6 still", got)
	}
	if got := cfsValues(t, cal, ref); !slices.Equal(got, []string{"5", "6"}) {
		t.Fatalf("cal's tablet shows %v after the refusal, want the conflict 5, 6", got)
	}
	sdkMustSync(t, ann)
	sdkMustSync(t, bea)
	sdkAssertConverged(t, ann, bea, cal)
}

// TestSDKClinicalResolveByRole: a link worker's tablet refuses Resolve on
// a clinical conflict (ErrResolveForbidden). A worker demoted after logging
// in as coordinator still holds the old role, so her tablet lets the
// resolve through; the server refuses it (resolve_forbidden), she is told,
// and her tablet shows the conflict again. The coordinator's resolve is
// accepted and settles it everywhere; the review API refuses an admin for
// a field only coordinators settle.
func TestSDKClinicalResolveByRole(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	if _, err := e.srv.Auth().CreateUser(ctx, auth.NewUser{Username: "dot", Name: "dot", Password: "dot-password", Role: api.RoleCoordinator, Teams: []string{sdkTeam}}); err != nil {
		t.Fatal(err)
	}
	admin := sdkAdmin(t, e, sdkTeam)
	ann := e.device("ann", "", nil)
	bea := e.device("bea", "", nil)
	dot := e.device("dot", "", nil) // logs in as coordinator, demoted below
	cora := e.device("cora", "", nil)
	id, err := ann.Create(ctx, client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson("Edith"))
	if err != nil {
		t.Fatal(err)
	}
	ref := id
	sdkMustSync(t, ann)
	sdkMustSync(t, bea)
	if err := ann.Set(ctx, ref, "cfs", 5); err != nil {
		t.Fatal(err)
	}
	if err := bea.Set(ctx, ref, "cfs", 6); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*client.Replica{ann, bea, ann, dot, cora} {
		sdkMustSync(t, r)
	}
	if ok, _ := bea.MaySettle("people", "cfs"); ok {
		t.Fatal("MaySettle says a link worker may settle cfs")
	}
	if err := bea.Resolve(ctx, ref, "cfs", 6); !errors.Is(err, client.ErrResolveForbidden) {
		t.Fatalf("link worker's Resolve: %v", err)
	}

	// Dot is demoted to link worker; her tablet still holds the
	// coordinator's login.
	var users struct{ Users []auth.User }
	sdkDoJSON(t, e, http.MethodGet, admin, "/v1/admin/users", nil, &users)
	var dotID string
	for _, u := range users.Users {
		if u.Username == "dot" {
			dotID = u.ID
		}
	}
	if st := sdkDoJSON(t, e, http.MethodPatch, admin, "/v1/admin/users/"+dotID, map[string]any{"role": api.RoleLinkWorker}, nil); st != http.StatusOK {
		t.Fatalf("demote: %d", st)
	}
	if err := dot.Resolve(ctx, ref, "cfs", 9); err != nil {
		t.Fatalf("dot's tablet still believes she is a coordinator: %v", err)
	}
	res, err := dot.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) != 1 || res.Rejected[0].Code != api.CodeResolveForbidden {
		t.Fatalf("dot told %+v", res.Rejected)
	}
	if got := cfsValues(t, dot, ref); !slices.Equal(got, []string{"5", "6"}) {
		t.Fatalf("dot's tablet after the refused resolve: %v", got)
	}
	if got := serverCFS(t, e, ref); !slices.Equal(got, []string{"5", "6"}) {
		t.Fatalf("server after the refused resolve: %v", got)
	}
	var conflicts struct{ Records []api.RecordRef }
	e.coordinatorGET("/v1/teams/"+sdkTeam+"/conflicts", &conflicts)
	if !slices.Contains(conflicts.Records, ref) {
		t.Fatalf("conflict list lost the record: %v", conflicts.Records)
	}
	// An admin may not settle cfs through the review API either.
	if st := sdkDoJSON(t, e, http.MethodPost, admin, "/v1/teams/"+sdkTeam+"/records/people/"+id.ID+"/resolve", map[string]any{"field": "cfs", "value": 5}, nil); st != http.StatusForbidden {
		t.Fatalf("admin resolve of cfs: %d", st)
	}

	// The coordinator settles it.
	if err := cora.Resolve(ctx, ref, "cfs", 5); err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, cora)
	for _, r := range []*client.Replica{ann, bea, dot} {
		if _, err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if got := cfsValues(t, r, ref); !slices.Equal(got, []string{"5"}) {
			t.Fatalf("after the coordinator's resolve %s shows %v", r.ID(), got)
		}
	}
	sdkAssertConverged(t, ann, bea, cora, dot)
	conflicts.Records = nil
	e.coordinatorGET("/v1/teams/"+sdkTeam+"/conflicts", &conflicts)
	if slices.Contains(conflicts.Records, ref) {
		t.Fatalf("conflict still listed after the coordinator's resolve")
	}
}

// TestSDKTeamMovePurgesDevice: ann moves from Wigan to Ashton. Her next
// sync states the new scope: her unsynced Wigan edit is handed to the
// server, refused (forbidden_team) and kept in Rejected; every Wigan record
// and the older Wigan rejection leave the tablet. After logging in again
// she gets Ashton's records. Bea, still in Wigan, keeps hers.
func TestSDKTeamMovePurgesDevice(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	a := e.srv.Auth()
	if _, err := a.CreateTeam(ctx, "ashton", "Ashton PCN"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateUser(ctx, auth.NewUser{Username: "eve", Name: "eve", Password: "eve-password", Role: api.RoleLinkWorker, Teams: []string{"ashton"}}); err != nil {
		t.Fatal(err)
	}
	admin := sdkAdmin(t, e, sdkTeam, "ashton")
	// Ann's tablet validates nothing, so the server quarantines her bad
	// value: an older rejection of a Wigan record on her tablet.
	ann := e.device("ann", "", func(o *client.Options) { o.NoValidation = true })
	bea := e.device("bea", "", nil)
	eve := e.device("eve", "", nil)
	wigan := sdkSeedPeople(t, ann, 20)
	if _, err := eve.Create(ctx, client.Ref{Team: "ashton", Collection: "people"}, sdkPerson("Asha")); err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, eve)
	if err := ann.Set(ctx, wigan[0], "cfs", 42); err != nil {
		t.Fatal(err)
	}
	if _, err := ann.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if rj, _ := ann.Rejected(ctx); len(rj) != 1 || rj[0].Code != api.CodeInvalidValue {
		t.Fatalf("setup: ann's rejections %+v", rj)
	}
	sdkMustSync(t, bea)

	var me api.User
	if me2, err := ann.User(ctx); err != nil {
		t.Fatal(err)
	} else {
		me = *me2
	}
	if st := sdkDoJSON(t, e, http.MethodPatch, admin, "/v1/admin/users/"+me.ID, map[string]any{"teams": []string{"ashton"}}, nil); st != http.StatusOK {
		t.Fatalf("move ann: %d", st)
	}
	// Unsynced work at the move.
	if err := ann.Set(ctx, wigan[1], "phone", "0161 496 0001"); err != nil {
		t.Fatal(err)
	}
	res, err := ann.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) != 1 || res.Rejected[0].Code != api.CodeForbiddenTeam || res.Rejected[0].Op.Record != wigan[1].ID {
		t.Fatalf("handover: %+v", res.Rejected)
	}
	if recs, _ := ann.List(ctx, sdkTeam, ""); len(recs) != 0 {
		t.Fatalf("ann still holds %d Wigan records", len(recs))
	}
	rj, _ := ann.Rejected(ctx)
	if len(rj) != 1 || rj[0].Code != api.CodeForbiddenTeam || rj[0].Op.Field != "phone" {
		t.Fatalf("ann's Rejected after the move %+v (the invalid_value residue must go, the handover stay)", rj)
	}
	if ops, _ := ann.PendingOps(ctx); len(ops) != 0 {
		t.Fatalf("ann's outbox after the move: %d ops", len(ops))
	}
	if err := ann.DismissRejected(ctx, 0); err != nil {
		t.Fatal(err)
	}
	// A new login carries the new team.
	if _, err := ann.Login(ctx, "ann", "ann-password"); err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	if recs, _ := ann.List(ctx, "ashton", "people"); len(recs) != 1 {
		t.Fatalf("ann's Ashton records: %d", len(recs))
	}
	if states, _ := ann.States(ctx); len(states) != 1 {
		t.Fatalf("ann's tablet holds %d records, want Ashton's 1", len(states))
	}
	if recs, _ := bea.List(ctx, sdkTeam, "people"); len(recs) != 20 {
		t.Fatalf("bea lost Wigan records: %d", len(recs))
	}
	sdkMustSync(t, bea)
	if recs, _ := bea.List(ctx, sdkTeam, "people"); len(recs) != 20 {
		t.Fatalf("bea lost Wigan records after sync: %d", len(recs))
	}
}

// TestSDKRemoteWipe: an admin revokes ann's lost tablet asking for a
// wipe. The tablet comes back online after its access token expired: its
// next sync gets the wipe order, deletes everything, reports back, and the
// admin's device listing shows the wipe confirmed. Another tablet revoked
// without a wipe is only refused.
func TestSDKRemoteWipe(t *testing.T) {
	ctx := context.Background()
	clock := newSDKClock(time.Now())
	e := newSDKEnv(t, clock.now)
	admin := sdkAdmin(t, e, sdkTeam)
	annDir := t.TempDir()
	ann := e.device("ann", annDir, nil)
	bea := e.device("bea", "", nil)
	sdkSeedPeople(t, ann, 5)
	sdkMustSync(t, ann)
	sdkMustSync(t, bea)
	refs := sdkSeedPeople(t, ann, 1) // unsynced
	if err := ann.Set(ctx, refs[0], "phone", "0161 496 0002"); err != nil {
		t.Fatal(err)
	}

	me, err := ann.User(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var d auth.Device
	if st := sdkDoJSON(t, e, http.MethodPost, admin, "/v1/admin/devices/"+ann.ID().String()+"/revoke", map[string]any{"wipe": true}, &d); st != http.StatusOK || !d.Revoked || d.WipeRequestedAt.IsZero() {
		t.Fatalf("revoke with wipe: %d %+v", st, d)
	}
	// An admin of another team cannot wipe a Wigan tablet.
	if _, err := e.srv.Auth().CreateTeam(ctx, "ashton", "Ashton PCN"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Auth().CreateUser(ctx, auth.NewUser{Username: "gus", Name: "gus", Password: "gus-password", Role: api.RoleAdmin, Teams: []string{"ashton"}}); err != nil {
		t.Fatal(err)
	}
	if st := sdkDoJSON(t, e, http.MethodPost, sdkLogin(t, e, "gus", "gus-password"), "/v1/admin/devices/"+bea.ID().String()+"/revoke", map[string]any{"wipe": true}, nil); st != http.StatusNotFound {
		t.Fatalf("other team's admin wipes: %d", st)
	}
	var plain auth.Device
	if st := sdkDoJSON(t, e, http.MethodPost, admin, "/v1/admin/devices/"+bea.ID().String()+"/revoke", nil, &plain); st != http.StatusOK || !plain.WipeRequestedAt.IsZero() {
		t.Fatalf("plain revoke: %d %+v", st, plain)
	}
	clock.advance(2 * time.Hour) // past the access token's lifetime

	_, err = ann.Sync(ctx)
	if !errors.Is(err, client.ErrWiped) || !errors.Is(err, client.ErrSignedOut) {
		t.Fatalf("sync of the wiped tablet: %v", err)
	}
	if !ann.Wiped() {
		t.Fatal("Wiped() false")
	}
	if states, _ := ann.States(ctx); len(states) != 0 {
		t.Fatalf("wiped tablet holds %d records", len(states))
	}
	if ops, _ := ann.PendingOps(ctx); len(ops) != 0 {
		t.Fatalf("wiped tablet holds %d outbox ops", len(ops))
	}
	if rj, _ := ann.Rejected(ctx); len(rj) != 0 {
		t.Fatalf("wiped tablet holds rejections %+v", rj)
	}
	if _, err := ann.User(ctx); !errors.Is(err, client.ErrSignedOut) {
		t.Fatalf("wiped tablet still holds a login: %v", err)
	}
	if _, err := ann.Sync(ctx); !errors.Is(err, client.ErrWiped) {
		t.Fatalf("second sync: %v", err)
	}
	// The wiped replica reopens, still wiped and empty.
	if err := ann.Close(); err != nil {
		t.Fatal(err)
	}
	ann = e.open(annDir, nil)
	if !ann.Wiped() {
		t.Fatal("reopened replica forgot the wipe")
	}
	if states, _ := ann.States(ctx); len(states) != 0 {
		t.Fatalf("reopened wiped tablet holds %d records", len(states))
	}

	admin = sdkLogin(t, e, "ada", "ada-password") // the admin's own token expired too
	var list struct{ Devices []auth.Device }
	if st := sdkDoJSON(t, e, http.MethodGet, admin, "/v1/admin/users/"+me.ID+"/devices", nil, &list); st != http.StatusOK || len(list.Devices) != 1 {
		t.Fatalf("device listing: %d %+v", st, list)
	}
	if got := list.Devices[0]; got.WipeRequestedAt.IsZero() || got.WipeConfirmedAt.IsZero() || got.WipeConfirmedAt.Before(got.WipeRequestedAt) {
		t.Fatalf("listing does not show the wipe confirmed: %+v", got)
	}

	var trail struct{ Entries []auth.AuditEntry }
	if st := sdkDoJSON(t, e, http.MethodGet, admin, "/v1/admin/audit?action=device.", nil, &trail); st != http.StatusOK {
		t.Fatalf("audit: %d", st)
	}
	seen := map[string]string{}
	for _, en := range trail.Entries {
		if en.TargetID == ann.ID().String() {
			seen[en.Action] = en.ActorID
		}
	}
	if seen[auth.ActionDeviceWipeRequest] == "" || seen[auth.ActionDeviceWipeConfirm] != me.ID {
		t.Fatalf("audit of the wipe: %v", seen)
	}

	_, err = bea.Sync(ctx)
	var p *api.Problem
	if !errors.As(err, &p) || p.Code != api.CodeDeviceRevoked || errors.Is(err, client.ErrWiped) {
		t.Fatalf("plainly revoked tablet: %v", err)
	}
	if states, _ := bea.States(ctx); len(states) != 5 {
		t.Fatalf("a revoke without wipe deleted records: %d", len(states))
	}
}

// TestSDKErasureLeavesNoResidue: bea's tablet holds, for a person about to
// be erased, an older rejection (a bad value the server quarantined), an
// edit in flight and an edit still in the outbox. After the erasure
// reaches it, nothing of the person is left: no record, no outbox op, no
// rejection.
func TestSDKErasureLeavesNoResidue(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	admin := sdkAdmin(t, e, sdkTeam)
	ann := e.device("ann", "", nil)
	bea := e.device("bea", "", func(o *client.Options) {
		o.NoValidation = true
		o.MaxOpsPerChange, o.MaxChangesPerRequest = 1, 1
	})
	person := client.Ref{Team: sdkTeam, Collection: "people", ID: "p-erase"}
	kept := client.Ref{Team: sdkTeam, Collection: "people", ID: "p-keep"}
	for _, ref := range []client.Ref{person, kept} {
		if err := ann.CreateWithID(ctx, ref, sdkPerson(ref.ID)); err != nil {
			t.Fatal(err)
		}
	}
	sdkMustSync(t, ann)
	sdkMustSync(t, bea)
	if err := bea.Set(ctx, person, "email", "edith@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := bea.Set(ctx, person, "cfs", 42); err != nil { // quarantined: a stored rejection with her data
		t.Fatal(err)
	}
	for {
		res, err := bea.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rejected) > 0 || res.Pushed == 0 {
			break
		}
	}
	if rj, _ := bea.Rejected(ctx); len(rj) != 1 || rj[0].Op.Record != person.ID {
		t.Fatalf("setup: %+v", rj)
	}
	// Two more edits: one goes out with the next request, one stays in the
	// outbox (one change per request).
	if err := bea.Set(ctx, person, "email", "edith.j@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := bea.Set(ctx, person, "phone", "0161 496 0003"); err != nil {
		t.Fatal(err)
	}
	if err := bea.Set(ctx, kept, "phone", "0161 496 0004"); err != nil {
		t.Fatal(err)
	}
	req := map[string]any{"team": sdkTeam, "collection": "people", "id": person.ID}
	if st := sdkPostJSON(t, e, admin, "/v1/admin/erasures", req, nil); st != http.StatusOK {
		t.Fatalf("erasure: %d", st)
	}
	res, err := bea.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, rj := range res.Rejected {
		if rj.Op.Record == person.ID && (rj.Code != api.CodeRecordErased || rj.Op.Value != nil) {
			t.Fatalf("reported rejection of the erased record carries data: %+v", rj)
		}
	}
	if _, err := bea.Get(ctx, person); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("erased record still readable: %v", err)
	}
	if rj, _ := bea.Rejected(ctx); len(rj) != 0 {
		t.Fatalf("Rejected still holds %+v", rj)
	}
	ops, _ := bea.PendingOps(ctx)
	for _, op := range ops {
		if op.Record == person.ID {
			t.Fatalf("outbox still holds %+v", op)
		}
	}
	if st := bea.Status().Pending; st != len(ops) {
		t.Fatalf("Status().Pending %d, outbox %d", st, len(ops))
	}
	for {
		r, err := bea.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Pushed == 0 {
			break
		}
	}
	if got, err := bea.Get(ctx, kept); err != nil || fmt.Sprint(got.Fields["phone"].Value) != "0161 496 0004" {
		t.Fatalf("the other person's edit: %v %v", got, err)
	}
	sdkMustSync(t, ann)
	sdkAssertConverged(t, ann, bea)
}

// TestRawClientClinicalRules drives the rules over the wire with the raw
// harness (no SDK), as a client in another language would see them: a
// link worker's settling write comes back resolve_forbidden with the
// record's server state in `1a`; an ordinary write covering another
// author's value comes back conflict_in_review (quarantined); the
// coordinator's settling write is merged; every reply states the scope.
func TestRawClientClinicalRules(t *testing.T) {
	e := newEnv(t)
	ann, bea, cat := e.login("ann"), e.login("bea"), e.login("cat")
	person := map[string]any{"given_name": "Edna", "family_name": "Hart", "date_of_birth": "1941-03-02", "address": "3 Mill Lane"}
	var ops []crdt.Op
	for f, v := range person {
		ops = append(ops, ann.write("wigan", "people", "p1", f, v))
	}
	ops = append(ops, ann.write("wigan", "people", "p1", "cfs", 4))
	ann.sync(ann.change(ops...))
	bea.sync()
	cat.sync()
	five := ann.write("wigan", "people", "p1", "cfs", 5)
	six := bea.write("wigan", "people", "p1", "cfs", 6)
	ann.sync(ann.change(five))
	resp := bea.sync(bea.change(six))
	if resp.Scope == nil || len(resp.Scope.Teams) != 1 || resp.Scope.Teams[0] != "wigan" {
		t.Fatalf("scope %+v", resp.Scope)
	}
	ann.sync()

	// Ann (link worker) settles: her pred covers 5 and 6.
	settle := ann.write("wigan", "people", "p1", "cfs", 7)
	resp = ann.sync(ann.change(settle))
	if r := resp.Results[0]; len(r.Ops) != 1 || r.Ops[0].Code != api.CodeResolveForbidden || r.Ops[0].Quarantined {
		t.Fatalf("link worker's settle: %+v", resp.Results)
	}
	if len(resp.Replace) != 1 {
		t.Fatalf("no record to replace in the reply: %+v", resp)
	}
	if rec, err := resp.Replace[0].Record(); err != nil || len(rec.Field("cfs").Entries) != 2 {
		t.Fatalf("replaced record %+v %v", rec, err)
	}
	// Bea names only ann's 5 (as the old SDK's Set did with the winner).
	partial := bea.write("wigan", "people", "p1", "cfs", 8)
	partial.Pred = []crdt.OpID{five.ID}
	resp = bea.sync(bea.change(partial))
	if r := resp.Results[0]; len(r.Ops) != 1 || r.Ops[0].Code != api.CodeConflictInReview || !r.Ops[0].Quarantined {
		t.Fatalf("partial overwrite: %+v", resp.Results)
	}
	// The client replaces (not merges) its copy with the `1a` state: its
	// refused 8 goes, ann's 5 comes back.
	if len(resp.Replace) != 1 {
		t.Fatalf("no record to replace after the partial overwrite")
	}
	rec, err := resp.Replace[0].Record()
	if err != nil {
		t.Fatal(err)
	}
	bea.records["people/p1"] = rec
	// The coordinator settles.
	cat.sync()
	resp = cat.sync(cat.change(cat.write("wigan", "people", "p1", "cfs", 5)))
	if r := resp.Results[0]; len(r.Ops) != 0 || len(resp.Replace) != 0 {
		t.Fatalf("coordinator's settle: %+v", resp.Results)
	}
	bea.sync()
	if got := bea.value("people", "p1", "cfs"); fmt.Sprint(got) != "5" || len(bea.rec("wigan", "people", "p1").Field("cfs").Entries) != 1 {
		t.Fatalf("bea after the coordinator: %v", got)
	}
}
