package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/demo"
	"github.com/doorstep-health/doorstep/internal/pgtest"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/store"
	storebadger "github.com/doorstep-health/doorstep/store/badger"
	"github.com/doorstep-health/doorstep/store/memory"
	"github.com/doorstep-health/doorstep/store/postgres"
	dsync "github.com/doorstep-health/doorstep/sync"
	"golang.org/x/crypto/bcrypt"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// sharedKV lets several Services use one store.KV (the test closes it)
// and reports it shared, as PostgreSQL is.
type sharedKV struct{ store.KV }

func (sharedKV) Close() error { return nil }
func (sharedKV) Shared() bool { return true }

// consoleServer is one "server": an auth service over the (shared) auth
// store and a console over it, served on loopback.
type consoleServer struct {
	auth    *auth.Service
	console *Console
	ts      *httptest.Server
}

func (cs *consoleServer) close() {
	cs.ts.Close()
	cs.console.Close()
	cs.auth.Close()
}

// sessionRig is a records engine (Badger) and users to sign in as; servers
// are added over an auth store with serve.
type sessionRig struct {
	t     *testing.T
	eng   *dsync.Engine
	users map[string]auth.User
	dev   crdt.ReplicaID // wes's phone
}

func newSessionRig(t *testing.T) *sessionRig {
	t.Helper()
	kv, err := storebadger.Open(storebadger.Options{Dir: filepath.Join(t.TempDir(), "records"), Logger: quiet(), SmallMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := dsync.Open(context.Background(), dsync.Options{Store: kv, Validator: schema.Default(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return &sessionRig{t: t, eng: eng, users: map[string]auth.User{}}
}

// serve starts a server over akv; the first one seeds the users.
func (rig *sessionRig) serve(akv store.KV) *consoleServer {
	t := rig.t
	t.Helper()
	ctx := context.Background()
	a, err := auth.New(ctx, akv, auth.Config{BcryptCost: bcrypt.MinCost, KeyDir: filepath.Join(t.TempDir(), "keys"), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rig.users) == 0 {
		if _, err := a.CreateTeam(ctx, "wigan", "Wigan"); err != nil {
			t.Fatal(err)
		}
		for _, nu := range []auth.NewUser{
			{Username: "cora", Name: "Cora", Role: api.RoleCoordinator},
			{Username: "adam", Name: "Adam", Role: api.RoleAdmin},
			{Username: "wes", Name: "Wes", Role: api.RoleLinkWorker},
		} {
			nu.Password, nu.Teams = demo.DemoPassword, []string{"wigan"}
			u, err := a.CreateUser(ctx, nu)
			if err != nil {
				t.Fatal(err)
			}
			rig.users[nu.Username] = u
		}
		rig.dev = crdt.NewReplicaID()
		if _, err := a.Login(ctx, "wes", demo.DemoPassword, rig.dev.String(), "phone"); err != nil {
			t.Fatal(err)
		}
	}
	c, err := New(Config{Engine: rig.eng, Auth: a, Sessions: a, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	cs := &consoleServer{auth: a, console: c, ts: httptest.NewServer(c)}
	t.Cleanup(cs.close)
	return cs
}

// at points b at server s: the browser keeps its cookies (a cookie is
// for the host, whatever the port), as behind a proxy spreading requests.
func (b *browser) at(s *consoleServer) *browser {
	b.url = s.ts.URL
	return b
}

func (rig *sessionRig) browser() *browser {
	e := &env{t: rig.t, ts: &httptest.Server{}} // no server of its own: see at
	return e.browser()
}

// TestConsoleSessionAcrossServers: two servers over one shared auth
// store. A coordinator signed in through one is served by the other, a
// page and a POST with the session's CSRF token alike; signing out
// through the second ends the session on the first; disabling a user
// through one ends their sessions on both, for good.
func TestConsoleSessionAcrossServers(t *testing.T) {
	backends := map[string]func(t *testing.T) (store.KV, store.KV){
		"memory": func(t *testing.T) (store.KV, store.KV) {
			kv := memory.New(memory.Options{})
			t.Cleanup(func() { kv.Close() })
			return sharedKV{kv}, sharedKV{kv}
		},
		"postgres": func(t *testing.T) (store.KV, store.KV) {
			url := pgtest.NewDB(t)
			var kvs [2]store.KV
			for i := range kvs {
				kv, err := postgres.Open(context.Background(), url, postgres.Options{Table: "doorstep_auth", Logger: quiet()})
				if err != nil {
					t.Fatal(err)
				}
				kvs[i] = kv
			}
			return kvs[0], kvs[1]
		},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			rig := newSessionRig(t)
			kv1, kv2 := open(t)
			s1, s2 := rig.serve(kv1), rig.serve(kv2)
			home := "/console/teams/wigan"

			// Signed in through s1, served by s2.
			b := rig.browser().at(s1)
			tok := b.mustSignIn("adam")
			if st, body, _ := b.at(s2).get(home); st != http.StatusOK || !strings.Contains(body, "Adam") {
				t.Fatalf("home through s2: %d", st)
			}
			// A POST through s2: refused without the session's CSRF token,
			// done with it.
			revoke := "/console/admin/devices/" + rig.dev.String() + "/revoke"
			if st, _, _ := b.post(revoke, url.Values{"csrf": {"not-the-token"}}); st != http.StatusForbidden {
				t.Fatalf("POST with a wrong CSRF token through s2: %d", st)
			}
			if d, err := s1.auth.Device(context.Background(), rig.dev); err != nil || d.Revoked {
				t.Fatalf("refused POST revoked the device: %+v %v", d, err)
			}
			if st, _, loc := b.post(revoke, url.Values{"csrf": {tok}}); st != http.StatusSeeOther || !strings.Contains(loc, "revoked=1") {
				t.Fatalf("revoke through s2: %d %s", st, loc)
			}
			if d, err := s1.auth.Device(context.Background(), rig.dev); err != nil || !d.Revoked {
				t.Fatalf("revoked through s2, seen by s1: %+v %v", d, err)
			}
			if st, _, _ := b.at(s1).get("/console/admin/devices"); st != http.StatusOK {
				t.Fatalf("back on s1: %d", st)
			}

			// Signed out through s2: s1 refuses the session cookie, replayed.
			u, _ := url.Parse(s1.ts.URL + "/console/")
			var sess string
			for _, c := range b.c.Jar.Cookies(u) {
				if c.Name == cookieSession {
					sess = c.Value
				}
			}
			if sess == "" {
				t.Fatal("no session cookie")
			}
			if st, _, _ := b.at(s2).post("/console/logout", url.Values{"csrf": {tok}}); st != http.StatusSeeOther {
				t.Fatalf("logout through s2: %d", st)
			}
			replay := rig.browser().at(s1)
			replay.c.Jar.SetCookies(u, []*http.Cookie{{Name: cookieSession, Value: sess, Path: "/console/"}})
			if st, _, loc := replay.get(home); st != http.StatusSeeOther || !strings.HasPrefix(loc, "/console/login") {
				t.Fatalf("session signed out through s2, on s1: %d %s", st, loc)
			}
			if _, err := s1.auth.ConsoleSession(context.Background(), sess); !errors.Is(err, auth.ErrNotFound) {
				t.Fatalf("signed-out session still stored: %v", err)
			}

			// Disabled through s1: the coordinator's sessions end on s2,
			// and enabling her again does not bring them back.
			c := rig.browser().at(s2)
			c.mustSignIn("cora")
			ctx := auth.WithActor(context.Background(), auth.ServiceActor("test"))
			if _, err := s1.auth.SetDisabled(ctx, rig.users["cora"].ID, true); err != nil {
				t.Fatal(err)
			}
			if _, err := s1.auth.SetDisabled(ctx, rig.users["cora"].ID, false); err != nil {
				t.Fatal(err)
			}
			if st, _, _ := c.get(home); st != http.StatusSeeOther {
				t.Fatalf("disabled and enabled through s1, old session on s2: %d", st)
			}
			if n, err := s2.auth.ConsoleSessionCount(context.Background(), rig.users["cora"].ID); err != nil || n != 0 {
				t.Fatalf("cora's sessions after disable: %d %v", n, err)
			}
		})
	}
}

// TestConsoleSessionSurvivesRestart: a session signed in before a
// restart (auth store on Badger, closed and opened again) is served after
// it, with its CSRF token.
func TestConsoleSessionSurvivesRestart(t *testing.T) {
	rig := newSessionRig(t)
	dir := filepath.Join(t.TempDir(), "auth")
	open := func() store.KV {
		kv, err := storebadger.Open(storebadger.Options{Dir: dir, SmallMemory: true, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		return kv
	}
	s1 := rig.serve(open())
	b := rig.browser().at(s1)
	tok := b.mustSignIn("cora")
	s1.close() // closes its Badger

	s2 := rig.serve(open())
	if st, _, _ := b.at(s2).get("/console/teams/wigan"); st != http.StatusOK {
		t.Fatalf("after restart: %d", st)
	}
	if st, _, _ := b.post("/console/logout", url.Values{"csrf": {tok}}); st != http.StatusSeeOther {
		t.Fatalf("logout with the pre-restart CSRF token: %d", st)
	}
	if st, _, _ := b.get("/console/teams/wigan"); st != http.StatusSeeOther {
		t.Fatalf("after logout: %d", st)
	}
}

// TestConsoleSessionsPerUserBound: signing in once more than MaxSessions
// ends the user's oldest session.
func TestConsoleSessionsPerUserBound(t *testing.T) {
	rig := newSessionRig(t)
	kv := memory.New(memory.Options{})
	s := rig.serve(kv)
	s.console.ss.maxPerUser = 2
	var bs []*browser
	for range 3 {
		b := rig.browser().at(s)
		b.mustSignIn("cora")
		bs = append(bs, b)
	}
	for i, want := range []int{http.StatusSeeOther, http.StatusOK, http.StatusOK} {
		if st, _, _ := bs[i].get("/console/teams/wigan"); st != want {
			t.Errorf("browser %d: %d, want %d", i, st, want)
		}
	}
	if n, err := s.auth.ConsoleSessionCount(context.Background(), rig.users["cora"].ID); err != nil || n != 2 {
		t.Fatalf("cora's sessions: %d %v", n, err)
	}
}
