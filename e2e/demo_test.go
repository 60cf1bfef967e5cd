package e2e

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/demo"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/server"
	dsync "github.com/doorstep-health/doorstep/sync"
	"golang.org/x/crypto/bcrypt"
)

// openAt opens a server on dir (which may already hold data) with the
// schema sch (nil: the default) and serves it on loopback. The caller
// closes it with stop; a test that does not is cleaned up at its end.
func openAt(t *testing.T, dir string, sch *schema.Schema) (e *env, stop func()) {
	t.Helper()
	srv, err := server.New(context.Background(), server.Config{
		DataDir: dir, BcryptCost: bcrypt.MinCost, SmallMemory: true, Schema: sch,
		DeviceRate: -1, AuthRate: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(openAPIChecked(t, srv.Handler()))
	e = &env{t: t, srv: srv, ts: ts, data: dir, users: map[string]string{}}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		ts.Close()
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}
	t.Cleanup(stop)
	return e, stop
}

// loadDemo loads ds the way doorstep serve --demo does (cmd/doorstep
// seedDemo, which e2e cannot import): teams and users when the store has
// none, a login per device, then every change through the sync engine as
// its device's user. It pushes every change even when the teams already
// existed, so a second load re-sends the whole history, and returns the
// results.
func loadDemo(t *testing.T, e *env, ds *demo.Dataset) []api.ChangeResult {
	t.Helper()
	ctx := context.Background()
	a, eng := e.srv.Auth(), e.srv.Engine()
	teams, err := a.Teams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(teams) == 0 {
		for _, tm := range ds.Teams {
			if _, err := a.CreateTeam(ctx, tm.ID, tm.Name); err != nil {
				t.Fatal(err)
			}
		}
		for _, u := range ds.Users {
			if _, err := a.CreateUser(ctx, auth.NewUser{Username: u.Username, Name: u.Name, Password: u.Password, Role: u.Role, Teams: u.Teams}); err != nil {
				t.Fatal(err)
			}
		}
	}
	users, err := a.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		e.users[u.Username] = u.ID
	}
	callers := map[crdt.ReplicaID]dsync.Caller{}
	for _, d := range ds.Devices {
		if _, err := a.Login(ctx, d.Username, demo.DemoPassword, d.Replica.String(), d.Name); err != nil {
			t.Fatalf("device of %s: %v", d.Username, err)
		}
		u, err := a.User(ctx, e.users[d.Username])
		if err != nil {
			t.Fatal(err)
		}
		callers[d.Replica] = dsync.Caller{User: u.ID, Replica: d.Replica, Teams: u.Teams}
	}
	var out []api.ChangeResult
	for i, p := range ds.Pushes {
		res, err := eng.Push(ctx, callers[p.Device], []api.Change{p.Change})
		if err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		out = append(out, res...)
	}
	return out
}

// everything pulls every record the demo admin (both teams) can see, from
// an empty cursor to the end, and returns each record's encoding and the
// number of log entries pulled after the snapshot.
func everything(t *testing.T, e *env, teams []string) (map[api.RecordRef][]byte, int) {
	t.Helper()
	c := dsync.Caller{User: e.users["admin"], Replica: crdt.NewReplicaID(), Teams: teams}
	recs, logged := map[api.RecordRef][]byte{}, 0
	var cur []byte
	for range 10000 {
		resp, err := e.srv.Engine().Pull(context.Background(), c, cur, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range resp.Snapshot {
			r, err := raw.Record()
			if err != nil {
				t.Fatal(err)
			}
			b, err := crdt.MarshalRecord(r)
			if err != nil {
				t.Fatal(err)
			}
			recs[api.RecordRef{Team: r.Team, Collection: r.Collection, ID: r.ID}] = b
		}
		logged += len(resp.Changes)
		cur = resp.Cursor
		if !resp.More {
			return recs, logged
		}
	}
	t.Fatal("pull never finished")
	return nil, 0
}

// TestDemoSeedRestartAndReview loads the demo into a fresh data dir,
// restarts the server on the same dir and loads it again (nothing is
// doubled: every change comes back a duplicate and every record's encoding
// is unchanged), then has each coordinator find the seeded conflict
// through the HTTP review API.
func TestDemoSeedRestartAndReview(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ds := demo.Build(1, now)
	teams := []string{demo.TeamWigan, demo.TeamAshton}

	e, stop := openAt(t, dir, nil)
	for i, r := range loadDemo(t, e, ds) {
		if r.Status != api.ChangeApplied || len(r.Ops) != 0 {
			t.Fatalf("first load, push %d: %+v", i, r)
		}
	}
	before, logged := everything(t, e, teams)
	if len(before) == 0 {
		t.Fatal("demo loaded no records")
	}
	t.Logf("demo: %d changes, %d records", len(ds.Pushes), len(before))
	stop()

	e, _ = openAt(t, dir, nil)
	if us, err := e.srv.Auth().Users(context.Background()); err != nil || len(us) != len(ds.Users) {
		t.Fatalf("users after restart: %d %v", len(us), err)
	}
	for i, r := range loadDemo(t, e, demo.Build(1, now)) {
		if r.Status != api.ChangeDuplicate {
			t.Fatalf("second load, push %d: %+v, want duplicate", i, r)
		}
	}
	after, logged2 := everything(t, e, teams)
	if len(after) != len(before) || logged2 != logged {
		t.Fatalf("after restart and reload: %d records (%d log entries), before %d (%d)", len(after), logged2, len(before), logged)
	}
	for ref, b := range before {
		if !bytes.Equal(after[ref], b) {
			t.Fatalf("record %v changed by the reload", ref)
		}
	}
	if qs, err := e.srv.Engine().Quarantined(context.Background(), 10); err != nil || len(qs) != 0 {
		t.Fatalf("demo quarantined ops: %+v %v", qs, err)
	}

	// Each coordinator sees their team's seeded conflict over HTTP.
	coordinators := map[string]string{}
	for _, u := range ds.Users {
		if u.Role == api.RoleCoordinator {
			coordinators[u.Teams[0]] = u.Username
		}
	}
	for _, c := range ds.Conflicts {
		var tr api.TokenResponse
		st, p := e.doJSON(http.MethodPost, "/v1/auth/login", "", api.LoginRequest{Username: coordinators[c.Team], Password: demo.DemoPassword, DeviceID: crdt.NewReplicaID().String()}, &tr)
		if st != http.StatusOK {
			t.Fatalf("login %s: %d %+v", coordinators[c.Team], st, p)
		}
		var list struct{ Records []api.RecordRef }
		if st, p := e.doJSON(http.MethodGet, "/v1/teams/"+c.Team+"/conflicts", tr.AccessToken, nil, &list); st != http.StatusOK {
			t.Fatalf("conflicts: %d %+v", st, p)
		}
		want := api.RecordRef{Team: c.Team, Collection: c.Collection, ID: c.Record}
		found := false
		for _, r := range list.Records {
			found = found || r == want
		}
		if !found {
			t.Fatalf("%s's conflicts %+v lack %+v", coordinators[c.Team], list.Records, want)
		}
		var rec server.RecordJSON
		if st, p := e.doJSON(http.MethodGet, "/v1/teams/"+c.Team+"/records/"+c.Collection+"/"+c.Record, tr.AccessToken, nil, &rec); st != http.StatusOK {
			t.Fatalf("record: %d %+v", st, p)
		}
		f := rec.Fields[c.Field]
		if f == nil || !f.Conflict || f.Clinical != c.Clinical || len(f.Values) != 2 {
			t.Fatalf("%s.%s: %+v", c.Record, c.Field, f)
		}
		if f.Values[0].Value == f.Values[1].Value || f.Values[0].Author == f.Values[1].Author || f.Values[0].AuthorName == "" || f.Values[1].AuthorName == "" {
			t.Errorf("concurrent values are not two attributed edits: %+v", f.Values)
		}
		// A coordinator sees only their own team.
		other := demo.TeamAshton
		if c.Team == demo.TeamAshton {
			other = demo.TeamWigan
		}
		if st, _ := e.doJSON(http.MethodGet, "/v1/teams/"+other+"/conflicts", tr.AccessToken, nil, nil); st != http.StatusForbidden {
			t.Errorf("%s reads %s's conflicts: %d", coordinators[c.Team], other, st)
		}
	}
	if len(ds.Conflicts) == 0 || ds.Conflicts[0].Field != "cfs" || !ds.Conflicts[0].Clinical {
		t.Fatalf("demo's first conflict is not the clinical CFS one: %+v", ds.Conflicts)
	}
}
