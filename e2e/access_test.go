package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
)

func TestRefreshRotationAndReuse(t *testing.T) {
	e := newEnv(t)
	ann := e.login("ann")
	refresh := func(tok string) (int, *api.TokenResponse, *api.Problem) {
		var tr api.TokenResponse
		st, p := e.doJSON(http.MethodPost, "/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: tok, DeviceID: ann.id.String()}, &tr)
		return st, &tr, p
	}
	t0 := ann.refresh
	st, t1, p := refresh(t0)
	if st != http.StatusOK || t1.RefreshToken == t0 || t1.AccessToken == "" {
		t.Fatalf("refresh: %d %+v", st, p)
	}
	ann.access = t1.AccessToken
	ann.sync()
	st, t2, p := refresh(t1.RefreshToken)
	if st != http.StatusOK {
		t.Fatalf("second refresh: %d %+v", st, p)
	}
	// t0 was spent and so was its successor t1: presenting t0 again is
	// reuse, which revokes the device.
	st, _, p = refresh(t0)
	if st != http.StatusUnauthorized || p.Code != api.CodeRefreshReused {
		t.Fatalf("reuse: %d %+v", st, p)
	}
	st, _, p = refresh(t2.RefreshToken)
	if st != http.StatusUnauthorized || p.Code != api.CodeDeviceRevoked {
		t.Fatalf("refresh after reuse: %d %+v", st, p)
	}
	ann.access = t2.AccessToken
	st, _, p = ann.trySync()
	if st != http.StatusUnauthorized || p.Code != api.CodeDeviceRevoked {
		t.Fatalf("sync after reuse: %d %+v", st, p)
	}
	// Bound to the device: another device ID cannot use a token.
	bea := e.login("bea")
	var tr api.TokenResponse
	st, p = e.doJSON(http.MethodPost, "/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: bea.refresh, DeviceID: ann.id.String()}, &tr)
	if st != http.StatusUnauthorized || p.Code != api.CodeUnauthorized {
		t.Fatalf("refresh with another device id: %d %+v", st, p)
	}
}

func TestAdminRevokesDevice(t *testing.T) {
	e := newEnv(t)
	ann, dan := e.login("ann"), e.login("dan")
	ann.sync()
	var devs struct{ Devices []auth.Device }
	if st, p := e.doJSON(http.MethodGet, "/v1/admin/users/"+e.users["ann"]+"/devices", dan.access, nil, &devs); st != http.StatusOK {
		t.Fatalf("list devices: %d %+v", st, p)
	}
	if len(devs.Devices) != 1 || devs.Devices[0].ID != ann.id.String() || devs.Devices[0].Revoked {
		t.Fatalf("devices %+v", devs)
	}
	if st, p := e.doJSON(http.MethodPost, "/v1/admin/devices/"+ann.id.String()+"/revoke", dan.access, nil, nil); st != http.StatusOK {
		t.Fatalf("revoke: %d %+v", st, p)
	}
	// The still-valid access token is refused at once…
	st, _, p := ann.trySync()
	if st != http.StatusUnauthorized || p.Code != api.CodeDeviceRevoked {
		t.Fatalf("sync after revoke: %d %+v", st, p)
	}
	// …and so are refresh and a new login on that device.
	st, p = e.doJSON(http.MethodPost, "/v1/auth/refresh", "", api.RefreshRequest{RefreshToken: ann.refresh, DeviceID: ann.id.String()}, nil)
	if st != http.StatusUnauthorized || p.Code != api.CodeDeviceRevoked {
		t.Fatalf("refresh after revoke: %d %+v", st, p)
	}
	st, p = e.doJSON(http.MethodPost, "/v1/auth/login", "", api.LoginRequest{Username: "ann", Password: password, DeviceID: ann.id.String()}, nil)
	if st != http.StatusUnauthorized || p.Code != api.CodeDeviceRevoked {
		t.Fatalf("login on revoked device: %d %+v", st, p)
	}
	// Unknown device.
	st, p = e.doJSON(http.MethodPost, "/v1/admin/devices/00000000000000000000000000000001/revoke", dan.access, nil, nil)
	if st != http.StatusNotFound || p.Code != api.CodeNotFound {
		t.Fatalf("revoke unknown: %d %+v", st, p)
	}
}

func TestAdminUsersAndTeams(t *testing.T) {
	e := newEnv(t)
	dan := e.login("dan")
	if st, p := e.doJSON(http.MethodPost, "/v1/admin/teams", dan.access, map[string]string{"id": "bolton", "name": "Bolton"}, nil); st != http.StatusCreated {
		t.Fatalf("create team: %d %+v", st, p)
	}
	if st, p := e.doJSON(http.MethodPost, "/v1/admin/teams", dan.access, map[string]string{"id": "bolton", "name": "Bolton"}, nil); st != http.StatusConflict || p.Code != api.CodeConflict {
		t.Fatalf("duplicate team: %d %+v", st, p)
	}
	// The team admin who created bolton is now in it, from the next refresh.
	dan.refreshTokens()
	var u auth.User
	st, p := e.doJSON(http.MethodPost, "/v1/admin/users", dan.access, map[string]any{"username": "hal", "name": "Hal", "password": password, "role": "link_worker", "teams": []string{"bolton"}}, &u)
	if st != http.StatusCreated || u.ID == "" || u.Teams[0] != "bolton" {
		t.Fatalf("create user: %d %+v %+v", st, u, p)
	}
	// Unknown JSON fields are refused: a body cannot smuggle in anything.
	st, p = e.doJSON(http.MethodPost, "/v1/admin/users", dan.access, map[string]any{"username": "ivy", "password": password, "role": "admin", "id": "chosen"}, nil)
	if st != http.StatusBadRequest || p.Code != api.CodeMalformedBody {
		t.Fatalf("unknown field: %d %+v", st, p)
	}
	st, p = e.doJSON(http.MethodPost, "/v1/admin/users", dan.access, map[string]any{"username": "ivy", "password": password, "role": "root"}, nil)
	if st != http.StatusBadRequest || p.Code != api.CodeBadRequest {
		t.Fatalf("bad role: %d %+v", st, p)
	}
	var patched auth.User
	st, p = e.doJSON(http.MethodPatch, "/v1/admin/users/"+u.ID, dan.access, map[string]any{"role": "coordinator", "teams": []string{"bolton", "wigan"}}, &patched)
	if st != http.StatusOK || patched.Role != "coordinator" || len(patched.Teams) != 2 {
		t.Fatalf("patch: %d %+v %+v", st, patched, p)
	}
	var users struct{ Users []auth.User }
	// A team admin sees the users of the admin's teams: wigan's four and hal.
	if st, p := e.doJSON(http.MethodGet, "/v1/admin/users", dan.access, nil, &users); st != http.StatusOK || len(users.Users) != 5 {
		t.Fatalf("list users: %d %d %+v", st, len(users.Users), p)
	}
	var teams struct{ Teams []auth.Team }
	if st, p := e.doJSON(http.MethodGet, "/v1/admin/teams", dan.access, nil, &teams); st != http.StatusOK || len(teams.Teams) != 2 {
		t.Fatalf("list teams: %d %+v %+v", st, teams, p)
	}
	// The new user logs in with the new role and teams.
	hal := e.login("hal")
	c, err := e.srv.Auth().Verify(hal.access)
	if err != nil || c.Role != "coordinator" || !c.InTeam("wigan") {
		t.Fatalf("hal's claims %+v %v", c, err)
	}
}

// TestCrossTeamRefusal tries every authenticated route as every role, on the
// caller's own team and on another team.
func TestCrossTeamRefusal(t *testing.T) {
	e := newEnv(t)
	// A record with a conflict in each team.
	ann, bea, eve := e.login("ann"), e.login("bea"), e.login("eve")
	eve2 := e.login("eve")
	for _, pair := range [][2]*device{{ann, bea}, {eve, eve2}} {
		team := "wigan"
		if pair[0] == eve {
			team = "ashton"
		}
		a, b := pair[0], pair[1]
		a.sync(a.change(a.write(team, "people", "p1", "given_name", "Edna")))
		for i := 0; i < 3; i++ {
			b.sync()
		}
		a.sync(a.change(a.write(team, "people", "p1", "preferred_name", "Ed")))
		b.sync(b.change(b.write(team, "people", "p1", "preferred_name", "Eddie")))
	}
	users := map[string]map[string]*device{ // role → team → device
		api.RoleLinkWorker:  {"wigan": ann, "ashton": eve},
		api.RoleCoordinator: {"wigan": e.login("cat"), "ashton": e.login("fay")},
		api.RoleAdmin:       {"wigan": e.login("dan"), "ashton": e.login("gus")},
	}
	type route struct {
		method, path string
		body         any
		min          string // least role allowed
		team         bool   // scoped by :team
		okStatus     int    // the success status when allowed; 0 means any 2xx
	}
	spare := e.login("bea") // a device for the revoke route
	routes := []route{
		{http.MethodGet, "/v1/teams/%s/records", nil, api.RoleCoordinator, true, 0},
		{http.MethodGet, "/v1/teams/%s/records/people/p1", nil, api.RoleCoordinator, true, 0},
		{http.MethodGet, "/v1/teams/%s/records/people/p1/history", nil, api.RoleCoordinator, true, 0},
		{http.MethodGet, "/v1/teams/%s/conflicts", nil, api.RoleCoordinator, true, 0},
		{http.MethodPost, "/v1/teams/%s/records/people/p1/resolve", map[string]any{"field": "preferred_name", "value": "Edna"}, api.RoleCoordinator, true, 0},
		{http.MethodGet, "/v1/admin/teams", nil, api.RoleAdmin, false, 0},
		{http.MethodGet, "/v1/admin/users", nil, api.RoleAdmin, false, 0},
		{http.MethodPost, "/v1/admin/teams", map[string]string{"id": "t-%s", "name": "x"}, api.RoleAdmin, false, 0},
		{http.MethodPatch, "/v1/admin/users/" + e.users["bea"], map[string]any{"teams": []string{"wigan"}}, api.RoleAdmin, false, 0},
		{http.MethodGet, "/v1/admin/users/" + e.users["bea"] + "/devices", nil, api.RoleAdmin, false, 0},
		{http.MethodGet, "/v1/admin/quarantine", nil, api.RoleAdmin, false, 0},
		{http.MethodPost, "/v1/admin/users", map[string]any{"username": "u-%s", "password": password, "role": "link_worker", "teams": []string{"wigan"}}, api.RoleAdmin, false, 0},
		{http.MethodPost, "/v1/admin/devices/" + spare.id.String() + "/revoke", nil, api.RoleAdmin, false, 0},
		{http.MethodPost, "/v1/admin/quarantine/12345/reapply", nil, api.RoleAdmin, false, http.StatusNotFound},
	}
	n := 0
	for _, r := range routes {
		for _, role := range []string{api.RoleLinkWorker, api.RoleCoordinator, api.RoleAdmin} {
			for _, own := range []bool{true, false} {
				if !r.team && !own {
					continue
				}
				dev := users[role]["wigan"]
				team := "wigan"
				if !own {
					team = "ashton"
				}
				path := r.path
				if r.team {
					path = fmt.Sprintf(r.path, team)
				}
				body := r.body
				if m, ok := body.(map[string]string); ok {
					n++
					b := map[string]string{}
					for k, v := range m {
						if k == "id" || k == "username" {
							v = fmt.Sprintf(v, fmt.Sprint(n))
						}
						b[k] = v
					}
					body = b
				}
				if m, ok := body.(map[string]any); ok {
					n++
					b := map[string]any{}
					for k, v := range m {
						if k == "username" {
							v = fmt.Sprintf(v.(string), fmt.Sprint(n))
						}
						b[k] = v
					}
					body = b
				}
				name := fmt.Sprintf("%s %s as %s own=%v", r.method, path, role, own)
				st, p := e.doJSON(r.method, path, dev.access, body, nil)
				allowed := auth.RoleAtLeast(role, r.min) && own
				switch {
				case allowed && r.okStatus != 0 && st != r.okStatus:
					t.Errorf("%s: %d %+v, want %d", name, st, p, r.okStatus)
				case allowed && r.okStatus == 0 && (st < 200 || st > 299):
					t.Errorf("%s: %d %+v, want success", name, st, p)
				case !allowed && (st != http.StatusForbidden || p.Code != api.CodeForbidden):
					t.Errorf("%s: %d %+v, want 403 forbidden", name, st, p)
				}
			}
		}
	}
	// A team that does not exist gets the same answer as another's.
	st, p := e.doJSON(http.MethodGet, "/v1/teams/no-such-team/conflicts", users[api.RoleAdmin]["wigan"].access, nil, nil)
	if st != http.StatusForbidden || p.Code != api.CodeForbidden {
		t.Errorf("unknown team: %d %+v", st, p)
	}
	// Sync: another team's records are never pulled, and pushes into them
	// are refused per op (TestLoginAndSyncBetweenTwoDevices checks both).
}

// TestDemotionTakesEffectAtOnce: an admin's demotion or team removal
// applies to tokens already issued, on their next request.
func TestDemotionTakesEffectAtOnce(t *testing.T) {
	e := newEnv(t)
	ann, cat, dan := e.login("ann"), e.login("cat"), e.login("dan")
	if st, p := e.doJSON(http.MethodGet, "/v1/teams/wigan/conflicts", cat.access, nil, nil); st != http.StatusOK {
		t.Fatalf("before: %d %+v", st, p)
	}
	if st, p := e.doJSON(http.MethodPatch, "/v1/admin/users/"+e.users["cat"], dan.access, map[string]any{"role": "link_worker"}, nil); st != http.StatusOK {
		t.Fatalf("demote: %d %+v", st, p)
	}
	if st, p := e.doJSON(http.MethodGet, "/v1/teams/wigan/conflicts", cat.access, nil, nil); st != http.StatusForbidden || p.Code != api.CodeForbidden {
		t.Fatalf("demoted coordinator: %d %+v", st, p)
	}
	// Removed from wigan (by the service admin: a move between teams
	// needs an admin of both): the same token can no longer write there.
	if _, err := e.srv.Auth().SetTeams(context.Background(), e.users["ann"], []string{"ashton"}); err != nil {
		t.Fatalf("move: %v", err)
	}
	resp := ann.sync(ann.change(ann.write("wigan", "people", "p1", "given_name", "Edna")))
	if r := resp.Results[0]; len(r.Ops) != 1 || r.Ops[0].Code != api.CodeForbiddenTeam {
		t.Fatalf("push after removal from the team: %+v", resp.Results)
	}
}
