package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/internal/pgtest"
	"github.com/doorstep-health/doorstep/store/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestSharedAuthStoreTwoServers: two servers, each with its own data
// directory, share an auth store on one PostgreSQL database (two pools, as
// two processes). A device logged in through one is served by the other; a
// revocation through the other's admin API is refused by the first on its
// next request, sync and refresh alike; failed logins through both lock
// the username on both.
func TestSharedAuthStoreTwoServers(t *testing.T) {
	url := pgtest.NewDB(t)
	var srv [2]*httptest.Server
	var servers [2]*Server
	for i := range srv {
		kv, err := postgres.Open(context.Background(), url, postgres.Options{Table: "doorstep_auth"})
		if err != nil {
			t.Fatal(err)
		}
		s := newTestServer(t, func(c *Config) { c.AuthStore = kv })
		servers[i] = s
		srv[i] = httptest.NewServer(s.Handler())
		t.Cleanup(srv[i].Close)
	}
	ctx := context.Background()
	a := servers[0].Auth()
	if _, err := a.CreateTeam(ctx, "wigan", "Wigan"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []auth.NewUser{
		{Username: "ann", Password: "correct horse", Role: api.RoleLinkWorker, Teams: []string{"wigan"}},
		{Username: "root", Password: "admin password", Role: api.RoleAdmin, Teams: []string{"wigan"}},
	} {
		if _, err := a.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	post := func(base, path, token string, body any) (*http.Response, []byte) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return res, out
	}
	get := func(base, path, token string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return res, out
	}
	login := func(base, user, pw string, dev crdt.ReplicaID) (*http.Response, api.TokenResponse) {
		t.Helper()
		res, b := post(base, "/v1/auth/login", "", map[string]string{"username": user, "password": pw, "device_id": dev.String()})
		var tr api.TokenResponse
		_ = json.Unmarshal(b, &tr)
		return res, tr
	}
	code := func(b []byte) api.Code {
		var p api.Problem
		_ = json.Unmarshal(b, &p)
		return p.Code
	}

	dev := crdt.NewReplicaID()
	res, ann := login(srv[0].URL, "ann", "correct horse", dev)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("login on server 1: %d", res.StatusCode)
	}
	for i, s := range srv {
		if res, b := get(s.URL, "/v1/schema", ann.AccessToken); res.StatusCode != http.StatusOK {
			t.Fatalf("server %d refuses a token of server 1: %d %s", i+1, res.StatusCode, b)
		}
	}
	res, root := login(srv[1].URL, "root", "admin password", crdt.NewReplicaID())
	if res.StatusCode != http.StatusOK {
		t.Fatalf("admin login on server 2: %d", res.StatusCode)
	}
	if res, b := post(srv[1].URL, "/v1/admin/devices/"+dev.String()+"/revoke", root.AccessToken, map[string]any{}); res.StatusCode != http.StatusOK {
		t.Fatalf("revoke on server 2: %d %s", res.StatusCode, b)
	}
	res, b := get(srv[0].URL, "/v1/schema", ann.AccessToken)
	if res.StatusCode != http.StatusUnauthorized || code(b) != api.CodeDeviceRevoked {
		t.Fatalf("server 1 after a revocation through server 2: %d %s", res.StatusCode, b)
	}
	res, b = post(srv[0].URL, "/v1/auth/refresh", "", map[string]string{"refresh_token": ann.RefreshToken, "device_id": dev.String()})
	if res.StatusCode != http.StatusUnauthorized || code(b) != api.CodeDeviceRevoked {
		t.Fatalf("refresh on server 1 after a revocation through server 2: %d %s", res.StatusCode, b)
	}

	// Five failures, alternating servers, lock the username on both.
	for i := 0; i < 5; i++ {
		if res, _ := login(srv[i%2].URL, "ann", "wrong password", dev); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, res.StatusCode)
		}
	}
	for i, s := range srv {
		res, _ := login(s.URL, "ann", "correct horse", crdt.NewReplicaID())
		if res.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("server %d after 5 failures across both: %d", i+1, res.StatusCode)
		}
	}
}
