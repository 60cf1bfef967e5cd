package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	dsync "github.com/doorstep-health/doorstep/sync"
)

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestEraseRoute: the route erases, answers with the report, checks its
// body, and writes one audit line with IDs and no personal data.
func TestEraseRoute(t *testing.T) {
	logs := &lockedBuffer{}
	s := newTestServer(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	ctx := context.Background()
	a := s.Auth()
	if _, err := a.CreateTeam(ctx, "wigan", "Wigan"); err != nil {
		t.Fatal(err)
	}
	adm, err := a.CreateUser(ctx, auth.NewUser{Username: "root", Name: "Root", Password: "root-password-1", Role: api.RoleAdmin, Teams: []string{"wigan"}})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := a.Login(ctx, "root", "root-password-1", crdt.NewReplicaID().String(), "desk")
	if err != nil {
		t.Fatal(err)
	}
	dev := dsync.Caller{User: "u1", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	rec := crdt.NewRecord("wigan", "people", "p-77")
	clock := crdt.NewClock(time.Now, time.Minute)
	var ops []crdt.Op
	for field, v := range map[string]any{"given_name": "Secretname", "family_name": "Jones", "date_of_birth": "1940-01-02", "address": "1 Library Street"} {
		op := rec.Write(crdt.OpID{Time: clock.Now(), Replica: dev.Replica}, field, crdt.MustValue(v))
		if err := rec.Apply(&op); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, op)
	}
	res, err := s.Engine().Push(ctx, dev, []api.Change{{Seq: 1, Ops: ops}})
	if err != nil || len(res[0].Ops) != 0 {
		t.Fatalf("push %+v %v", res, err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	post := func(body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/admin/erasures", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := post(`{"team":"wigan","collection":"people"}`); problemOf(t, r).Code != api.CodeBadRequest {
		t.Fatal("missing id accepted")
	}
	if r := post(`{"team":"wigan","collection":"people","id":"nobody"}`); problemOf(t, r).Code != api.CodeNotFound {
		t.Fatal("unknown record not 404")
	}
	r := post(`{"team":"wigan","collection":"people","id":"p-77","cascade":false}`)
	defer r.Body.Close()
	var rep ErasureReport
	if err := json.NewDecoder(r.Body).Decode(&rep); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("erase: %d %v", r.StatusCode, err)
	}
	if len(rep.Records) != 1 || rep.Ops != 4 || rep.LogEntriesDeleted != 1 || rep.Position == 0 {
		t.Fatalf("report %+v", rep)
	}
	out := logs.String()
	var audit string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "audit=erasure") && strings.Contains(line, "erasure done") {
			audit = line
		}
	}
	if audit == "" || !strings.Contains(audit, "admin="+adm.ID) || !strings.Contains(audit, "id=p-77") || !strings.Contains(audit, "ops=4") {
		t.Fatalf("audit line %q in logs:\n%s", audit, out)
	}
	if strings.Contains(out, "Secretname") {
		t.Fatal("personal data in the logs")
	}
}
