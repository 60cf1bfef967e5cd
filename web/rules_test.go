package web

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

type route struct {
	method, path string
	admin        bool // an admin page (else a team page, or the team list)
}

// routes lists every console route with sample paths in team.
func (e *env) routesOf(team, coll, id, field string) []route {
	t := "/console/teams/" + team
	return []route{
		{"GET", t, false},
		{"GET", t + "/conflicts", false},
		{"GET", t + "/conflicts/" + coll + "/" + id + "/" + field, false},
		{"POST", t + "/conflicts/" + coll + "/" + id + "/" + field, false},
		{"GET", t + "/records/" + coll + "/" + id, false},
		{"GET", t + "/changes", false},
		{"GET", t + "/search?q=a", false},
		{"GET", t + "/outcomes", false},
		{"GET", t + "/outcomes.csv", false},
		{"GET", "/console/admin/devices", true},
		{"POST", "/console/admin/devices/" + crdt.NewReplicaID().String() + "/revoke", true},
		{"GET", "/console/admin/quarantine", true},
		{"POST", "/console/admin/quarantine/1/reapply", true},
		{"POST", "/console/admin/quarantine/1/dismiss", true},
		{"GET", "/console/admin/users", true},
	}
}

func (b *browser) do(r route, csrf string) (int, string, string) {
	if r.method == "GET" {
		return b.get(r.path)
	}
	return b.post(r.path, url.Values{"csrf": {csrf}})
}

// TestRolesAndTeams checks every console route for every kind of visitor:
// anonymous, link worker, coordinator of one team (nothing of another
// team, no admin pages), admin; and CSRF on every form.
func TestRolesAndTeams(t *testing.T) {
	e := newEnv(t)
	cf := e.cfsConflict()
	ctx := context.Background()
	// An Ashton record for the cross-team checks.
	refs, _, err := e.eng.Changes(ctx, e.callers["farah"], "ashton-pcn", dsyncFilterPeople())
	if err != nil || len(refs) == 0 {
		t.Fatalf("ashton people: %v %v", refs, err)
	}
	ash := refs[0].Ref
	wigan := e.routesOf(cf.Team, cf.Collection, cf.Record, cf.Field)
	ashton := e.routesOf(ash.Team, ash.Collection, ash.ID, "given_name")

	// Anonymous: GETs go to sign-in, POSTs are refused.
	anon := e.browser()
	for _, r := range append(wigan, route{"GET", "/console/", false}) {
		st, _, loc := anon.do(r, "")
		if r.method == "GET" && (st != http.StatusSeeOther || !strings.HasPrefix(loc, "/console/login?next=")) {
			t.Errorf("anonymous %s %s: %d %s", r.method, r.path, st, loc)
		}
		if r.method == "POST" && st != http.StatusForbidden {
			t.Errorf("anonymous %s %s: %d", r.method, r.path, st)
		}
	}

	// A link worker gets the explanation, and no session.
	lw := e.browser()
	st, body, _ := lw.signIn("amara")
	if st != http.StatusForbidden || !strings.Contains(body, "The console is for coordinators and admins") {
		t.Fatalf("link worker sign-in: %d %.300s", st, body)
	}
	if st, _, loc := lw.get(wigan[0].path); st != http.StatusSeeOther || !strings.HasPrefix(loc, "/console/login") {
		t.Errorf("link worker after refusal: %d %s", st, loc)
	}

	// The Wigan coordinator: own team yes, Ashton and admin pages no.
	diane := e.browser()
	tok := diane.mustSignIn("diane")
	for _, r := range wigan {
		st, body, _ := diane.do(r, tok)
		switch {
		case r.admin && st != http.StatusForbidden:
			t.Errorf("coordinator %s %s: %d, want 403", r.method, r.path, st)
		case !r.admin && r.method == "GET" && st != http.StatusOK:
			t.Errorf("coordinator %s %s: %d", r.method, r.path, st)
		case !r.admin && r.method == "POST" && st != http.StatusUnprocessableEntity: // no choice made
			t.Errorf("coordinator %s %s: %d %.200s", r.method, r.path, st, body)
		}
	}
	ashName := ""
	if rec, err := e.eng.Record(ctx, e.callers["farah"], ash); err == nil {
		ashName = regString(rec, "family_name")
	}
	for _, r := range ashton {
		st, body, _ := diane.do(r, tok)
		if st != http.StatusForbidden {
			t.Errorf("Wigan coordinator %s %s: %d, want 403", r.method, r.path, st)
		}
		if ashName != "" && strings.Contains(body, ashName) {
			t.Errorf("Wigan coordinator sees an Ashton name on %s", r.path)
		}
	}
	// A team that does not exist answers the same as another team's.
	if st, _, _ := diane.get("/console/teams/no-such-team"); st != http.StatusForbidden {
		t.Errorf("unknown team: %d", st)
	}

	// Every form needs the session's CSRF token.
	for _, r := range wigan {
		if r.method != "POST" || r.admin {
			continue
		}
		for _, bad := range []string{"", "forged"} {
			if st, body, _ := diane.do(r, bad); st != http.StatusForbidden || !strings.Contains(body, "security token") {
				t.Errorf("POST %s with csrf %q: %d", r.path, bad, st)
			}
		}
	}
	if st, _, _ := diane.post("/console/logout", url.Values{}); st != http.StatusForbidden {
		t.Errorf("logout without csrf: %d", st)
	}
	// The sign-in form too (a fresh browser, forged token).
	if st, _, _ := e.browser().post("/console/login", url.Values{"csrf": {"x"}, "username": {"diane"}, "password": {"doorstep-demo"}}); st != http.StatusForbidden {
		t.Errorf("login without csrf cookie: %d", st)
	}

	// The Ashton coordinator sees nothing of Wigan.
	helen := e.browser()
	htok := helen.mustSignIn("helen")
	for _, r := range wigan {
		if st, _, _ := helen.do(r, htok); st != http.StatusForbidden {
			t.Errorf("Ashton coordinator %s %s: %d", r.method, r.path, st)
		}
	}

	// The admin (both teams) reaches the admin pages.
	adm := e.browser()
	atok := adm.mustSignIn("admin")
	for _, r := range append(wigan, ashton...) {
		if !r.admin || r.method != "GET" {
			continue
		}
		if st, _, _ := adm.do(r, atok); st != http.StatusOK {
			t.Errorf("admin %s: %d", r.path, st)
		}
	}
	// Revoking an unknown device or re-applying an unknown entry: 404.
	for _, r := range wigan {
		if r.admin && r.method == "POST" {
			if st, _, _ := adm.do(r, atok); st != http.StatusNotFound {
				t.Errorf("admin %s: %d", r.path, st)
			}
		}
	}

	// Demoting the coordinator ends her session on the next request.
	if _, err := e.auth.SetRole(ctx, e.users["diane"].ID, api.RoleLinkWorker); err != nil {
		t.Fatal(err)
	}
	if st, _, loc := diane.get(wigan[0].path); st != http.StatusSeeOther || !strings.HasPrefix(loc, "/console/login") {
		t.Errorf("demoted coordinator: %d %s", st, loc)
	}
}

// TestSessions: idle expiry, logout, a revoked console device, wrong
// passwords, the login rate limit and cookie attributes.
func TestSessions(t *testing.T) {
	e := newEnv(t)
	home := "/console/teams/wigan-frailty"
	b := e.browser()
	b.mustSignIn("diane")
	e.advance(29 * time.Minute)
	if st, _, _ := b.get(home); st != http.StatusOK {
		t.Fatalf("after 29 min: %d", st)
	}
	e.advance(31 * time.Minute)
	if st, _, loc := b.get(home); st != http.StatusSeeOther || !strings.HasPrefix(loc, "/console/login") {
		t.Fatalf("after 31 idle min: %d %s", st, loc)
	}

	// Logout ends the session on the server, not just in the browser.
	tok := b.mustSignIn("diane")
	u, _ := url.Parse(e.ts.URL + "/console/")
	var sess string
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == cookieSession {
			sess = c.Value
		}
	}
	if st, _, _ := b.post("/console/logout", url.Values{"csrf": {tok}}); st != http.StatusSeeOther {
		t.Fatalf("logout: %d", st)
	}
	// The browser's device is revoked with it (it does not count against
	// the user's device limit).
	ds0, _ := e.auth.Devices(context.Background(), e.users["diane"].ID)
	revoked := 0
	for _, d := range ds0 {
		if d.Revoked {
			revoked++
		}
	}
	if revoked == 0 {
		t.Errorf("logout left every console device of diane active: %+v", ds0)
	}
	replay := e.browser()
	replay.c.Jar.SetCookies(u, []*http.Cookie{{Name: cookieSession, Value: sess, Path: "/console/"}})
	if st, _, _ := replay.get(home); st != http.StatusSeeOther {
		t.Fatalf("replayed session cookie after logout: %d", st)
	}

	// Revoking the browser's device ends its session.
	b.mustSignIn("diane")
	ctx := context.Background()
	ds, err := e.auth.Devices(ctx, e.users["diane"].ID)
	if err != nil || len(ds) == 0 {
		t.Fatalf("diane's devices: %v %v", ds, err)
	}
	for _, d := range ds {
		id, _ := crdt.ParseReplicaID(d.ID)
		if _, err := e.auth.RevokeDevice(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if st, _, _ := b.get(home); st != http.StatusSeeOther {
		t.Fatalf("revoked console device: %d", st)
	}
	// Signing in again on that browser gets a new device.
	b.mustSignIn("diane")

	// Wrong password, then the rate limit.
	w := e.browser()
	_, page, _ := w.get("/console/login")
	st, body, _ := w.post("/console/login", url.Values{"csrf": {csrf(page)}, "username": {"diane"}, "password": {"wrong-password"}})
	if st != http.StatusUnauthorized || !strings.Contains(body, "do not match") {
		t.Fatalf("wrong password: %d", st)
	}
	// Four more failures lock the account (the auth service's lockout);
	// the next attempt is refused as locked.
	for range 5 {
		_, page, _ = w.get("/console/login")
		st, body, _ = w.post("/console/login", url.Values{"csrf": {csrf(page)}, "username": {"diane"}, "password": {"wrong-password"}})
	}
	if st != http.StatusTooManyRequests || !strings.Contains(body, "locked") {
		t.Fatalf("after five failures: %d", st)
	}
	e.mu.Lock()
	e.allowed = false
	e.mu.Unlock()
	st, body, _ = w.post("/console/login", url.Values{"csrf": {csrf(body)}, "username": {"diane"}, "password": {"doorstep-demo"}})
	if st != http.StatusTooManyRequests || !strings.Contains(body, "Too many sign-in attempts") {
		t.Fatalf("rate limited: %d", st)
	}

	// Cookies: HttpOnly, SameSite=Strict, Secure over TLS or a trusted TLS proxy.
	r := httptest.NewRequest("GET", "/console/", nil)
	if c := e.console.cookie(r, cookieSession, "x", 0); !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure {
		t.Errorf("plain HTTP cookie: %+v", c)
	}
	r.TLS = &tls.ConnectionState{}
	if c := e.console.cookie(r, cookieSession, "x", 0); !c.Secure {
		t.Errorf("TLS cookie not Secure")
	}
	r = httptest.NewRequest("GET", "/console/", nil)
	r.Header.Set("X-Forwarded-Proto", "https")
	if e.console.cookie(r, cookieSession, "x", 0).Secure {
		t.Errorf("untrusted X-Forwarded-Proto made the cookie Secure")
	}
	e.console.cfg.TrustProxy = true
	if !e.console.cookie(r, cookieSession, "x", 0).Secure {
		t.Errorf("trusted TLS proxy: cookie not Secure")
	}
	e.console.cfg.TrustProxy = false
	// Security headers on every page.
	resp, err := b.c.Get(e.ts.URL + home)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers: %v", resp.Header)
	}
}
