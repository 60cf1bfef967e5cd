package e2e

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/demo"
	"github.com/doorstep-health/doorstep/server"
	"golang.org/x/crypto/bcrypt"
)

// refreshTokens refreshes the device's tokens (picking up new teams or a
// promotion) and fails the test if the server refuses.
func (d *device) refreshTokens() {
	d.e.t.Helper()
	var tr api.TokenResponse
	st, p := d.e.doJSON(http.MethodPost, "/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: d.refresh, DeviceID: d.id.String()}, &tr)
	if st != http.StatusOK {
		d.e.t.Fatalf("refresh %s: %d %+v", d.user, st, p)
	}
	d.access, d.refresh = tr.AccessToken, tr.RefreshToken
}

// audit reads the audit trail as an admin's device, all pages.
func (d *device) audit(query string) []auth.AuditEntry {
	d.e.t.Helper()
	var all []auth.AuditEntry
	cursor := ""
	for {
		var page server.AuditPage
		path := "/v1/admin/audit?limit=1000&cursor=" + cursor
		if query != "" {
			path += "&" + query
		}
		if st, p := d.e.doJSON(http.MethodGet, path, d.access, nil, &page); st != http.StatusOK {
			d.e.t.Fatalf("audit %s: %d %+v", query, st, p)
		}
		all = append(all, page.Entries...)
		if !page.More {
			return all
		}
		cursor = page.NextCursor
	}
}

// findAudit returns the entries of an action on a target.
func findAudit(es []auth.AuditEntry, action, target string) []auth.AuditEntry {
	var out []auth.AuditEntry
	for _, e := range es {
		if e.Action == action && (target == "" || e.TargetID == target) {
			out = append(out, e)
		}
	}
	return out
}

// TestAdminScopedToTeams: an admin whose only team is ashton reaches
// nothing of wigan's through any admin route (issue 9 item 6), and an
// admin of wigan cannot take over a user who also reaches ashton.
func TestAdminScopedToTeams(t *testing.T) {
	e := newEnv(t)
	ann, eve, dan, gus := e.login("ann"), e.login("eve"), e.login("dan"), e.login("gus")
	// One quarantined op in each team (CFS runs 1–9).
	ann.sync(ann.change(ann.write("wigan", "people", "p1", "cfs", 42)))
	eve.sync(eve.change(eve.write("ashton", "people", "p9", "cfs", 42)))
	type qpage struct {
		Ops        []server.QuarantineEntry
		NextCursor string `json:"next_cursor"`
	}
	quarantine := func(d *device) []server.QuarantineEntry {
		var q qpage
		if st, p := e.doJSON(http.MethodGet, "/v1/admin/quarantine", d.access, nil, &q); st != http.StatusOK {
			t.Fatalf("quarantine as %s: %d %+v", d.user, st, p)
		}
		return q.Ops
	}
	gq, dq := quarantine(gus), quarantine(dan)
	if len(gq) != 1 || gq[0].Op.Team != "ashton" || len(dq) != 1 || dq[0].Op.Team != "wigan" {
		t.Errorf("quarantine lists: ashton admin %d entries, wigan admin %d; want one of their own team each", len(gq), len(dq))
	}
	wiganQ := ""
	for _, q := range dq {
		if q.Op.Team == "wigan" {
			wiganQ = fmt.Sprint(q.ID)
		}
	}

	ann2 := e.login("ann") // a second device of ann's, for revoke
	sam := e.createUser(nil, "sam", api.RoleLinkWorker, "wigan", "ashton")
	refused := []struct {
		name, method, path string
		body               any
		status             int
	}{
		{"reapply a wigan op", http.MethodPost, "/v1/admin/quarantine/" + wiganQ + "/reapply", nil, http.StatusNotFound},
		{"read a wigan user", http.MethodGet, "/v1/admin/users/" + e.users["ann"], nil, http.StatusNotFound},
		{"list a wigan user's devices", http.MethodGet, "/v1/admin/users/" + e.users["ann"] + "/devices", nil, http.StatusNotFound},
		{"promote a wigan user", http.MethodPatch, "/v1/admin/users/" + e.users["ann"], map[string]any{"role": "admin"}, http.StatusNotFound},
		{"add a wigan user to ashton", http.MethodPatch, "/v1/admin/users/" + e.users["ann"], map[string]any{"teams": []string{"wigan", "ashton"}}, http.StatusNotFound},
		{"reset a wigan user's password", http.MethodPatch, "/v1/admin/users/" + e.users["ann"], map[string]any{"password": "taken over now"}, http.StatusNotFound},
		{"disable a wigan user", http.MethodPatch, "/v1/admin/users/" + e.users["ann"], map[string]any{"disabled": true}, http.StatusNotFound},
		{"delete a wigan user", http.MethodDelete, "/v1/admin/users/" + e.users["ann"], nil, http.StatusNotFound},
		{"revoke a wigan device", http.MethodPost, "/v1/admin/devices/" + ann2.id.String() + "/revoke", nil, http.StatusNotFound},
		{"create a wigan user", http.MethodPost, "/v1/admin/users", map[string]any{"username": "mole", "password": password, "role": "admin", "teams": []string{"wigan"}}, http.StatusForbidden},
		{"create a user in no team", http.MethodPost, "/v1/admin/users", map[string]any{"username": "mole", "password": password, "role": "admin"}, http.StatusBadRequest},
		{"erase a wigan record", http.MethodPost, "/v1/admin/erasures", map[string]any{"team": "wigan", "collection": "people", "id": "p1"}, http.StatusForbidden},
		// sam is in both teams: an ashton admin sees sam but may not
		// manage the account, nor touch sam's wigan membership.
		{"reset a shared user's password", http.MethodPatch, "/v1/admin/users/" + sam, map[string]any{"password": "taken over now"}, http.StatusForbidden},
		{"promote a shared user", http.MethodPatch, "/v1/admin/users/" + sam, map[string]any{"role": "coordinator"}, http.StatusForbidden},
		{"disable a shared user", http.MethodPatch, "/v1/admin/users/" + sam, map[string]any{"disabled": true}, http.StatusForbidden},
		{"delete a shared user", http.MethodDelete, "/v1/admin/users/" + sam, nil, http.StatusForbidden},
		{"remove a shared user from wigan", http.MethodPatch, "/v1/admin/users/" + sam, map[string]any{"teams": []string{"ashton"}}, http.StatusForbidden},
	}
	for _, r := range refused {
		st, p := e.doJSON(r.method, r.path, gus.access, r.body, nil)
		if st != r.status {
			t.Errorf("ashton admin may not %s: %d %+v, want %d", r.name, st, p, r.status)
		}
	}
	// Nothing changed.
	if u, _ := e.srv.Auth().User(context.Background(), e.users["ann"]); u.Role != api.RoleLinkWorker || len(u.Teams) != 1 || u.Disabled || u.Deleted {
		t.Errorf("ann after the attempts: %+v", u)
	}
	if _, _, p := ann2.trySync(); p != nil {
		t.Errorf("ann's device after the attempts: %+v", p)
	}
	if q := quarantine(dan); len(q) < 1 {
		t.Errorf("wigan's quarantine after the attempts: %+v", q)
	}
	// Lists hold only ashton's.
	var users struct{ Users []auth.User }
	e.doJSON(http.MethodGet, "/v1/admin/users", gus.access, nil, &users)
	for _, u := range users.Users {
		if !slices.Contains(u.Teams, "ashton") {
			t.Errorf("ashton admin lists %s (%v)", u.Username, u.Teams)
		}
	}
	if len(users.Users) != 4 { // eve, fay, gus, sam
		t.Errorf("ashton admin lists %d users", len(users.Users))
	}
	var teams struct{ Teams []auth.Team }
	e.doJSON(http.MethodGet, "/v1/admin/teams", gus.access, nil, &teams)
	if len(teams.Teams) != 1 || teams.Teams[0].ID != "ashton" {
		t.Errorf("ashton admin lists teams %+v", teams)
	}
	// What an ashton admin may do to a shared user: see them, and manage
	// ashton's own membership.
	if st, p := e.doJSON(http.MethodGet, "/v1/admin/users/"+sam, gus.access, nil, nil); st != http.StatusOK {
		t.Errorf("read shared user: %d %+v", st, p)
	}
	var u auth.User
	if st, p := e.doJSON(http.MethodPatch, "/v1/admin/users/"+sam, gus.access, map[string]any{"teams": []string{"wigan"}}, &u); st != http.StatusOK || !slices.Equal(u.Teams, []string{"wigan"}) {
		t.Errorf("remove shared user from ashton: %d %+v %+v", st, u, p)
	}
	// The wigan admin reapplies wigan's op... which still fails validation,
	// but it is the admin's to try.
	if st, p := e.doJSON(http.MethodPost, "/v1/admin/quarantine/"+wiganQ+"/reapply", dan.access, nil, nil); st != http.StatusBadRequest {
		t.Errorf("wigan admin reapplies: %d %+v", st, p)
	}
	// The audit trail: gus's refused attempts are there for ashton's
	// admins; nothing of wigan's is shown to gus.
	ga := gus.audit("")
	if n := len(findAudit(ga, "admin.refused", "")); n < len(refused) {
		t.Errorf("ashton admin's audit shows %d refused attempts, want >= %d", n, len(refused))
	}
	for _, en := range ga {
		if en.Team != "ashton" && !slices.Contains(en.Teams, "ashton") {
			t.Errorf("ashton admin reads entry %+v", en)
		}
	}
	if n := len(findAudit(gus.audit("team=wigan"), "", "")); n != 0 {
		t.Errorf("ashton admin filtering on team=wigan reads %d entries", n)
	}
}

// createUser creates a user through the service (actor nil) or an admin's
// device and returns the ID.
func (e *env) createUser(admin *device, name, role string, teams ...string) string {
	e.t.Helper()
	if admin == nil {
		u, err := e.srv.Auth().CreateUser(context.Background(), auth.NewUser{Username: name, Name: name, Password: password, Role: role, Teams: teams})
		if err != nil {
			e.t.Fatal(err)
		}
		e.users[name] = u.ID
		return u.ID
	}
	var u auth.User
	if st, p := e.doJSON(http.MethodPost, "/v1/admin/users", admin.access, map[string]any{"username": name, "name": name, "password": password, "role": role, "teams": teams}, &u); st != http.StatusCreated {
		e.t.Fatalf("create %s: %d %+v", name, st, p)
	}
	e.users[name] = u.ID
	return u.ID
}

// loginAs tries a login on a device ID and returns the status and problem.
func (e *env) loginAs(user, pw string, dev crdt.ReplicaID) (int, *api.TokenResponse, *api.Problem) {
	e.t.Helper()
	var tr api.TokenResponse
	st, p := e.doJSON(http.MethodPost, "/v1/auth/login", "", api.LoginRequest{Username: user, Password: pw, DeviceID: dev.String()}, &tr)
	return st, &tr, p
}

func wantProblem(t *testing.T, what string, st int, p *api.Problem, status int, code api.Code) {
	t.Helper()
	if st != status || p == nil || p.Code != code {
		t.Errorf("%s: %d %+v, want %d %s", what, st, p, status, code)
	}
}

// TestAccountLifecycle: a disabled, re-enabled, reset, self-changed,
// logged-out and deleted user, each through the HTTP API of a real server.
func TestAccountLifecycle(t *testing.T) {
	e := newEnv(t)
	ann, bea, cat, dan := e.login("ann"), e.login("bea"), e.login("cat"), e.login("dan")
	patch := func(user string, body map[string]any) (int, *api.Problem) {
		return e.doJSON(http.MethodPatch, "/v1/admin/users/"+e.users[user], dan.access, body, nil)
	}
	// Disable: the access token, refresh and login are refused.
	if st, p := patch("ann", map[string]any{"disabled": true}); st != http.StatusOK {
		t.Fatalf("disable: %d %+v", st, p)
	}
	st, _, p := ann.trySync()
	wantProblem(t, "sync while disabled", st, p, http.StatusUnauthorized, api.CodeAccountDisabled)
	st, p = e.doJSON(http.MethodPost, "/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: ann.refresh, DeviceID: ann.id.String()}, nil)
	wantProblem(t, "refresh while disabled", st, p, http.StatusUnauthorized, api.CodeAccountDisabled)
	st, _, p = e.loginAs("ann", password, ann.id)
	wantProblem(t, "login while disabled", st, p, http.StatusUnauthorized, api.CodeAccountDisabled)
	st, _, p = e.loginAs("ann", "not her password", ann.id)
	wantProblem(t, "wrong password while disabled", st, p, http.StatusUnauthorized, api.CodeInvalidCredentials)
	// Enable: the device carries on with the tokens it has.
	if st, p := patch("ann", map[string]any{"disabled": false}); st != http.StatusOK {
		t.Fatalf("enable: %d %+v", st, p)
	}
	ann.sync()
	ann.refreshTokens()

	// Admin reset: every session of the user ends; the old password is
	// refused and the new one works.
	annPhone := e.login("ann")
	st, p = patch("ann", map[string]any{"password": "password"})
	wantProblem(t, "reset to a common password", st, p, http.StatusBadRequest, api.CodeWeakPassword)
	if st, p := patch("ann", map[string]any{"password": "a fresh start 2026"}); st != http.StatusOK {
		t.Fatalf("reset: %d %+v", st, p)
	}
	for _, d := range []*device{ann, annPhone} {
		st, _, p := d.trySync()
		wantProblem(t, "sync after reset", st, p, http.StatusUnauthorized, api.CodeUnauthorized)
	}
	st, _, p = e.loginAs("ann", password, ann.id)
	wantProblem(t, "old password after reset", st, p, http.StatusUnauthorized, api.CodeInvalidCredentials)
	st, tr, p := e.loginAs("ann", "a fresh start 2026", ann.id)
	if st != http.StatusOK {
		t.Fatalf("new password: %d %+v", st, p)
	}
	ann.access, ann.refresh = tr.AccessToken, tr.RefreshToken
	ann.sync()

	// Own change: the current password is needed; the other devices'
	// sessions end, this one's does not.
	bea2 := e.login("bea")
	change := func(d *device, cur, next string) (int, *api.Problem) {
		return e.doJSON(http.MethodPost, "/v1/auth/password", d.access, map[string]string{"current_password": cur, "new_password": next}, nil)
	}
	st, p = change(bea, "a wrong guess", "bea's new password")
	wantProblem(t, "change with a wrong current password", st, p, http.StatusForbidden, api.CodeWrongPassword)
	st, p = change(bea, password, "12345678")
	wantProblem(t, "change to a common password", st, p, http.StatusBadRequest, api.CodeWeakPassword)
	if st, p := change(bea, password, "bea's new password"); st != http.StatusNoContent {
		t.Fatalf("change: %d %+v", st, p)
	}
	bea.sync()
	st, _, p = bea2.trySync()
	wantProblem(t, "other device after own change", st, p, http.StatusUnauthorized, api.CodeUnauthorized)
	if st, _, p := e.loginAs("bea", "bea's new password", bea2.id); st != http.StatusOK {
		t.Fatalf("login with the changed password: %d %+v", st, p)
	}

	// Logout: the device's refresh chain and access token end.
	if st, p := e.doJSON(http.MethodPost, "/v1/auth/logout", bea.access, nil, nil); st != http.StatusNoContent {
		t.Fatalf("logout: %d %+v", st, p)
	}
	st, _, p = bea.trySync()
	wantProblem(t, "sync after logout", st, p, http.StatusUnauthorized, api.CodeUnauthorized)
	st, p = e.doJSON(http.MethodPost, "/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: bea.refresh, DeviceID: bea.id.String()}, nil)
	wantProblem(t, "refresh after logout", st, p, http.StatusUnauthorized, api.CodeUnauthorized)

	// Delete a leaver: cat wrote a record; after deletion her devices are
	// revoked, she cannot log in, her username is free, and the record
	// still shows her as its author.
	cat.sync(cat.change(cat.write("wigan", "people", "p1", "given_name", "Edna")))
	var gone auth.User
	if st, p := e.doJSON(http.MethodDelete, "/v1/admin/users/"+e.users["cat"], dan.access, nil, &gone); st != http.StatusOK || !gone.Deleted || len(gone.Teams) != 0 {
		t.Fatalf("delete: %d %+v %+v", st, gone, p)
	}
	st, _, p = cat.trySync()
	wantProblem(t, "sync after delete", st, p, http.StatusUnauthorized, api.CodeDeviceRevoked)
	st, p = e.doJSON(http.MethodPost, "/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: cat.refresh, DeviceID: cat.id.String()}, nil)
	wantProblem(t, "refresh after delete", st, p, http.StatusUnauthorized, api.CodeDeviceRevoked)
	st, _, p = e.loginAs("cat", password, crdt.NewReplicaID())
	wantProblem(t, "login after delete", st, p, http.StatusUnauthorized, api.CodeInvalidCredentials)
	var hist struct{ History []server.HistoryJSON }
	if st, p := e.doJSON(http.MethodGet, "/v1/teams/wigan/records/people/p1/history", dan.access, nil, &hist); st != http.StatusOK || len(hist.History) != 1 {
		t.Fatalf("history after delete: %d %+v %+v", st, hist, p)
	}
	if h := hist.History[0]; h.Author != e.users["cat"] || h.AuthorName != "cat" {
		t.Errorf("the leaver's op lost its author: %+v", h)
	}
	var users struct{ Users []auth.User }
	e.doJSON(http.MethodGet, "/v1/admin/users", dan.access, nil, &users)
	for _, u := range users.Users {
		if u.ID == e.users["cat"] {
			t.Errorf("deleted user listed without ?deleted=true")
		}
	}
	e.doJSON(http.MethodGet, "/v1/admin/users?deleted=true", dan.access, nil, &users)
	if !slices.ContainsFunc(users.Users, func(u auth.User) bool { return u.ID == e.users["cat"] && u.Deleted }) {
		t.Errorf("deleted user not listed with ?deleted=true")
	}
	// The username can be given to someone new, with another ID.
	if id := e.createUser(dan, "cat", api.RoleLinkWorker, "wigan"); id == gone.ID {
		t.Errorf("new cat reuses the leaver's ID")
	}
	// An admin cannot disable or delete themselves.
	st, p = e.doJSON(http.MethodDelete, "/v1/admin/users/"+e.users["dan"], dan.access, nil, nil)
	wantProblem(t, "delete yourself", st, p, http.StatusBadRequest, api.CodeBadRequest)

	// Every step is in the audit trail, with the admin as actor.
	es := dan.audit("")
	for _, w := range []struct{ action, target string }{
		{auth.ActionUserDisable, e.users["ann"]}, {auth.ActionUserEnable, e.users["ann"]},
		{auth.ActionPasswordReset, e.users["ann"]}, {auth.ActionPasswordChange, e.users["bea"]},
		{auth.ActionDeviceLogout, bea.id.String()}, {auth.ActionUserDelete, gone.ID},
		{auth.ActionDeviceRegister, annPhone.id.String()},
	} {
		got := findAudit(es, w.action, w.target)
		if len(got) != 1 {
			t.Errorf("audit %s on %s: %d entries", w.action, w.target, len(got))
			continue
		}
		want := e.users["dan"]
		switch w.action {
		case auth.ActionPasswordChange, auth.ActionDeviceLogout:
			want = e.users["bea"]
		case auth.ActionDeviceRegister:
			want = e.users["ann"]
		}
		if got[0].ActorID != want || got[0].Team != "wigan" {
			t.Errorf("audit %s: actor %s team %s, want actor %s", w.action, got[0].ActorID, got[0].Team, want)
		}
	}
	if d := findAudit(es, auth.ActionUserDelete, gone.ID); len(d) == 1 && d[0].Detail["devices_revoked"] != "1" {
		t.Errorf("delete entry %+v", d[0])
	}
}

// TestLockout: 200 guesses at one password spread over 20 addresses are
// throttled per account: after 5 failures the username is locked with
// Retry-After, even for the right password, until the lock ends; failures
// are logged with the username and never the password.
func TestLockout(t *testing.T) {
	clk := &testClock{t: time.Now()}
	var logs bytes.Buffer
	var logMu gosync.Mutex
	e := newEnv(t, func(c *server.Config) {
		c.Now = clk.Now
		c.TrustProxy = true
		c.AuthRate, c.AuthBurst = 5, 20 // the defaults: 10 guesses from each address are within them
		c.Logger = slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	})
	guess := func(addr, pw string) (*http.Response, *api.Problem) {
		b, _ := json.Marshal(api.LoginRequest{Username: "ann", Password: pw, DeviceID: crdt.NewReplicaID().String()})
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/v1/auth/login", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", addr)
		res, body := e.roundTrip(req)
		if res.StatusCode == http.StatusOK {
			return res, nil
		}
		return res, e.jsonProblem(res, body)
	}
	checked, locked := 0, 0
	for i := 0; i < 200; i++ {
		res, p := guess(fmt.Sprintf("198.51.100.%d", i%20), fmt.Sprintf("guess number %d", i))
		switch {
		case p != nil && p.Code == api.CodeInvalidCredentials:
			checked++
		case p != nil && p.Code == api.CodeAccountLocked:
			locked++
			if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
				t.Fatalf("Retry-After %q", res.Header.Get("Retry-After"))
			}
		default:
			t.Fatalf("guess %d: %d %+v", i, res.StatusCode, p)
		}
	}
	if checked != 5 || locked != 195 {
		t.Errorf("200 guesses over 20 addresses: %d checked, %d refused as locked; want 5 and 195", checked, locked)
	}
	// Locked even with the right password…
	res, p := guess("203.0.113.9", password)
	if p == nil || p.Code != api.CodeAccountLocked {
		t.Fatalf("right password while locked: %d %+v", res.StatusCode, p)
	}
	// …until the lock ends; one more failure then locks for twice as long.
	clk.Add(61 * time.Second)
	if res, p := guess("203.0.113.9", "still guessing"); p == nil || p.Code != api.CodeInvalidCredentials {
		t.Fatalf("guess after the lock: %d %+v", res.StatusCode, p)
	}
	res, p = guess("203.0.113.9", password)
	if p == nil || p.Code != api.CodeAccountLocked || res.Header.Get("Retry-After") != "120" {
		t.Fatalf("second lock: %d %+v Retry-After %q", res.StatusCode, p, res.Header.Get("Retry-After"))
	}
	clk.Add(121 * time.Second)
	if res, p := guess("203.0.113.9", password); p != nil {
		t.Fatalf("right password after the lock: %d %+v", res.StatusCode, p)
	}
	// Another user was never locked.
	if st, _, p := e.loginAs("bea", password, crdt.NewReplicaID()); st != http.StatusOK {
		t.Errorf("bea: %d %+v", st, p)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if !strings.Contains(out, `msg="login failed" username=ann`) || strings.Contains(out, "guess number") || strings.Contains(out, password) {
		t.Errorf("login failure logs: want the username, never a password:\n%.2000s", out)
	}
	// The lock is in the audit trail for wigan's admins.
	if n := len(findAudit(e.login("dan").audit("action=user.locked"), auth.ActionUserLocked, e.users["ann"])); n != 2 {
		t.Errorf("%d user.locked entries, want 2", n)
	}
}

type lockedWriter struct {
	mu *gosync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestNoTeamUserRefused: a user removed from every team gets no token, by
// login or refresh, and stays visible to the admins of the teams they had.
func TestNoTeamUserRefused(t *testing.T) {
	e := newEnv(t)
	ann, dan, gus := e.login("ann"), e.login("dan"), e.login("gus")
	var u auth.User
	if st, p := e.doJSON(http.MethodPatch, "/v1/admin/users/"+e.users["ann"], dan.access, map[string]any{"teams": []string{}}, &u); st != http.StatusOK || len(u.Teams) != 0 || !slices.Equal(u.FormerTeams, []string{"wigan"}) {
		t.Fatalf("remove from every team: %d %+v %+v", st, u, p)
	}
	st, _, p := e.loginAs("ann", password, crdt.NewReplicaID())
	wantProblem(t, "login with no team", st, p, http.StatusForbidden, api.CodeNoTeams)
	st, p = e.doJSON(http.MethodPost, "/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: ann.refresh, DeviceID: ann.id.String()}, nil)
	wantProblem(t, "refresh with no team", st, p, http.StatusForbidden, api.CodeNoTeams)
	// The access token still held reaches nothing.
	resp := ann.sync(ann.change(ann.write("wigan", "people", "p1", "given_name", "Edna")))
	if r := resp.Results[0]; len(r.Ops) != 1 || r.Ops[0].Code != api.CodeForbiddenTeam {
		t.Errorf("push with no team: %+v", resp.Results)
	}
	// wigan's admin still sees ann (through her former team) and can
	// delete her; ashton's admin cannot see her at all.
	if st, p := e.doJSON(http.MethodGet, "/v1/admin/users/"+e.users["ann"], gus.access, nil, nil); st != http.StatusNotFound {
		t.Errorf("ashton admin reads a former wigan user: %d %+v", st, p)
	}
	if st, p := e.doJSON(http.MethodDelete, "/v1/admin/users/"+e.users["ann"], dan.access, nil, nil); st != http.StatusOK {
		t.Errorf("wigan admin deletes a former wigan user: %d %+v", st, p)
	}
}

// TestDevicesPerUserBound: one user cannot mint devices without limit.
func TestDevicesPerUserBound(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxDevicesPerUser = 3 })
	var devs []*device
	for i := 0; i < 3; i++ {
		devs = append(devs, e.login("ann"))
	}
	st, _, p := e.loginAs("ann", password, crdt.NewReplicaID())
	wantProblem(t, "a fourth device", st, p, http.StatusForbidden, api.CodeTooManyDevices)
	// A device already registered logs in again.
	if st, _, p := e.loginAs("ann", password, devs[0].id); st != http.StatusOK {
		t.Errorf("login again on a known device: %d %+v", st, p)
	}
	// A device revoked by reuse still counts (a user could revoke their
	// own that way); one revoked by an admin does not.
	dan := e.login("dan")
	if st, p := e.doJSON(http.MethodPost, "/v1/admin/devices/"+devs[1].id.String()+"/revoke", dan.access, nil, nil); st != http.StatusOK {
		t.Fatalf("revoke: %d %+v", st, p)
	}
	if st, _, p := e.loginAs("ann", password, crdt.NewReplicaID()); st != http.StatusOK {
		t.Errorf("a new device after a revoke: %d %+v", st, p)
	}
	st, _, p = e.loginAs("ann", password, crdt.NewReplicaID())
	wantProblem(t, "past the bound again", st, p, http.StatusForbidden, api.CodeTooManyDevices)
	// Other users are not affected.
	e.login("bea")
}

// TestWeakPasswordsRefused: the password rule on user creation.
func TestWeakPasswordsRefused(t *testing.T) {
	e := newEnv(t)
	dan := e.login("dan")
	for _, pw := range []string{"password", "12345678", "Password1", "qwertyuiop", "short", "hal"} {
		st, p := e.doJSON(http.MethodPost, "/v1/admin/users", dan.access, map[string]any{"username": "hal", "password": pw, "role": "link_worker", "teams": []string{"wigan"}}, nil)
		wantProblem(t, "password "+pw, st, p, http.StatusBadRequest, api.CodeWeakPassword)
	}
	e.createUser(dan, "hal", api.RoleLinkWorker, "wigan")
}

// TestAuditTrail: an entry for each kind of action, with who, what and
// when; read by team admins scoped to their teams, filtered, paged and
// exported as CSV.
func TestAuditTrail(t *testing.T) {
	clk := &testClock{t: time.Now()}
	e := newEnv(t, func(c *server.Config) { c.Now = clk.Now; c.AccessTTL = 24 * time.Hour })
	ann, bea, cat, dan, gus := e.login("ann"), e.login("bea"), e.login("cat"), e.login("dan"), e.login("gus")
	start := clk.Now().UTC()
	// An op stamped an hour ahead is quarantined (reapplied at the end).
	future := ann.rec("wigan", "people", "p3").Write(crdt.OpID{Time: crdt.MakeTimestamp(clk.Now().Add(time.Hour).UnixMilli(), 0), Replica: ann.id}, "given_name", crdt.MustValue("Olive"))
	ann.sync(ann.change(future))
	// Admin actions.
	if st, p := e.doJSON(http.MethodPost, "/v1/admin/teams", dan.access, map[string]string{"id": "bolton", "name": "Bolton"}, nil); st != http.StatusCreated {
		t.Fatalf("team: %d %+v", st, p)
	}
	hal := e.createUser(dan, "hal", api.RoleLinkWorker, "wigan")
	e.doJSON(http.MethodPatch, "/v1/admin/users/"+hal, dan.access, map[string]any{"role": "coordinator"}, nil)
	e.doJSON(http.MethodPatch, "/v1/admin/users/"+hal, dan.access, map[string]any{"name": "Hal Jordan"}, nil)
	spare := e.login("bea")
	e.doJSON(http.MethodPost, "/v1/admin/devices/"+spare.id.String()+"/revoke", dan.access, nil, nil)
	e.doJSON(http.MethodGet, "/v1/admin/users", dan.access, nil, nil)
	// A conflict, resolved with a reason.
	ann.sync(ann.change(ann.write("wigan", "people", "p1", "given_name", "Edna")))
	bea.sync()
	a := ann.write("wigan", "people", "p1", "preferred_name", "Ed")
	b := bea.write("wigan", "people", "p1", "preferred_name", "Eddie")
	ann.sync(ann.change(a))
	bea.sync(bea.change(b))
	if st, p := e.doJSON(http.MethodPost, "/v1/teams/wigan/records/people/p1/resolve", cat.access, map[string]any{"field": "preferred_name", "value": "Ed", "reason": "confirmed with Edna on the phone"}, nil); st != http.StatusOK {
		t.Fatalf("resolve: %d %+v", st, p)
	}
	// Review reads.
	e.doJSON(http.MethodGet, "/v1/teams/wigan/records/people/p1", cat.access, nil, nil)
	e.doJSON(http.MethodGet, "/v1/teams/wigan/records/people/p1/history", cat.access, nil, nil)
	// An erasure.
	ann.sync(ann.change(ann.write("wigan", "people", "p2", "given_name", "Bill")))
	if st, p := e.doJSON(http.MethodPost, "/v1/admin/erasures", dan.access, map[string]any{"team": "wigan", "collection": "people", "id": "p2"}, nil); st != http.StatusOK {
		t.Fatalf("erase: %d %+v", st, p)
	}
	// Something in ashton, which wigan's admin must not read.
	e.createUser(gus, "ivy", api.RoleLinkWorker, "ashton")

	// An hour later (no device syncs from here: their clocks are real) an
	// admin reapplies the op stamped ahead.
	clk.Add(time.Hour + time.Minute)
	var q struct{ Ops []server.QuarantineEntry }
	if e.doJSON(http.MethodGet, "/v1/admin/quarantine", dan.access, nil, &q); len(q.Ops) != 1 {
		t.Fatalf("quarantine %+v", q)
	}
	qid := strconv.FormatUint(q.Ops[0].ID, 10)
	if st, p := e.doJSON(http.MethodPost, "/v1/admin/quarantine/"+qid+"/reapply", dan.access, nil, nil); st != http.StatusOK {
		t.Fatalf("reapply: %d %+v", st, p)
	}
	dan.refreshTokens() // now in bolton too, which dan created
	es := dan.audit("")
	opID := func(op crdt.Op) string { return hex.EncodeToString(op.ID.AppendBinary(nil)) }
	checks := []struct {
		action, target, actor string
		detail                map[string]string
	}{
		{auth.ActionTeamCreate, "bolton", "dan", nil},
		{auth.ActionUserCreate, hal, "dan", map[string]string{"role": "link_worker", "teams": "wigan"}},
		{auth.ActionUserRole, hal, "dan", map[string]string{"role": "coordinator", "old_role": "link_worker"}},
		{auth.ActionUserName, hal, "dan", nil},
		{auth.ActionDeviceRevoke, spare.id.String(), "dan", nil},
		{auth.ActionDeviceRegister, spare.id.String(), "bea", nil},
		{"admin.read", "", "dan", map[string]string{"route": "/v1/admin/users"}},
		{"admin.request", "", "dan", map[string]string{"route": "/v1/admin/teams", "method": "POST"}},
		{"admin.request", "", "dan", map[string]string{"route": "/v1/admin/users/:id", "method": "PATCH", "param_id": hal}},
		{"record.resolve", "people/p1", "cat", map[string]string{"field": "preferred_name", "reason": "confirmed with Edna on the phone"}},
		{"record.read", "people/p1", "cat", nil},
		{"record.history_read", "people/p1", "cat", nil},
		{"record.erase", "people/p2", "dan", map[string]string{"records": "1", "cascade": "false"}},
		{"quarantine.reapply", qid, "dan", map[string]string{"op": opID(future), "record": "people/p3", "code": "clock_skew"}},
	}
	for _, c := range checks {
		got := findAudit(es, c.action, c.target)
		if len(got) == 0 {
			t.Errorf("no %s entry on %q", c.action, c.target)
			continue
		}
		g := got[len(got)-1]
		for _, cand := range got {
			match := true
			for k, v := range c.detail {
				match = match && cand.Detail[k] == v
			}
			if match {
				g = cand
			}
		}
		if g.ActorID != e.users[c.actor] || g.Time.Before(start.Add(-time.Second)) || g.Seq == 0 {
			t.Errorf("%s: actor %s (%s) at %v seq %d, want %s", c.action, g.ActorID, g.ActorName, g.Time, g.Seq, c.actor)
		}
		for k, v := range c.detail {
			if g.Detail[k] != v {
				t.Errorf("%s detail %s = %q, want %q", c.action, k, g.Detail[k], v)
			}
		}
	}
	// The resolution names the values it settled by op ID, never the
	// values.
	if r := findAudit(es, "record.resolve", "people/p1"); len(r) == 1 {
		settled := r[0].Detail["settled_ops"]
		if !strings.Contains(settled, opID(a)) || !strings.Contains(settled, opID(b)) || r[0].Detail["op"] == "" {
			t.Errorf("resolve entry %+v does not name ops %s and %s", r[0], opID(a), opID(b))
		}
		for _, v := range r[0].Detail {
			if strings.Contains(v, "Eddie") {
				t.Errorf("resolve entry holds a value: %+v", r[0])
			}
		}
	}
	// Seq increases; every entry dan reads concerns wigan (or bolton, dan's
	// from the team creation).
	for i, en := range es {
		if i > 0 && en.Seq <= es[i-1].Seq {
			t.Errorf("seq %d after %d", en.Seq, es[i-1].Seq)
		}
		if en.Team != "wigan" && en.Team != "bolton" && !slices.Contains(en.Teams, "wigan") {
			t.Errorf("wigan admin reads %+v", en)
		}
	}
	if len(findAudit(es, auth.ActionUserCreate, e.users["ivy"])) != 0 {
		t.Errorf("wigan admin reads ashton's user creation")
	}
	if len(findAudit(gus.audit(""), auth.ActionUserCreate, e.users["ivy"])) != 1 {
		t.Errorf("ashton admin does not read ashton's user creation")
	}
	// Filters.
	for _, en := range dan.audit("actor=" + e.users["cat"]) {
		if en.ActorID != e.users["cat"] {
			t.Errorf("actor filter: %+v", en)
		}
	}
	userEntries := dan.audit("action=user.")
	if len(userEntries) < 3 {
		t.Errorf("action=user.: %d entries", len(userEntries))
	}
	for _, en := range userEntries {
		if !strings.HasPrefix(en.Action, "user.") {
			t.Errorf("action prefix filter: %+v", en)
		}
	}
	if n := len(dan.audit("since=" + clk.Now().Add(time.Hour).UTC().Format(time.RFC3339))); n != 0 {
		t.Errorf("since an hour ahead: %d entries", n)
	}
	// Paging by cursor gives the same entries, two at a time.
	var paged []auth.AuditEntry
	cursor := ""
	for i := 0; i < 1000; i++ {
		var page server.AuditPage
		if st, p := e.doJSON(http.MethodGet, "/v1/admin/audit?limit=2&action=record.&cursor="+cursor, dan.access, nil, &page); st != http.StatusOK || len(page.Entries) > 2 {
			t.Fatalf("page: %d %+v %d", st, p, len(page.Entries))
		}
		paged = append(paged, page.Entries...)
		if !page.More {
			break
		}
		cursor = page.NextCursor
	}
	all := dan.audit("action=record.")
	if len(paged) != len(all) || len(all) < 4 {
		t.Errorf("paged %d entries, unpaged %d", len(paged), len(all))
	}
	// CSV export.
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/v1/admin/audit?format=csv&action=record.", nil)
	req.Header.Set("Authorization", "Bearer "+dan.access)
	res, body := e.roundTrip(req)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(all)+1 || rows[0][0] != "seq" || rows[0][6] != "action" {
		t.Fatalf("csv has %d rows for %d entries: %q", len(rows), len(all), rows[0])
	}
	for i, row := range rows[1:] {
		if row[0] != strconv.FormatUint(all[i].Seq, 10) || row[6] != all[i].Action || row[2] != all[i].ActorID {
			t.Errorf("csv row %d %q, entry %+v", i, row, all[i])
		}
	}
	// Non-admins cannot read the trail.
	if st, p := e.doJSON(http.MethodGet, "/v1/admin/audit", cat.access, nil, nil); st != http.StatusForbidden {
		t.Errorf("coordinator reads the audit: %d %+v", st, p)
	}
}

// TestSDKLogoutEndsServerSession: the SDK's Logout ends the device's
// session on the server, not only its stored tokens.
func TestSDKLogoutEndsServerSession(t *testing.T) {
	e := newSDKEnv(t, time.Now)
	ctx := context.Background()
	r := e.device("ann", "", nil)
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before, err := e.srv.Auth().Device(ctx, r.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Logout(ctx); err != nil {
		t.Fatalf("logout: %v", err)
	}
	after, err := e.srv.Auth().Device(ctx, r.ID())
	if err != nil || after.Gen == before.Gen || after.Revoked {
		t.Fatalf("device after logout: %+v (before %+v) %v", after, before, err)
	}
	es, _, _, err := e.srv.Auth().AuditLog(ctx, auth.AuditQuery{Action: auth.ActionDeviceLogout})
	if err != nil || len(es) != 1 || es[0].TargetID != r.ID().String() {
		t.Fatalf("logout audit %+v %v", es, err)
	}
	if _, err := r.Sync(ctx); !errors.Is(err, client.ErrSignedOut) {
		t.Fatalf("sync after logout: %v", err)
	}
	// Logging in again on the same device works.
	if _, err := r.Login(ctx, "ann", "ann-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestDemoUserRefusedOutsideDemoMode: a user seeded by --demo logs in only
// to a server in demo mode, over the same data directory.
func TestDemoUserRefusedOutsideDemoMode(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.srv.Auth().CreateUser(ctx, auth.NewUser{Username: "amara", Password: demo.DemoPassword, Role: api.RoleLinkWorker, Teams: []string{"wigan"}, Demo: true}); err != nil {
		t.Fatal(err)
	}
	st, _, p := e.loginAs("amara", demo.DemoPassword, crdt.NewReplicaID())
	wantProblem(t, "demo user without demo mode", st, p, http.StatusForbidden, api.CodeDemoAccount)
	st, _, p = e.loginAs("amara", "not the demo password", crdt.NewReplicaID())
	wantProblem(t, "demo user, wrong password", st, p, http.StatusUnauthorized, api.CodeInvalidCredentials)
	// The same directory served in demo mode lets the demo user in.
	data := e.data
	e.ts.Close()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	demoSrv, err := server.New(ctx, server.Config{DataDir: data, BcryptCost: bcrypt.MinCost, SmallMemory: true, Demo: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AuthRate: -1, DeviceRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer demoSrv.Shutdown(ctx)
	e2 := &env{t: t, srv: demoSrv, ts: httptest.NewServer(demoSrv.Handler()), data: data}
	defer e2.ts.Close()
	if st, _, p := e2.loginAs("amara", demo.DemoPassword, crdt.NewReplicaID()); st != http.StatusOK {
		t.Fatalf("demo user in demo mode: %d %+v", st, p)
	}
}
