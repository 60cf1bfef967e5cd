package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/crypto/bcrypt"
)

const password = "correct horse battery"

// env is one server on loopback with seeded teams and users.
type env struct {
	t     *testing.T
	srv   *server.Server
	ts    *httptest.Server
	data  string
	users map[string]string // username → user ID
}

func newEnv(t *testing.T, mods ...func(*server.Config)) *env {
	t.Helper()
	cfg := server.Config{
		DataDir:    t.TempDir(),
		BcryptCost: bcrypt.MinCost,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		DeviceRate: -1,
		AuthRate:   -1,

		SmallMemory: true,
	}
	for _, m := range mods {
		m(&cfg)
	}
	ctx := context.Background()
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(openAPIChecked(t, srv.Handler()))
	e := &env{t: t, srv: srv, ts: ts, data: cfg.DataDir, users: map[string]string{}}
	t.Cleanup(func() {
		ts.Close()
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	a := srv.Auth()
	for _, tm := range [][2]string{{"wigan", "Wigan Frailty"}, {"ashton", "Ashton PCN"}} {
		if _, err := a.CreateTeam(ctx, tm[0], tm[1]); err != nil {
			t.Fatal(err)
		}
	}
	// One user per role and team, plus an admin of wigan.
	for _, u := range []struct{ name, role, team string }{
		{"ann", api.RoleLinkWorker, "wigan"},
		{"bea", api.RoleLinkWorker, "wigan"},
		{"cat", api.RoleCoordinator, "wigan"},
		{"dan", api.RoleAdmin, "wigan"},
		{"eve", api.RoleLinkWorker, "ashton"},
		{"fay", api.RoleCoordinator, "ashton"},
		{"gus", api.RoleAdmin, "ashton"},
	} {
		nu, err := a.CreateUser(ctx, authNewUser(u.name, u.role, u.team))
		if err != nil {
			t.Fatal(err)
		}
		e.users[u.name] = nu.ID
	}
	return e
}

// device is one tablet: a replica with its tokens, clock, seq and cursor.
type device struct {
	e       *env
	user    string
	id      crdt.ReplicaID
	access  string
	refresh string
	clock   *crdt.Clock
	seq     uint64
	cursor  []byte
	records map[string]*crdt.Record // collection/id → state seen
}

func (e *env) login(user string) *device {
	e.t.Helper()
	d := &device{e: e, user: user, id: crdt.NewReplicaID(), clock: crdt.NewClock(time.Now, time.Minute), records: map[string]*crdt.Record{}}
	var tr api.TokenResponse
	st, p := e.doJSON(http.MethodPost, "/v1/auth/login", "", api.LoginRequest{Username: user, Password: password, DeviceID: d.id.String(), DeviceName: user + "'s tablet"}, &tr)
	if st != http.StatusOK {
		e.t.Fatalf("login %s: %d %+v", user, st, p)
	}
	d.access, d.refresh = tr.AccessToken, tr.RefreshToken
	return d
}

// doJSON sends a JSON request and decodes a 2xx reply into out, or returns
// the problem.
func (e *env) doJSON(method, path, token string, body, out any) (int, *api.Problem) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, b := e.roundTrip(req)
	if res.StatusCode >= 300 {
		return res.StatusCode, e.jsonProblem(res, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return res.StatusCode, nil
}

// roundTrip sends req to the env's server and returns the response with
// its whole body read; a transport error fails the test.
func (e *env) roundTrip(req *http.Request) (*http.Response, []byte) {
	e.t.Helper()
	res, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return res, b
}

func (e *env) jsonProblem(res *http.Response, b []byte) *api.Problem {
	e.t.Helper()
	if ct := res.Header.Get("Content-Type"); ct != api.ProblemContentType {
		e.t.Fatalf("error reply %d has Content-Type %q, body %q", res.StatusCode, ct, b)
	}
	var p api.Problem
	if err := json.Unmarshal(b, &p); err != nil {
		e.t.Fatalf("problem %q: %v", b, err)
	}
	if p.Status != res.StatusCode || p.Code == "" || p.Code.Status() != res.StatusCode {
		e.t.Fatalf("problem %+v does not match status %d", p, res.StatusCode)
	}
	return &p
}

// postSync sends raw bytes to /v1/sync with headers and returns the status,
// the decoded response (2xx) or problem (else).
func (e *env) postSync(token string, body []byte, hdr map[string]string) (int, *api.SyncResponse, *api.Problem) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.ts.URL+"/v1/sync", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", api.ContentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, b := e.roundTrip(req)
	if res.StatusCode != http.StatusOK {
		if ct := res.Header.Get("Content-Type"); ct != api.ProblemMsgpackContentType {
			e.t.Fatalf("sync error %d has Content-Type %q, body %q", res.StatusCode, ct, b)
		}
		var p api.Problem
		if err := msgpack.Unmarshal(b, &p); err != nil {
			e.t.Fatalf("msgpack problem %x: %v", b, err)
		}
		if p.Status != res.StatusCode || p.Code.Status() != res.StatusCode {
			e.t.Fatalf("problem %+v does not match status %d", p, res.StatusCode)
		}
		return res.StatusCode, nil, &p
	}
	if ct := res.Header.Get("Content-Type"); ct != api.ContentType {
		e.t.Fatalf("sync reply Content-Type %q", ct)
	}
	var resp api.SyncResponse
	if err := msgpack.Unmarshal(b, &resp); err != nil {
		e.t.Fatalf("sync response: %v", err)
	}
	return res.StatusCode, &resp, nil
}

func encode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rec returns the device's state of a record, creating an empty one.
func (d *device) rec(team, coll, id string) *crdt.Record {
	k := coll + "/" + id
	r, ok := d.records[k]
	if !ok {
		r = crdt.NewRecord(team, coll, id)
		d.records[k] = r
	}
	return r
}

// write makes a register write on the device's state and returns the op.
func (d *device) write(team, coll, id, field string, v any) crdt.Op {
	r := d.rec(team, coll, id)
	op := r.Write(crdt.OpID{Time: d.clock.Now(), Replica: d.id}, field, crdt.MustValue(v))
	if err := r.Apply(&op); err != nil {
		d.e.t.Fatal(err)
	}
	return op
}

// change wraps ops into the device's next change.
func (d *device) change(ops ...crdt.Op) api.Change {
	d.seq++
	return api.Change{Seq: d.seq, Ops: ops}
}

// sync pushes changes and pulls; it fails the test on an error reply and
// merges what it pulled into the device's states.
func (d *device) sync(changes ...api.Change) *api.SyncResponse {
	d.e.t.Helper()
	st, resp, p := d.trySync(changes...)
	if st != http.StatusOK {
		d.e.t.Fatalf("%s sync: %d %+v", d.user, st, p)
	}
	return resp
}

// request builds the device's sync request for changes, at its cursor.
func (d *device) request(changes ...api.Change) *api.SyncRequest {
	return &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: d.id, Clock: d.clock.Now(), Changes: changes, Cursor: d.cursor}
}

// syncHTTPRequest returns a POST of the device's sync request for changes
// to url, with its access token, for tests that drive a server other than
// env's from their own goroutines (they cannot call t.Fatal there, so a
// failure shows in the response instead).
func (d *device) syncHTTPRequest(url string, changes ...api.Change) *http.Request {
	b, _ := msgpack.Marshal(d.request(changes...))
	hr, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	hr.Header.Set("Content-Type", api.ContentType)
	hr.Header.Set("Authorization", "Bearer "+d.access)
	return hr
}

func (d *device) trySync(changes ...api.Change) (int, *api.SyncResponse, *api.Problem) {
	d.e.t.Helper()
	st, resp, p := d.e.postSync(d.access, encode(d.e.t, d.request(changes...)), nil)
	if resp != nil {
		if err := d.clock.Update(resp.Clock); err != nil {
			d.e.t.Fatal(err)
		}
		d.cursor = resp.Cursor
		for _, raw := range resp.Snapshot {
			r, err := raw.Record()
			if err != nil {
				d.e.t.Fatal(err)
			}
			if err := d.rec(r.Team, r.Collection, r.ID).Merge(r); err != nil {
				d.e.t.Fatal(err)
			}
		}
		for _, pc := range resp.Changes {
			ops, err := pc.Ops.Ops()
			if err != nil {
				d.e.t.Fatal(err)
			}
			for i := range ops {
				op := &ops[i]
				if err := d.rec(op.Team, op.Collection, op.Record).Apply(op); err != nil {
					d.e.t.Fatal(err)
				}
			}
		}
	}
	return st, resp, p
}

// value returns the device's winning value of a register, decoded.
func (d *device) value(coll, id, field string) any {
	r, ok := d.records[coll+"/"+id]
	if !ok {
		return nil
	}
	w, ok := r.Field(field).Winner()
	if !ok {
		return nil
	}
	var v any
	if err := msgpack.Unmarshal(w.Value, &v); err != nil {
		d.e.t.Fatal(err)
	}
	return v
}
