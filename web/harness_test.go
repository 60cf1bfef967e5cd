package web

import (
	"context"
	storebadger "github.com/doorstep-health/doorstep/store/badger"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/demo"
	"github.com/doorstep-health/doorstep/schema"
	dsync "github.com/doorstep-health/doorstep/sync"
	"golang.org/x/crypto/bcrypt"
)

// env is a console over a real engine and auth service (Badger in a temp
// dir) loaded with the demo dataset, served on loopback.
type env struct {
	t       *testing.T
	eng     *dsync.Engine
	auth    *auth.Service
	console *Console
	ts      *httptest.Server
	ds      *demo.Dataset
	users   map[string]auth.User // by username
	callers map[string]dsync.Caller
	seqs    map[crdt.ReplicaID]uint64 // changes pushed by tests after the demo

	mu      gosync.Mutex
	now     time.Time
	allowed bool // login rate limit answer
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newEnv opens the stores, loads the demo the way doorstep serve --demo
// does (users, a login per device, every change through the engine as its
// device's user) and serves the console.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	akv, err := storebadger.Open(storebadger.Options{Dir: filepath.Join(dir, "auth"), SmallMemory: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(ctx, akv, auth.Config{BcryptCost: bcrypt.MinCost, KeyDir: filepath.Join(dir, "keys"), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := storebadger.Open(storebadger.Options{Dir: filepath.Join(dir, "records"), Logger: quiet(), SmallMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := dsync.Open(ctx, dsync.Options{Store: kv, Validator: schema.Default(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, eng: eng, auth: a, ds: demo.Build(1, time.Now()), users: map[string]auth.User{}, callers: map[string]dsync.Caller{}, seqs: map[crdt.ReplicaID]uint64{}, now: time.Now(), allowed: true}
	t.Cleanup(func() {
		if e.ts != nil {
			e.ts.Close()
		}
		eng.Close()
		a.Close()
	})
	for _, tm := range e.ds.Teams {
		if _, err := a.CreateTeam(ctx, tm.ID, tm.Name); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range e.ds.Users {
		au, err := a.CreateUser(ctx, auth.NewUser{Username: u.Username, Name: u.Name, Password: u.Password, Role: u.Role, Teams: u.Teams})
		if err != nil {
			t.Fatal(err)
		}
		e.users[u.Username] = au
	}
	byReplica := map[crdt.ReplicaID]dsync.Caller{}
	for _, d := range e.ds.Devices {
		if _, err := a.Login(ctx, d.Username, demo.DemoPassword, d.Replica.String(), d.Name); err != nil {
			t.Fatal(err)
		}
		u := e.users[d.Username]
		byReplica[d.Replica] = dsync.Caller{User: u.ID, Replica: d.Replica, Teams: u.Teams}
		e.callers[d.Username] = byReplica[d.Replica]
	}
	for i, p := range e.ds.Pushes {
		res, err := eng.Push(ctx, byReplica[p.Device], []api.Change{p.Change})
		if err != nil || res[0].Status != api.ChangeApplied {
			t.Fatalf("push %d: %+v %v", i, res, err)
		}
	}
	e.console, err = New(Config{Engine: eng, Auth: a, Logger: quiet(), Now: e.clock, LoginAllowed: func(*http.Request) bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.allowed
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.ts = httptest.NewServer(e.console)
	return e
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	e   *env
	c   *http.Client
	url string
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, url: e.ts.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// get fetches path and returns status, body and the Location header.
func (b *browser) get(path string) (int, string, string) {
	b.e.t.Helper()
	resp, err := b.c.Get(b.url + path)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header.Get("Location")
}

func (b *browser) post(path string, form url.Values) (int, string, string) {
	b.e.t.Helper()
	resp, err := b.c.PostForm(b.url+path, form)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header.Get("Location")
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the first form in body.
func csrf(body string) string {
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// signIn signs in as username and returns the page it lands on.
func (b *browser) signIn(username string) (int, string, string) {
	b.e.t.Helper()
	st, body, _ := b.get("/console/login")
	if st != http.StatusOK {
		b.e.t.Fatalf("login page: %d", st)
	}
	return b.post("/console/login", url.Values{"csrf": {csrf(body)}, "username": {username}, "password": {demo.DemoPassword}, "next": {"/console/"}})
}

// mustSignIn signs in a coordinator or admin and returns the session's
// CSRF token.
func (b *browser) mustSignIn(username string) string {
	b.e.t.Helper()
	st, body, loc := b.signIn(username)
	if st != http.StatusSeeOther {
		b.e.t.Fatalf("sign in %s: %d %s", username, st, body)
	}
	st, body, _ = b.get(loc)
	if st != http.StatusOK {
		b.e.t.Fatalf("after sign-in %s: %d", loc, st)
	}
	tok := csrf(body)
	if tok == "" {
		b.e.t.Fatalf("no CSRF token on %s", loc)
	}
	return tok
}

func contains(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

func dsyncFilterPeople() dsync.ChangedFilter {
	return dsync.ChangedFilter{Collection: "people", Limit: 5}
}

func dsyncFilterAssessments() dsync.ChangedFilter {
	return dsync.ChangedFilter{Collection: "assessments", Limit: 5000}
}
