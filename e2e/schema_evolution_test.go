package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/server"
)

// allotmentExtension adds a field a newer app version writes before the
// server's schema knows it.
const allotmentExtension = `{"version": 2, "collections": [{"name": "people", "fields": [{"name": "allotment_plot", "type": "string", "max_length": 10}]}]}`

// TestSchemaEvolutionQuarantineAndReapply: a tablet on a newer app version
// writes a person with a field the server's schema does not know yet, in
// one change with valid fields. The server applies the rest of the change
// and quarantines the unknown field's op with its reason; the tablet's
// outbox moves on. After the server restarts with the schema extended, an
// admin re-applies the op: it shows in the merged record and reaches
// another tablet (on the old schema, which passes the field through) on its
// next pull.
func TestSchemaEvolutionQuarantineAndReapply(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e, stop := openAt(t, dir, nil)
	if _, err := e.srv.Auth().CreateTeam(ctx, "wigan", "Wigan Frailty"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, role string }{{"ann", api.RoleLinkWorker}, {"bea", api.RoleLinkWorker}, {"cat", api.RoleCoordinator}, {"dan", api.RoleAdmin}} {
		nu, err := e.srv.Auth().CreateUser(ctx, authNewUser(u.name, u.role, "wigan"))
		if err != nil {
			t.Fatal(err)
		}
		e.users[u.name] = nu.ID
	}
	annDir, beaDir := t.TempDir(), t.TempDir()
	open := func(dir, url string, newer bool) *client.Replica {
		t.Helper()
		opts := client.Options{Dir: dir, InsecureNoEncryption: true, ServerURL: url}
		if newer {
			// A newer app: its schema (version 2) is not the server's;
			// here it skips local validation to stand for it.
			opts.NoValidation, opts.SchemaVersion = true, 2
		}
		r, err := client.Open(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() }) // a second Close is harmless
		return r
	}
	ann, bea := open(annDir, e.ts.URL, true), open(beaDir, e.ts.URL, false)
	for name, r := range map[string]*client.Replica{"ann": ann, "bea": bea} {
		if _, err := r.Login(ctx, name, password); err != nil {
			t.Fatal(err)
		}
	}
	ref := client.Ref{Team: "wigan", Collection: "people", ID: "p1"}
	// One write, so one change: the valid fields and the unknown one.
	if err := ann.CreateWithID(ctx, ref, map[string]any{
		"given_name": "Edna", "family_name": "Hart", "date_of_birth": "1941-03-02", "address": "3 Mill Lane, Wigan",
		"allotment_plot": "14b",
	}); err != nil {
		t.Fatal(err)
	}
	res, err := ann.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Pushed != 1 || len(res.Rejected) != 1 {
		t.Fatalf("sync: %+v", res)
	}
	if rj := res.Rejected[0]; !rj.Quarantined || rj.Code != api.CodeUnknownField || rj.Op.Field != "allotment_plot" || rj.Detail == "" {
		t.Fatalf("rejection %+v", rj)
	}
	if st := ann.Status(); st.Pending != 0 {
		t.Fatalf("outbox still holds %d ops", st.Pending)
	}
	if ops, err := ann.PendingOps(ctx); err != nil || len(ops) != 0 {
		t.Fatalf("pending ops %d %v", len(ops), err)
	}
	// The tablet keeps its own write.
	if rec, err := ann.Get(ctx, ref); err != nil || rec.Fields["allotment_plot"].Value != "14b" {
		t.Fatalf("ann's record: %+v %v", rec, err)
	}

	dan := e.login("dan")
	cat := e.login("cat")
	var q struct{ Ops []server.QuarantineEntry }
	if st, p := e.doJSON(http.MethodGet, "/v1/admin/quarantine", dan.access, nil, &q); st != http.StatusOK {
		t.Fatalf("quarantine: %d %+v", st, p)
	}
	if len(q.Ops) != 1 {
		t.Fatalf("quarantine %+v", q.Ops)
	}
	entry := q.Ops[0]
	if entry.Code != api.CodeUnknownField || !strings.Contains(entry.Reason, "allotment_plot") || entry.Op.Field != "allotment_plot" ||
		entry.Author != e.users["ann"] || entry.Device != ann.ID().String() {
		t.Fatalf("quarantine entry %+v", entry)
	}
	reapply := fmt.Sprintf("/v1/admin/quarantine/%d/reapply", entry.ID)
	if st, _ := e.doJSON(http.MethodPost, reapply, dan.access, nil, nil); st != http.StatusBadRequest {
		t.Fatalf("reapply under the old schema: %d", st)
	}
	var rec server.RecordJSON
	if st, p := e.doJSON(http.MethodGet, "/v1/teams/wigan/records/people/p1", cat.access, nil, &rec); st != http.StatusOK {
		t.Fatalf("record: %d %+v", st, p)
	}
	if rec.Fields["given_name"] == nil || rec.Fields["given_name"].Value != "Edna" || rec.Fields["allotment_plot"] != nil {
		t.Fatalf("record before reapply: %+v", rec.Fields)
	}
	if _, err := bea.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := bea.Get(ctx, ref); err != nil || r.Fields["given_name"].Value != "Edna" {
		t.Fatalf("bea before reapply: %+v %v", r, err)
	}
	// Bea's app (default schema) refuses the field locally: a typed error.
	if err := bea.Set(ctx, ref, "allotment_plot", "9"); !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), "allotment_plot") {
		t.Fatalf("old-schema tablet wrote an unknown field: %v", err)
	}
	bea.Close()
	stop()

	// The service extends its schema and restarts on the same data.
	ext, err := schema.Default().Extend([]byte(allotmentExtension))
	if err != nil {
		t.Fatal(err)
	}
	e2, _ := openAt(t, dir, ext)
	for k, v := range e.users {
		e2.users[k] = v
	}
	if st, p := e2.doJSON(http.MethodPost, reapply, dan.access, nil, nil); st != http.StatusOK {
		t.Fatalf("reapply after the schema change: %d %+v", st, p)
	}
	if st, p := e2.doJSON(http.MethodGet, "/v1/teams/wigan/records/people/p1", cat.access, nil, &rec); st != http.StatusOK {
		t.Fatalf("record: %d %+v", st, p)
	}
	if f := rec.Fields["allotment_plot"]; f == nil || f.Value != "14b" || rec.Fields["given_name"].Value != "Edna" {
		t.Fatalf("record after reapply: %+v", rec.Fields)
	}
	// Bea's tablet, still on the default schema, pulls it and keeps it.
	bea = open(beaDir, e2.ts.URL, false)
	res, err = bea.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Pulled == 0 || res.Bootstrapped {
		t.Fatalf("bea's pull after reapply: %+v", res)
	}
	r, err := bea.Get(ctx, ref)
	if err != nil || r.Fields["allotment_plot"].Value != "14b" {
		t.Fatalf("bea after reapply: %+v %v", r, err)
	}
}
