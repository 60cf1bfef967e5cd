package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/demo"
	dsync "github.com/doorstep-health/doorstep/sync"
	"golang.org/x/net/html"
)

// checkAccessible parses a page and checks the rules every console page
// keeps: a language, a title, one h1, and every form control labelled.
func checkAccessible(t *testing.T, path, body string) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	labels := map[string]bool{}
	var controls []*html.Node
	h1 := 0
	var walk func(n *html.Node)
	attr := func(n *html.Node, k string) string {
		for _, a := range n.Attr {
			if a.Key == k {
				return a.Val
			}
		}
		return ""
	}
	text := func(n *html.Node) string {
		var b strings.Builder
		var f func(*html.Node)
		f = func(n *html.Node) {
			if n.Type == html.TextNode {
				b.WriteString(n.Data)
			}
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				f(c)
			}
		}
		f(n)
		return strings.TrimSpace(b.String())
	}
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "html":
				if attr(n, "lang") == "" {
					t.Errorf("%s: <html> without lang", path)
				}
			case "h1":
				h1++
			case "label":
				labels[attr(n, "for")] = true
			case "input", "select", "textarea":
				if typ := attr(n, "type"); typ != "hidden" && typ != "submit" {
					controls = append(controls, n)
				}
			case "button":
				if text(n) == "" && attr(n, "aria-label") == "" {
					t.Errorf("%s: a button without a name", path)
				}
			case "img":
				if attr(n, "alt") == "" {
					t.Errorf("%s: an image without alt", path)
				}
			case "svg":
				if attr(n, "aria-label") == "" {
					t.Errorf("%s: a chart without a text alternative", path)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if h1 != 1 {
		t.Errorf("%s: %d h1 headings, want 1", path, h1)
	}
	for _, c := range controls {
		id := attr(c, "id")
		if (id == "" || !labels[id]) && attr(c, "aria-label") == "" {
			t.Errorf("%s: <%s name=%q> has no label", path, c.Data, attr(c, "name"))
		}
	}
	if strings.Contains(body, "style=") {
		t.Errorf("%s: inline style (the CSP allows only the stylesheet)", path)
	}
}

func (e *env) cfsConflict() demo.Conflict {
	for _, c := range e.ds.Conflicts {
		if c.Field == "cfs" {
			return c
		}
	}
	e.t.Fatal("demo has no CFS conflict")
	return demo.Conflict{}
}

// TestEveryPageRenders signs in as the Wigan coordinator and the admin and
// renders every console page over the demo data, checking what each must
// show and that each is accessible.
func TestEveryPageRenders(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cf := e.cfsConflict()
	person, err := e.eng.Record(ctx, e.callers["amara"], api.RecordRef{Team: cf.Team, Collection: cf.Collection, ID: cf.Record})
	if err != nil {
		t.Fatal(err)
	}
	given, family, nhs, postcode := regString(person, "given_name"), regString(person, "family_name"), regString(person, "nhs_number"), regString(person, "postcode")
	// A quarantined op for the admin pages: a value the schema refuses.
	amara := e.callers["amara"]
	bad := crdt.Op{ID: crdt.OpID{Time: crdt.Timestamp(time.Now().UnixMilli()) << 16, Replica: amara.Replica}, Team: cf.Team, Collection: "people", Record: cf.Record, Field: "cfs", Kind: crdt.KindWrite, Value: crdt.MustValue("very frail")}
	if _, err := e.eng.Push(ctx, amara, []api.Change{{Seq: e.nextSeq(amara), Ops: []crdt.Op{bad}}}); err != nil {
		t.Fatal(err)
	}

	b := e.browser()
	st, body, _ := b.get("/console/login")
	if st != http.StatusOK {
		t.Fatalf("login page: %d", st)
	}
	checkAccessible(t, "/console/login", body)
	b.mustSignIn("diane")
	rec := "/console/teams/" + cf.Team + "/records/people/" + cf.Record
	pages := []struct {
		path  string
		wants []string
	}{
		{"/console/", []string{"Wigan"}},
		{"/console/teams/" + cf.Team, []string{"conflicts waiting", "changed", "Review cfs for " + given}},
		{"/console/teams/" + cf.Team + "/conflicts", []string{"cfs", "clinical", `aria-current="page">Conflicts`}},
		{"/console/teams/" + cf.Team + "/conflicts/people/" + cf.Record + "/cfs", []string{"Amara Okafor", "Chloe Marsh", "link worker", "written offline", "Had seen", ">6<", ">4<", "required for a clinical field", "Reached server"}},
		{rec, []string{given + " " + family, "cfs", "in conflict", "Linked records", "Reason"[:0]}},
		{"/console/teams/" + cf.Team + "/changes", []string{"Device time", "Reached server", "Next page"}},
		{"/console/teams/" + cf.Team + "/changes?collection=people&author=" + e.users["amara"].ID, []string{"Amara Okafor"}},
		{"/console/teams/" + cf.Team + "/search?q=" + url.QueryEscape(strings.ToLower(given[:3])+" "+family), []string{given + " " + family}},
		{"/console/teams/" + cf.Team + "/search?q=" + nhs, []string{given + " " + family, nhs}},
		{"/console/teams/" + cf.Team + "/search?q=" + url.QueryEscape(strings.ToLower(postcode)), []string{postcode}},
		{"/console/teams/" + cf.Team + "/search?q=zzzzqqq", []string{"No one in this team matches"}},
		{"/console/teams/" + cf.Team + "/outcomes", []string{"Anxiety runs the other way", "UCLA-3", "<svg", "Download as CSV", "proxy"}},
	}
	for _, p := range pages {
		st, body, _ := b.get(p.path)
		if st != http.StatusOK {
			t.Errorf("%s: %d", p.path, st)
			continue
		}
		contains(t, p.path, body, p.wants...)
		checkAccessible(t, p.path, body)
	}
	// Paging the changes by cursor reaches the end without repeats.
	seen, next, pagesRead := map[string]bool{}, "/console/teams/"+cf.Team+"/changes?since=2000-01-01", 0
	for next != "" {
		st, body, _ := b.get(next)
		if st != http.StatusOK {
			t.Fatalf("%s: %d", next, st)
		}
		pagesRead++
		for _, m := range recordLinkRE.FindAllStringSubmatch(body, -1) {
			if seen[m[1]] {
				t.Fatalf("record %s on two pages", m[1])
			}
			seen[m[1]] = true
		}
		next = ""
		if m := nextRE.FindStringSubmatch(body); m != nil {
			next = html.UnescapeString(m[1])
		}
	}
	if pagesRead < 2 || len(seen) < 60 {
		t.Errorf("changes: %d records over %d pages", len(seen), pagesRead)
	}
	st, csv, _ := b.get("/console/teams/" + cf.Team + "/outcomes.csv")
	if st != http.StatusOK || !strings.HasPrefix(csv, "person_id,measure,first") || !strings.Contains(csv, "ons4_anxious") {
		t.Errorf("outcomes.csv: %d %.200s", st, csv)
	}

	a := e.browser()
	atok := a.mustSignIn("admin")
	for _, p := range []struct {
		path  string
		wants []string
	}{
		{"/console/", []string{"Wigan", "Ashton"}},
		{"/console/teams/" + cf.Team, []string{"quarantined"}},
		{"/console/admin/devices", []string{"Amara Okafor", "Revoke", "Console (web browser)"}},
		{"/console/admin/quarantine", []string{"invalid_value", "Re-apply", "very frail"}},
		{"/console/admin/users", []string{"Diane Fletcher", "coordinator", "Ashton"}},
	} {
		st, body, _ := a.get(p.path)
		if st != http.StatusOK {
			t.Errorf("%s: %d", p.path, st)
			continue
		}
		contains(t, p.path, body, p.wants...)
		checkAccessible(t, p.path, body)
	}
	// The admin dismisses the quarantined op: gone from the page, in the
	// audit trail.
	qs, err := e.eng.TeamQuarantine(ctx, []string{cf.Team}, 0)
	if err != nil || len(qs) != 1 {
		t.Fatalf("quarantine: %+v %v", qs, err)
	}
	st, _, loc := a.post(fmt.Sprintf("/console/admin/quarantine/%d/dismiss", qs[0].ID), url.Values{"csrf": {atok}})
	if st != http.StatusSeeOther || !strings.Contains(loc, "dismissed") {
		t.Fatalf("dismiss: %d %s", st, loc)
	}
	if st, body, _ := a.get(loc); st != http.StatusOK || strings.Contains(body, "very frail") || !strings.Contains(body, "dismissed") {
		t.Fatalf("quarantine after dismiss: %d", st)
	}
	entries, _, _, err := e.auth.AuditLog(ctx, auth.AuditQuery{Action: "quarantine.dismiss"})
	if err != nil || len(entries) != 1 || entries[0].ActorID != e.users["admin"].ID {
		t.Fatalf("dismiss audit: %+v %v", entries, err)
	}
}

var (
	recordLinkRE = regexp.MustCompile(`href="(/console/teams/[^/"]+/records/[^"]+)"`)
	nextRE       = regexp.MustCompile(`<a href="([^"]+)">Next page</a>`)
)

func (e *env) nextSeq(c dsync.Caller) uint64 {
	var n uint64
	for _, p := range e.ds.Pushes {
		if p.Device == c.Replica && p.Change.Seq > n {
			n = p.Change.Seq
		}
	}
	e.seqs[c.Replica]++
	return n + e.seqs[c.Replica]
}
