package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
)

// FuzzSyncHandler posts arbitrary bodies, plain and gzipped, through the
// whole sync route (auth, limits, decode, engine on a real Badger) as an
// authenticated device. Every answer must be a 200 or a 4xx problem with a
// code: outside bytes must never cause a 5xx or a panic. Seeds are
// validRequest (whose replica the device logs in with) and hostileBodies.
func FuzzSyncHandler(f *testing.F) {
	ctx := context.Background()
	s := newTestServer(f, func(c *Config) { c.DeviceRate = -1 })
	if _, err := s.auth.CreateTeam(ctx, "wigan", "Wigan"); err != nil {
		f.Fatal(err)
	}
	if _, err := s.auth.CreateUser(ctx, auth.NewUser{Username: "ann", Password: "long enough", Role: api.RoleLinkWorker, Teams: []string{"wigan"}}); err != nil {
		f.Fatal(err)
	}
	// validRequest's replica.
	tr, err := s.auth.Login(ctx, "ann", "long enough", "d00d0102030405060708090a0b0c0d0e", "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	f.Add(validRequest(f), false)
	f.Add(validRequest(f), true)
	f.Add(validPackedRequest(f), false)
	for _, b := range hostileBodies(f) {
		if len(b) < 4096 {
			f.Add(b, false)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, gz bool) {
		if gz {
			var buf bytes.Buffer
			w := gzip.NewWriter(&buf)
			w.Write(body)
			w.Close()
			body = buf.Bytes()
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/sync", bytes.NewReader(body))
		req.Header.Set("Content-Type", api.ContentType)
		req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
		if gz {
			req.Header.Set("Content-Encoding", "gzip")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch {
		case w.Code == http.StatusOK:
		case w.Code >= 400 && w.Code < 500:
			if ct := w.Header().Get("Content-Type"); ct != api.ProblemMsgpackContentType {
				t.Fatalf("%d with Content-Type %q", w.Code, ct)
			}
		default:
			t.Fatalf("status %d for body %x: %x", w.Code, body, w.Body.Bytes())
		}
	})
}

// FuzzJSONRoutes posts arbitrary bodies to the JSON routes that take one,
// as an admin who is also a coordinator of the team: never a 5xx.
func FuzzJSONRoutes(f *testing.F) {
	ctx := context.Background()
	s := newTestServer(f, func(c *Config) { c.DeviceRate, c.AuthRate = -1, -1 })
	if _, err := s.auth.CreateTeam(ctx, "wigan", "Wigan"); err != nil {
		f.Fatal(err)
	}
	u, err := s.auth.CreateUser(ctx, auth.NewUser{Username: "root", Password: "long enough", Role: api.RoleAdmin, Teams: []string{"wigan"}})
	if err != nil {
		f.Fatal(err)
	}
	tr, err := s.auth.Login(ctx, "root", "long enough", "d00d0102030405060708090a0b0c0d0e", "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	routes := []struct{ method, path string }{
		{http.MethodPost, "/v1/auth/login"},
		{http.MethodPost, "/v1/auth/refresh"},
		{http.MethodPost, "/v1/admin/teams"},
		{http.MethodPost, "/v1/admin/users"},
		{http.MethodPatch, "/v1/admin/users/" + u.ID},
		{http.MethodPost, "/v1/teams/wigan/records/people/p1/resolve"},
	}
	for i, seed := range []string{
		// Other device IDs and tokens than the fuzzing token's, so that a
		// login or a refresh reuse does not end its session.
		`{"username":"root","password":"long enough","device_id":"aaaa0102030405060708090a0b0c0d0e"}`,
		`{"refresh_token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","device_id":"aaaa0102030405060708090a0b0c0d0e"}`,
		`{"id":"t1","name":"T"}`,
		`{"username":"x","password":"long enough","role":"admin","teams":["wigan"]}`,
		`{"role":"coordinator","teams":["wigan"]}`,
		`{"field":"given_name","value":{"a":[1,2.5,"x",null,true]}}`,
	} {
		f.Add(uint8(i), []byte(seed))
	}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := routes[int(route)%len(routes)]
		req := httptest.NewRequest(r.method, r.path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s with %q: %d %s", r.method, r.path, body, w.Code, w.Body.Bytes())
		}
	})
}

// validPackedRequest is validRequest's device pushing one change of four
// ops in two packed blocks (7q), the change continued from the first to
// the second, as the SDK sends a large push.
func validPackedRequest(t testing.TB) []byte {
	t.Helper()
	dev := crdt.ReplicaID{0xd0, 0x0d, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
	r := crdt.NewRecord("wigan", "people", "p2")
	var ops []crdt.Op
	for i, f := range []string{"given_name", "family_name", "postcode", "needs"} {
		ops = append(ops, r.Write(crdt.OpID{Time: crdt.MakeTimestamp(1_763_715_600_000+int64(i), 0), Replica: dev}, f, crdt.MustValue("v")))
	}
	var blocks [][]byte
	for _, part := range [][]crdt.Op{ops[:2], ops[2:]} {
		b, err := api.PackPush([]api.Change{{Seq: 1, Ops: part}})
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, b)
	}
	req := api.SyncRequest{Protocol: api.ProtocolVersion, Replica: dev, Clock: ops[3].ID.Time, Packed: blocks}
	b, err := msgpack.Marshal(&req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
