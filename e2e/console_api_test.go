package e2e

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/demo"
)

// TestReviewJSONRoutes: GET /v1/teams/{team}/records pages the whole demo
// team by cursor (no cap, each entry attributed, device time before
// receipt), /search finds the conflict's person by name, NHS number and
// postcode, /outcomes answers JSON and CSV; another team's coordinator
// gets 403 from each. Every exchange is checked against api/openapi.yaml.
func TestReviewJSONRoutes(t *testing.T) {
	e, _ := openAt(t, t.TempDir(), nil)
	ds := demo.Build(1, time.Now())
	loadDemo(t, e, ds)
	login := func(user string) string {
		var tr api.TokenResponse
		if st, p := e.doJSON(http.MethodPost, "/v1/auth/login", "", api.LoginRequest{Username: user, Password: demo.DemoPassword, DeviceID: crdt.NewReplicaID().String()}, &tr); st != http.StatusOK {
			t.Fatalf("login %s: %d %+v", user, st, p)
		}
		return tr.AccessToken
	}
	diane, helen := login("diane"), login("helen")
	team := "/v1/teams/" + demo.TeamWigan

	seen, pages := map[string]bool{}, 0
	q := url.Values{"limit": {"40"}, "since": {"2000-01-01T00:00:00Z"}}
	for {
		var page api.ChangedPage
		if st, p := e.doJSON(http.MethodGet, team+"/records?"+q.Encode(), diane, nil, &page); st != http.StatusOK {
			t.Fatalf("records: %d %+v", st, p)
		}
		pages++
		for _, r := range page.Records {
			k := r.Collection + "/" + r.ID
			if seen[k] {
				t.Fatalf("%s on two pages", k)
			}
			seen[k] = true
			if r.Author == "" || r.AuthorName == "" || r.Device == "" || r.Time.IsZero() || r.Received.Before(r.Time.Add(-time.Minute)) {
				t.Fatalf("entry not attributed: %+v", r)
			}
		}
		if page.Next == "" {
			break
		}
		q = url.Values{"limit": {"40"}, "cursor": {page.Next}}
	}
	if pages < 3 {
		t.Errorf("demo team paged in %d pages of 40", pages)
	}
	var people api.ChangedPage
	if st, _ := e.doJSON(http.MethodGet, team+"/records?collection=people&limit=5000", diane, nil, &people); st != http.StatusOK || len(people.Records) == 0 {
		t.Fatalf("people filter: %d", st)
	}
	for _, r := range people.Records {
		if r.Collection != "people" {
			t.Fatalf("filter let through %+v", r)
		}
	}
	if st, _ := e.doJSON(http.MethodGet, team+"/records?cursor=%21%21", diane, nil, nil); st != http.StatusBadRequest {
		t.Errorf("bad cursor: %d", st)
	}

	// Search.
	var cf demo.Conflict
	for _, c := range ds.Conflicts {
		if c.Field == "cfs" {
			cf = c
		}
	}
	var rec struct {
		Fields map[string]struct{ Value any }
	}
	if st, _ := e.doJSON(http.MethodGet, team+"/records/people/"+cf.Record, diane, nil, &rec); st != http.StatusOK {
		t.Fatal(st)
	}
	str := func(f string) string { s, _ := rec.Fields[f].Value.(string); return s }
	for _, term := range []string{str("given_name") + " " + str("family_name")[:3], str("nhs_number"), strings.ToLower(str("postcode"))} {
		var res api.SearchReply
		if st, p := e.doJSON(http.MethodGet, team+"/search?q="+url.QueryEscape(term), diane, nil, &res); st != http.StatusOK {
			t.Fatalf("search %q: %d %+v", term, st, p)
		}
		found := false
		for _, p := range res.People {
			found = found || p.ID == cf.Record
		}
		if !found {
			t.Errorf("search %q: %+v lacks %s", term, res.People, cf.Record)
		}
	}
	if st, _ := e.doJSON(http.MethodGet, team+"/search", diane, nil, nil); st != http.StatusBadRequest {
		t.Errorf("search without q: %d", st)
	}

	// Outcomes.
	var out api.OutcomesReply
	if st, p := e.doJSON(http.MethodGet, team+"/outcomes", diane, nil, &out); st != http.StatusOK {
		t.Fatalf("outcomes: %d %+v", st, p)
	}
	if len(out.People) == 0 || len(out.Summary) != 5 {
		t.Fatalf("outcomes: %d people, %d measures", len(out.People), len(out.Summary))
	}
	for _, s := range out.Summary {
		if s.LowerIsBetter != (s.Measure == "ons4_anxious" || s.Measure == "ucla3_total") {
			t.Errorf("direction of %s: %+v", s.Measure, s)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+team+"/outcomes?format=csv", nil)
	req.Header.Set("Authorization", "Bearer "+diane)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") || !strings.HasPrefix(string(body), "person_id,measure") {
		t.Fatalf("outcomes csv: %d %s %.100s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	// The Ashton coordinator gets none of it.
	for _, p := range []string{"/records", "/search?q=a", "/outcomes", "/outcomes?format=csv"} {
		if st, _ := e.doJSON(http.MethodGet, team+p, helen, nil, nil); st != http.StatusForbidden {
			t.Errorf("Ashton coordinator GET %s: %d", p, st)
		}
	}
}
