package web

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
)

var choiceRE = regexp.MustCompile(`name="choice" value="(op:[0-9a-f]+)"`)

// TestResolveFromConsole settles the demo's clinical CFS conflict: a
// reason is required, the resolution is the coordinator's op with the
// reason in history, and a second attempt finds it settled. A non-clinical
// conflict is settled with a typed value and no reason.
func TestResolveFromConsole(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cf := e.cfsConflict()
	ref := api.RecordRef{Team: cf.Team, Collection: cf.Collection, ID: cf.Record}
	b := e.browser()
	b.mustSignIn("diane")
	path := "/console/teams/" + cf.Team + "/conflicts/people/" + cf.Record + "/cfs"
	st, body, _ := b.get(path)
	if st != http.StatusOK {
		t.Fatalf("conflict page: %d", st)
	}
	choices := choiceRE.FindAllStringSubmatch(body, -1)
	if len(choices) != 2 {
		t.Fatalf("choices: %v", choices)
	}
	tok := csrf(body)
	st, body, _ = b.post(path, url.Values{"csrf": {tok}, "choice": {choices[0][1]}})
	if st != http.StatusUnprocessableEntity || !strings.Contains(body, "clinical field: say why") {
		t.Fatalf("clinical without reason: %d", st)
	}
	if rec, _ := e.eng.Record(ctx, e.callers["amara"], ref); !rec.Field("cfs").Conflict() {
		t.Fatal("refused resolution changed the record")
	}
	reason := "Confirmed with the frailty MDT: CFS 6 after the fall."
	st, _, loc := b.post(path, url.Values{"csrf": {tok}, "choice": {choices[0][1]}, "reason": {reason}})
	if st != http.StatusSeeOther || !strings.Contains(loc, "resolved=cfs") {
		t.Fatalf("resolve: %d %s", st, loc)
	}
	rec, err := e.eng.Record(ctx, e.callers["amara"], ref)
	if err != nil || rec.Field("cfs").Conflict() {
		t.Fatalf("after resolve: %v %v", rec.Field("cfs"), err)
	}
	hist, err := e.eng.History(ctx, e.callers["amara"], ref)
	if err != nil {
		t.Fatal(err)
	}
	last := hist[len(hist)-1]
	if last.Author != e.users["diane"].ID || last.Reason != reason || last.Op.Field != "cfs" || len(last.Op.Pred) != 2 {
		t.Fatalf("resolution op: %+v", last)
	}
	st, body, _ = b.get(loc)
	if st != http.StatusOK {
		t.Fatalf("record after resolve: %d", st)
	}
	contains(t, "record after resolve", body, "Conflict on cfs resolved", reason, "Diane Fletcher", "Doorstep server")
	// The audit trail has the read and the resolution, by the coordinator.
	entries, _, _, err := e.auth.AuditLog(ctx, auth.AuditQuery{Actor: e.users["diane"].ID, Action: "record.", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var read, resolved bool
	for _, en := range entries {
		read = read || (en.Action == "record.read" && en.TargetID == "people/"+cf.Record)
		resolved = resolved || (en.Action == "record.resolve" && en.Detail["reason"] == reason && en.Detail["field"] == "cfs" && en.Detail["op"] == opHex(last.Op.ID))
	}
	if !read || !resolved {
		t.Fatalf("audit trail: read %v, resolve %v: %+v", read, resolved, entries)
	}
	// Resolving again: the page says it is settled.
	if st, body, _ := b.post(path, url.Values{"csrf": {tok}, "choice": {choices[1][1]}, "reason": {"x"}}); st != http.StatusUnprocessableEntity || !strings.Contains(body, "no longer in conflict") {
		t.Fatalf("second resolve: %d", st)
	}

	// A non-clinical conflict: two workers set preferred_language offline.
	for i, who := range []string{"amara", "ben"} {
		c := e.callers[who]
		op := crdt.Op{ID: crdt.OpID{Time: rec.Field("cfs").Entries[0].ID.Time + crdt.Timestamp(i+1), Replica: c.Replica}, Team: ref.Team, Collection: "people", Record: ref.ID, Field: "preferred_language", Kind: crdt.KindWrite, Value: crdt.MustValue([]string{"en", "ur"}[i])}
		if res, err := e.eng.Push(ctx, c, []api.Change{{Seq: e.nextSeq(c), Ops: []crdt.Op{op}}}); err != nil || res[0].Status != api.ChangeApplied {
			t.Fatalf("push %s: %+v %v", who, res, err)
		}
	}
	path = "/console/teams/" + cf.Team + "/conflicts/people/" + cf.Record + "/preferred_language"
	st, body, _ = b.get(path)
	if st != http.StatusOK || strings.Contains(body, "required for a clinical field") {
		t.Fatalf("non-clinical conflict page: %d", st)
	}
	st, _, _ = b.post(path, url.Values{"csrf": {tok}, "choice": {"new"}, "value": {"pa"}})
	if st != http.StatusSeeOther {
		t.Fatalf("typed resolve: %d", st)
	}
	rec, _ = e.eng.Record(ctx, e.callers["amara"], ref)
	if w, _ := rec.Field("preferred_language").Winner(); show(w.Value) != "pa" || rec.Field("preferred_language").Conflict() {
		t.Fatalf("typed value: %v", rec.Field("preferred_language"))
	}
}
