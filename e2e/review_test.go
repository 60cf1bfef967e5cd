package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/server"
)

func TestCoordinatorReview(t *testing.T) {
	e := newEnv(t)
	ann, bea, cat := e.login("ann"), e.login("bea"), e.login("cat")
	start := time.Now().Add(-time.Second)
	ann.sync(ann.change(
		ann.write("wigan", "people", "p1", "given_name", "Edna"),
		ann.write("wigan", "people", "p1", "postcode", "WN1 1AA"),
	))
	for i := 0; i < 3; i++ {
		bea.sync()
	}
	// Offline, both change the preferred name.
	opA := ann.write("wigan", "people", "p1", "preferred_name", "Ed")
	opB := bea.write("wigan", "people", "p1", "preferred_name", "Eddie")
	ann.sync(ann.change(opA))
	bea.sync(bea.change(opB))

	var changed struct{ Records []api.RecordRef }
	if st, p := e.doJSON(http.MethodGet, "/v1/teams/wigan/records?since="+url.QueryEscape(start.UTC().Format(time.RFC3339Nano)), cat.access, nil, &changed); st != http.StatusOK {
		t.Fatalf("changed: %d %+v", st, p)
	}
	if len(changed.Records) != 1 || changed.Records[0].ID != "p1" {
		t.Fatalf("changed records %+v", changed)
	}
	var conflicts struct{ Records []api.RecordRef }
	if st, p := e.doJSON(http.MethodGet, "/v1/teams/wigan/conflicts", cat.access, nil, &conflicts); st != http.StatusOK || len(conflicts.Records) != 1 {
		t.Fatalf("conflicts: %d %+v %+v", st, conflicts, p)
	}
	if mb := e.scrape(); !strings.Contains(mb, `doorstep_conflicts_open{team="wigan"} 1`+"\n") {
		t.Errorf("metrics lack the open conflict:\n%s", mb)
	}

	var rec server.RecordJSON
	if st, p := e.doJSON(http.MethodGet, "/v1/teams/wigan/records/people/p1", cat.access, nil, &rec); st != http.StatusOK {
		t.Fatalf("record: %d %+v", st, p)
	}
	f := rec.Fields["preferred_name"]
	if f == nil || !f.Conflict || f.Type != "register" || len(f.Values) != 2 {
		t.Fatalf("preferred_name %+v", f)
	}
	want := map[string]string{"Ed": e.users["ann"], "Eddie": e.users["bea"]}
	wantDev := map[string]string{"Ed": ann.id.String(), "Eddie": bea.id.String()}
	for _, v := range f.Values {
		s, _ := v.Value.(string)
		if want[s] != v.Author || wantDev[s] != v.Device || v.Op == "" || v.Time.IsZero() || v.AuthorName == "" {
			t.Errorf("concurrent value %+v", v)
		}
	}
	winner := "Ed"
	if opB.ID.Compare(opA.ID) > 0 {
		winner = "Eddie"
	}
	if f.Value != winner {
		t.Errorf("winner %v, want %v", f.Value, winner)
	}
	if g := rec.Fields["given_name"]; g.Value != "Edna" || g.Conflict || len(g.Values) != 0 {
		t.Errorf("given_name %+v", g)
	}
	if pc := rec.Fields["postcode"]; !pc.Clinical {
		t.Errorf("postcode not marked clinical: %+v", pc)
	}
	if len(rec.Conflicts) != 1 || rec.Conflicts[0] != "preferred_name" || rec.Deleted {
		t.Errorf("record conflicts %+v deleted %v", rec.Conflicts, rec.Deleted)
	}

	var hist struct{ History []server.HistoryJSON }
	if st, p := e.doJSON(http.MethodGet, "/v1/teams/wigan/records/people/p1/history", cat.access, nil, &hist); st != http.StatusOK {
		t.Fatalf("history: %d %+v", st, p)
	}
	if len(hist.History) != 4 {
		t.Fatalf("history has %d entries, want 4: %+v", len(hist.History), hist.History)
	}
	for _, h := range hist.History {
		if h.Author == "" || h.AuthorName == "" || h.Device == "" || h.Received.IsZero() || h.Kind != "write" {
			t.Errorf("history entry %+v", h)
		}
	}

	// Resolve: the coordinator's write overwrites both values.
	var resolved server.RecordJSON
	st, p := e.doJSON(http.MethodPost, "/v1/teams/wigan/records/people/p1/resolve", cat.access, map[string]any{"field": "preferred_name", "value": "Edna"}, &resolved)
	if st != http.StatusOK {
		t.Fatalf("resolve: %d %+v", st, p)
	}
	if f := resolved.Fields["preferred_name"]; f.Conflict || f.Value != "Edna" {
		t.Fatalf("after resolve %+v", f)
	}
	if st, _ := e.doJSON(http.MethodGet, "/v1/teams/wigan/conflicts", cat.access, nil, &conflicts); st != http.StatusOK || len(conflicts.Records) != 0 {
		t.Fatalf("conflicts after resolve: %+v", conflicts)
	}
	// Devices pull the resolution.
	for i := 0; i < 3; i++ {
		ann.sync()
	}
	if got := ann.value("people", "p1", "preferred_name"); got != "Edna" {
		t.Fatalf("ann sees %v after resolve", got)
	}
	if st, _ := e.doJSON(http.MethodGet, "/v1/teams/wigan/records/people/nobody", cat.access, nil, nil); st != http.StatusNotFound {
		t.Fatalf("missing record: %d", st)
	}
	if st, p := e.doJSON(http.MethodGet, "/v1/teams/wigan/records?since=yesterday", cat.access, nil, nil); st != http.StatusBadRequest || p.Code != api.CodeBadRequest {
		t.Fatalf("bad since: %d %+v", st, p)
	}
}
