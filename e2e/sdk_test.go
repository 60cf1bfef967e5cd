package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
	"github.com/vmihailenco/msgpack/v5"
)

// sdkEnv is a real server on loopback with one team and a few users, and
// helpers to open SDK replicas against it.
type sdkEnv struct {
	t    testing.TB
	srv  *server.Server
	http *httptest.Server
	url  string // the URL replicas use: the server's or a proxy's
	now  func() time.Time
	desk crdt.ReplicaID // the coordinator's desk, for coordinatorGET
}

const sdkTeam = "wigan-frailty"

// The limits every SDK test runs with (a test may override them): 16 KiB
// pages of at most 25 items, and 5 requests a second per device after a
// burst of 20.
const (
	sdkPageBytes   = 16 << 10
	sdkDeviceRate  = 5
	sdkDeviceBurst = 20
	sdkPullLimit   = 25 // items per page the SDK asks for
)

var sdkKey = []byte("e2e-test-key-32-bytes-long-00000")

func newSDKEnv(t testing.TB, now func() time.Time, mods ...func(*server.Config)) *sdkEnv {
	t.Helper()
	return newSDKEnvChecked(t, now, true, mods...)
}

// newSDKEnvChecked is newSDKEnv, with the OpenAPI checker (openAPIChecked)
// in front of the server only when checked is set: every test runs with
// it; a benchmark of the product may run without it.
func newSDKEnvChecked(t testing.TB, now func() time.Time, checked bool, mods ...func(*server.Config)) *sdkEnv {
	t.Helper()
	ctx := context.Background()
	if now == nil {
		now = time.Now
	}
	cfg := server.Config{
		DataDir:    t.TempDir(),
		BcryptCost: bcrypt.MinCost,
		// Small pages and a per-device rate limit of a few requests a
		// second, so that every SDK test also exercises paging and the
		// SDK's waits on rate_limited (issue 16) instead of bypassing them.
		PageBytes:   sdkPageBytes,
		DeviceRate:  sdkDeviceRate,
		DeviceBurst: sdkDeviceBurst,
		AuthRate:    -1,
		SmallMemory: true,
		Now:         now,
		Logger:      slog.New(slog.DiscardHandler),
	}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	h := s.Handler()
	if checked {
		h = openAPIChecked(t, h)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		hs.Close()
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	})
	a := s.Auth()
	if _, err := a.CreateTeam(ctx, sdkTeam, "Wigan Frailty"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, role string }{
		{"ann", api.RoleLinkWorker}, {"bea", api.RoleLinkWorker}, {"cal", api.RoleLinkWorker},
		{"dee", api.RoleLinkWorker}, {"cora", api.RoleCoordinator},
	} {
		if _, err := a.CreateUser(ctx, auth.NewUser{Username: u.name, Name: u.name, Password: u.name + "-password", Role: u.role, Teams: []string{sdkTeam}}); err != nil {
			t.Fatal(err)
		}
	}
	return &sdkEnv{t: t, srv: s, http: hs, url: hs.URL, now: now}
}

// device opens a replica in dir (a new temp dir if empty) and signs user in.
func (e *sdkEnv) device(user, dir string, mod func(*client.Options)) *client.Replica {
	e.t.Helper()
	if dir == "" {
		dir = e.t.TempDir()
	}
	r := e.open(dir, mod)
	if _, err := r.Login(context.Background(), user, user+"-password"); err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	return r
}

func (e *sdkEnv) open(dir string, mod func(*client.Options)) *client.Replica {
	e.t.Helper()
	opts := client.Options{Dir: dir, EncryptionKey: sdkKey, ServerURL: e.url, DeviceName: "e2e tablet", Wall: e.now,
		HTTPClient: &http.Client{Timeout: 20 * time.Second},
		PullLimit:  sdkPullLimit, MaxRetryWait: 2 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	r, err := client.Open(context.Background(), opts)
	if err != nil {
		e.t.Fatalf("open replica: %v", err)
	}
	e.t.Cleanup(func() { r.Close() })
	return r
}

// coordinatorGET signs the coordinator in (once) and GETs a review route.
func (e *sdkEnv) coordinatorGET(path string, out any) int {
	e.t.Helper()
	if e.desk.IsZero() {
		e.desk = crdt.NewReplicaID() // one device: logins are bounded per user in devices, not in count
	}
	body, _ := json.Marshal(api.LoginRequest{Username: "cora", Password: "cora-password", DeviceID: e.desk.String(), DeviceName: "desk"})
	resp, err := http.Post(e.http.URL+"/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	var tr api.TokenResponse
	err = json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("coordinator login: %d %v", resp.StatusCode, err)
	}
	var b []byte
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequest(http.MethodGet, e.http.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			e.t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		// The suite runs with a rate limit: wait as the server asks.
		var p api.Problem
		if resp.StatusCode != http.StatusTooManyRequests || attempt >= 20 || json.Unmarshal(b, &p) != nil || p.RetryAfterMillis <= 0 {
			break
		}
		time.Sleep(p.RetryAfter())
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode
}

func sdkPerson(given string) map[string]any {
	return map[string]any{"given_name": given, "family_name": "Jones", "date_of_birth": "1940-01-02", "address": "1 Library Street, Wigan"}
}

// sdkSeedPeople creates n people, P0 to P<n-1>, in one batch on r and
// returns their refs in that order.
func sdkSeedPeople(tb testing.TB, r *client.Replica, n int) []client.Ref {
	tb.Helper()
	var refs []client.Ref
	err := r.Batch(context.Background(), func(bt *client.Batch) error {
		for i := range n {
			id, err := bt.Create(client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson(fmt.Sprint("P", i)))
			if err != nil {
				return err
			}
			refs = append(refs, id)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return refs
}

func sdkMustSync(t *testing.T, r *client.Replica) client.SyncResult {
	t.Helper()
	res, err := r.Sync(context.Background())
	if err != nil {
		t.Fatalf("sync %s: %v", r.ID(), err)
	}
	if len(res.Rejected) > 0 {
		t.Fatalf("sync %s: server rejected ops: %+v", r.ID(), res.Rejected)
	}
	if res.RateLimited > 0 {
		t.Logf("sync %s: %d rounds, waited out the rate limit %d times", r.ID(), res.Rounds, res.RateLimited)
	}
	return res
}

// sdkAssertConverged checks that every replica holds byte-identical record
// states.
func sdkAssertConverged(t *testing.T, rs ...*client.Replica) map[client.Ref]*crdt.Record {
	t.Helper()
	ctx := context.Background()
	first, err := rs[0].States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs[1:] {
		got, err := r.States(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(first) {
			t.Fatalf("replica %s holds %d records, %s holds %d", r.ID(), len(got), rs[0].ID(), len(first))
		}
		for ref, a := range first {
			b, ok := got[ref]
			if !ok {
				t.Fatalf("replica %s lacks %v", r.ID(), ref)
			}
			ab, _ := crdt.MarshalRecord(a)
			bb, _ := crdt.MarshalRecord(b)
			if !bytes.Equal(ab, bb) {
				for n, f := range a.Fields {
					g := b.Fields[n]
					fb, _ := msgpack.Marshal(f)
					gb, _ := msgpack.Marshal(g)
					if !bytes.Equal(fb, gb) {
						t.Logf("field %s: %+v vs %+v", n, f, g)
					}
				}
				t.Fatalf("record %v differs between %s and %s", ref, rs[0].ID(), r.ID())
			}
		}
	}
	return first
}

func TestSDKTwoTabletsConflictEitherOrder(t *testing.T) {
	for _, annFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("annFirst=%v", annFirst), func(t *testing.T) {
			ctx := context.Background()
			e := newSDKEnv(t, nil)
			ann := e.device("ann", "", nil)
			bea := e.device("bea", "", nil)
			id, err := ann.Create(ctx, client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson("Edith"))
			if err != nil {
				t.Fatal(err)
			}
			ref := id
			if err := ann.Set(ctx, ref, "cfs", 5); err != nil {
				t.Fatal(err)
			}
			sdkMustSync(t, ann)
			if res := sdkMustSync(t, bea); !res.Bootstrapped {
				t.Fatalf("bea's first sync did not bootstrap: %+v", res)
			}

			// Both offline: each records a different frailty score and a
			// case note.
			if err := ann.Set(ctx, ref, "cfs", 6); err != nil {
				t.Fatal(err)
			}
			if err := ann.Append(ctx, ref, "case_notes", "ann: visit, frame ordered"); err != nil {
				t.Fatal(err)
			}
			if err := bea.Set(ctx, ref, "cfs", 7); err != nil {
				t.Fatal(err)
			}
			if err := bea.Append(ctx, ref, "case_notes", "bea: visit, fall last week"); err != nil {
				t.Fatal(err)
			}
			order := []*client.Replica{ann, bea}
			if !annFirst {
				order = []*client.Replica{bea, ann}
			}
			for _, r := range append(order, order[0]) {
				sdkMustSync(t, r)
			}
			sdkAssertConverged(t, ann, bea)
			for _, r := range order {
				got, err := r.Get(ctx, ref)
				if err != nil {
					t.Fatal(err)
				}
				f := got.Fields["cfs"]
				if !f.Conflict || len(f.Values) != 2 {
					t.Fatalf("cfs on %s = %+v, want a conflict of 6 and 7", r.ID(), f)
				}
				if !f.Clinical {
					t.Fatalf("cfs not marked clinical on %s", r.ID())
				}
				if n := len(got.Fields["case_notes"].Entries); n != 2 {
					t.Fatalf("case notes on %s: %d", r.ID(), n)
				}
				cs, err := r.Conflicts(ctx, sdkTeam)
				if err != nil || len(cs) != 1 || cs[0].Ref != ref || !slices.Equal(cs[0].Conflicts(), []string{"cfs"}) {
					t.Fatalf("Conflicts on %s: %v %v", r.ID(), cs, err)
				}
			}

			// The coordinator sees the conflict too.
			var conflicts struct {
				Records []api.RecordRef `json:"records"`
			}
			if code := e.coordinatorGET("/v1/teams/"+sdkTeam+"/conflicts", &conflicts); code != http.StatusOK {
				t.Fatalf("GET conflicts: %d", code)
			}
			if !slices.Contains(conflicts.Records, ref) {
				t.Fatalf("coordinator conflicts %v lack %v", conflicts.Records, ref)
			}
			var rec server.RecordJSON
			if code := e.coordinatorGET("/v1/teams/"+sdkTeam+"/records/people/"+id.ID, &rec); code != http.StatusOK {
				t.Fatalf("GET record: %d", code)
			}
			if f := rec.Fields["cfs"]; f == nil || !f.Conflict || len(f.Values) != 2 {
				t.Fatalf("coordinator view of cfs: %+v", f)
			}

			// Bea, a link worker, may not settle a clinical conflict; the
			// coordinator does, and both tablets see it settled.
			if err := bea.Resolve(ctx, ref, "cfs", 6); !errors.Is(err, client.ErrResolveForbidden) {
				t.Fatalf("link worker's resolve: %v", err)
			}
			cora := e.device("cora", "", nil)
			sdkMustSync(t, cora)
			if err := cora.Resolve(ctx, ref, "cfs", 6); err != nil {
				t.Fatal(err)
			}
			sdkMustSync(t, cora)
			sdkMustSync(t, bea)
			sdkMustSync(t, ann)
			sdkAssertConverged(t, ann, bea, cora)
			if got, _ := ann.Get(ctx, ref); got.Fields["cfs"].Conflict || fmt.Sprint(got.Fields["cfs"].Value) != "6" {
				t.Fatalf("after resolve: %+v", got.Fields["cfs"])
			}
		})
	}
}

func TestSDKRestartBetweenWriteAndSync(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	dir := t.TempDir()
	ann := e.device("ann", dir, nil)
	id, err := ann.Create(ctx, client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson("Albert"))
	if err != nil {
		t.Fatal(err)
	}
	ref := id
	for i := range 10 {
		if err := ann.Append(ctx, ref, "case_notes", fmt.Sprintf("note %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	before := ann.Status().Pending
	if err := ann.Close(); err != nil {
		t.Fatal(err)
	}
	ann = e.open(dir, nil) // tokens and outbox come back from the replica
	if got := ann.Status().Pending; got != before || got != 14 {
		t.Fatalf("pending after reopen = %d, before %d", got, before)
	}
	sdkMustSync(t, ann)
	if ann.Status().Pending != 0 {
		t.Fatalf("pending after sync = %d", ann.Status().Pending)
	}
	bea := e.device("bea", "", nil)
	sdkMustSync(t, bea)
	got, err := bea.Get(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Fields["case_notes"].Entries); n != 10 {
		t.Fatalf("bea sees %d notes, want 10", n)
	}
	sdkAssertConverged(t, ann, bea)
}

func TestSDKRevokedDeviceKeepsOutbox(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	ann := e.device("ann", "", nil)
	id, err := ann.Create(ctx, client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson("Mabel"))
	if err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	ref := id
	if err := ann.Set(ctx, ref, "phone", "01942 000111"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Auth().RevokeDevice(ctx, ann.ID()); err != nil {
		t.Fatal(err)
	}
	_, err = ann.Sync(ctx)
	var p *api.Problem
	if !errors.Is(err, client.ErrSignedOut) || !errors.As(err, &p) || p.Code != api.CodeDeviceRevoked {
		t.Fatalf("sync of a revoked device: %v", err)
	}
	st := ann.Status()
	if !st.SignedOut || st.LastErrorCode != api.CodeDeviceRevoked || st.Pending != 1 {
		t.Fatalf("status: %+v", st)
	}
	ops, err := ann.PendingOps(ctx)
	if err != nil || len(ops) != 1 || ops[0].Field != "phone" {
		t.Fatalf("outbox after revoke: %v %v", ops, err)
	}
	// The background loop stops rather than retrying forever.
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := ann.Background(bctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for ann.Background(bctx) != nil { // ErrBusy while the loop runs
		if time.Now().After(deadline) {
			t.Fatal("background loop kept running for a signed-out device")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if n, _ := ann.PendingOps(ctx); len(n) != 1 {
		t.Fatalf("outbox changed: %d ops", len(n))
	}
}

// sdkClock is a shared simulated wall clock for server and devices.
type sdkClock struct{ ns atomic.Int64 }

func newSDKClock(t time.Time) *sdkClock {
	c := &sdkClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *sdkClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *sdkClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestSDKThirtyDaysOffline(t *testing.T) {
	ctx := context.Background()
	clock := newSDKClock(time.Date(2026, 10, 1, 8, 0, 0, 0, time.UTC))
	e := newSDKEnv(t, clock.now)
	ann := e.device("ann", "", nil)
	bea := e.device("bea", "", nil)

	// A shared caseload, synced to both.
	var people []client.Ref
	for i := range 20 {
		id, err := bea.Create(ctx, client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson(fmt.Sprintf("P%02d", i)))
		if err != nil {
			t.Fatal(err)
		}
		people = append(people, id)
	}
	sdkMustSync(t, bea)
	sdkMustSync(t, ann)

	// Ann goes offline for 30 days, visiting every day; Bea keeps syncing.
	annNotes, annOps := 0, 0
	for day := range 30 {
		for v := range 3 {
			// One visit form saved as one batch (one fsync).
			err := ann.Batch(ctx, func(b *client.Batch) error {
				id, err := b.Create(client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson(fmt.Sprintf("D%02dV%d", day, v)))
				if err != nil {
					return err
				}
				ref := id
				for n := range 10 {
					if err := b.Append(ref, "case_notes", fmt.Sprintf("day %d visit %d note %d", day, v, n)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			annOps += 4 + 10
			annNotes += 10
			clock.advance(20 * time.Minute)
		}
		for _, ref := range people[:5] {
			if err := ann.Append(ctx, ref, "case_notes", fmt.Sprintf("day %d: ann phoned", day)); err != nil {
				t.Fatal(err)
			}
			if err := ann.Set(ctx, ref, "phone", fmt.Sprintf("ann-%d", day)); err != nil {
				t.Fatal(err)
			}
			annNotes++
			annOps += 2
		}
		if err := bea.Set(ctx, people[day%len(people)], "phone", fmt.Sprintf("bea-%d", day)); err != nil {
			t.Fatal(err)
		}
		sdkMustSync(t, bea)
		clock.advance(23 * time.Hour)
	}
	if got := ann.Status().Pending; got != annOps {
		t.Fatalf("ann's outbox holds %d ops, wrote %d", got, annOps)
	}
	if annOps < 1500 {
		t.Fatalf("only %d ops", annOps)
	}

	// Back online. Her refresh token may have outlived its 30 days: then
	// she is told to sign in, and nothing is lost meanwhile.
	res, err := ann.Sync(ctx)
	if errors.Is(err, client.ErrSignedOut) {
		t.Logf("after 30 days offline: %v; signing in again", err)
		if ann.Status().Pending != annOps {
			t.Fatal("outbox changed while signed out")
		}
		if _, err := ann.Login(ctx, "ann", "ann-password"); err != nil {
			t.Fatal(err)
		}
		res, err = ann.Sync(ctx)
	}
	if err != nil {
		t.Fatalf("sync after 30 days: %v", err)
	}
	if res.PushedOps != annOps || len(res.Rejected) != 0 {
		t.Fatalf("pushed %d ops of %d; rejected %d", res.PushedOps, annOps, len(res.Rejected))
	}
	sdkMustSync(t, bea)
	states := sdkAssertConverged(t, ann, bea)
	notes := 0
	for _, rec := range states {
		if f := rec.Field("case_notes"); f != nil {
			notes += len(f.Entries)
		}
	}
	if notes != annNotes {
		t.Fatalf("%d case notes merged, ann wrote %d", notes, annNotes)
	}
	// Bea's concurrent phone edits conflict with Ann's on the shared
	// people, visibly.
	got, _ := bea.Get(ctx, people[0])
	if !got.Fields["phone"].Conflict {
		t.Fatalf("phone of %v: %+v, want a conflict", people[0], got.Fields["phone"])
	}
}

// sdkChaosProxy is an in-test HTTP proxy on loopback that, at seeded random,
// drops requests before the server sees them, cuts requests in half, drops
// or truncates replies after the server handled them, and sends requests
// twice (concurrently).
type sdkChaosProxy struct {
	t        *testing.T
	target   string
	upstream *http.Client
	srv      *httptest.Server

	mu   gosync.Mutex
	rng  *sdkRand
	on   bool
	hits map[string]int
}

func newSDKChaosProxy(t *testing.T, target string, seed uint64) *sdkChaosProxy {
	p := &sdkChaosProxy{t: t, target: target, upstream: &http.Client{Timeout: 20 * time.Second},
		rng: newSDKRand(seed), on: true, hits: map[string]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *sdkChaosProxy) setChaos(on bool) {
	p.mu.Lock()
	p.on = on
	p.mu.Unlock()
}

func (p *sdkChaosProxy) pick() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	mode := "pass"
	if p.on {
		switch n := p.rng.intn(100); {
		case n < 12:
			mode = "drop-request"
		case n < 24:
			mode = "drop-reply"
		case n < 36:
			mode = "truncate-reply"
		case n < 48:
			mode = "duplicate"
		case n < 54:
			mode = "truncate-request"
		}
	}
	p.hits[mode]++
	return mode
}

func (p *sdkChaosProxy) forward(r *http.Request, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header = r.Header.Clone()
	resp, err := p.upstream.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func sdkHangUp(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func (p *sdkChaosProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		sdkHangUp(w)
		return
	}
	mode := "pass"
	if r.URL.Path == "/v1/sync" {
		mode = p.pick()
	}
	if mode == "drop-request" {
		sdkHangUp(w)
		return
	}
	if mode == "truncate-request" {
		// The server gets the headers and half the body, then the
		// connection dies.
		req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body[:len(body)/2]))
		if err == nil {
			req.Header = r.Header.Clone()
			req.ContentLength = int64(len(body))
			if resp, err := p.upstream.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		sdkHangUp(w)
		return
	}
	var resp *http.Response
	var out []byte
	if mode == "duplicate" {
		// Both copies reach the server concurrently; the device gets one
		// of the replies.
		type res struct {
			resp *http.Response
			b    []byte
			err  error
		}
		ch := make(chan res, 2)
		for range 2 {
			go func() {
				resp, b, err := p.forward(r, body)
				ch <- res{resp, b, err}
			}()
		}
		a, b := <-ch, <-ch
		if b.err == nil {
			a = b
		}
		resp, out, err = a.resp, a.b, a.err
	} else {
		resp, out, err = p.forward(r, body)
	}
	if err != nil {
		sdkHangUp(w)
		return
	}
	if mode == "drop-reply" {
		sdkHangUp(w)
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(out)))
	w.WriteHeader(resp.StatusCode)
	if mode == "truncate-reply" {
		w.Write(out[:len(out)/2])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		sdkHangUp(w)
		return
	}
	w.Write(out)
}

// sdkSyncUntilDone retries Sync through failures, as the background loop
// would, until one succeeds. A rejected op fails the test unless its code
// is one of allowed.
func sdkSyncUntilDone(t *testing.T, r *client.Replica, maxAttempts int, allowed ...api.Code) int {
	t.Helper()
	for attempt := 1; ; attempt++ {
		res, err := r.Sync(context.Background())
		if err == nil {
			for _, rej := range res.Rejected {
				if !slices.Contains(allowed, rej.Code) {
					t.Fatalf("rejected ops: %+v", res.Rejected)
				}
			}
			return attempt
		}
		if errors.Is(err, client.ErrSignedOut) || attempt >= maxAttempts {
			t.Fatalf("sync %s failed after %d attempts: %v", r.ID(), attempt, err)
		}
	}
}

func TestSDKCutConnections(t *testing.T) {
	seed := sdkSeed(t)
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	proxy := newSDKChaosProxy(t, e.http.URL, seed)
	e.url = proxy.srv.URL
	rng := newSDKRand(seed ^ 0x9e3779b97f4a7c15)
	var devs []*client.Replica
	for _, u := range []string{"ann", "bea", "cal"} {
		devs = append(devs, e.device(u, "", func(o *client.Options) { o.MaxOpsPerChange = 20; o.MaxChangesPerRequest = 3; o.PullLimit = 50 }))
	}
	var refs []client.Ref
	appended := map[client.Ref]int{}
	phones := map[client.Ref]int{}
	for round := range 8 {
		for i, d := range devs {
			if rng.intn(3) == 0 || len(refs) == 0 {
				id, err := d.Create(ctx, client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson(fmt.Sprintf("R%dD%d", round, i)))
				if err != nil {
					t.Fatal(err)
				}
				refs = append(refs, id)
			}
			for range 1 + rng.intn(25) {
				ref := refs[rng.intn(len(refs))]
				if _, err := d.Get(ctx, ref); err != nil {
					continue // not pulled here yet
				}
				if err := d.Append(ctx, ref, "case_notes", fmt.Sprintf("r%d d%d %d", round, i, appended[ref])); err != nil {
					t.Fatal(err)
				}
				appended[ref]++
				if rng.intn(4) == 0 {
					if err := d.Set(ctx, ref, "phone", fmt.Sprintf("%d-%d", round, i)); err != nil {
						t.Fatal(err)
					}
					phones[ref]++
				}
			}
			sdkSyncUntilDone(t, d, 200)
		}
	}
	proxy.setChaos(false)
	for range 2 {
		for _, d := range devs {
			sdkMustSync(t, d)
		}
	}
	proxy.mu.Lock()
	t.Logf("proxy modes: %v", proxy.hits)
	faults := proxy.hits["drop-request"] + proxy.hits["drop-reply"] + proxy.hits["truncate-reply"] + proxy.hits["duplicate"] + proxy.hits["truncate-request"]
	proxy.mu.Unlock()
	if faults == 0 {
		t.Fatal("the proxy injected no faults")
	}
	states := sdkAssertConverged(t, devs...)
	for ref, n := range appended {
		rec := states[ref]
		if rec == nil {
			t.Fatalf("record %v missing", ref)
		}
		if got := len(rec.Field("case_notes").Entries); got != n {
			t.Fatalf("%v holds %d notes, %d were written", ref, got, n)
		}
	}
	// The server's merged history holds each op once: duplicated and
	// retried requests added nothing.
	for _, ref := range refs {
		var hist struct {
			History []server.HistoryJSON `json:"history"`
		}
		if code := e.coordinatorGET("/v1/teams/"+sdkTeam+"/records/people/"+ref.ID+"/history", &hist); code != http.StatusOK {
			t.Fatalf("GET history: %d", code)
		}
		seen := map[string]bool{}
		for _, h := range hist.History {
			if seen[h.Op] {
				t.Fatalf("history of %v holds op %s twice", ref, h.Op)
			}
			seen[h.Op] = true
		}
		if want := 4 + appended[ref] + phones[ref]; len(hist.History) != want {
			t.Fatalf("history of %v has %d ops, want %d", ref, len(hist.History), want)
		}
	}
	for _, d := range devs {
		if p := d.Status().Pending; p != 0 {
			t.Fatalf("device %s still has %d pending", d.ID(), p)
		}
	}
}

func TestSDKBootstrapProgress(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	bea := e.device("bea", "", nil)
	const n = 150
	err := bea.Batch(ctx, func(b *client.Batch) error {
		for i := range n {
			if _, err := b.Create(client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson(fmt.Sprintf("B%03d", i))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, bea)

	var progress []client.Progress
	var mid []client.Status
	var ann *client.Replica
	ann = e.device("ann", "", func(o *client.Options) {
		o.PullLimit = 40
		o.OnProgress = func(p client.Progress) {
			progress = append(progress, p)
			mid = append(mid, ann.Status())
		}
	})
	res := sdkMustSync(t, ann)
	if !res.Bootstrapped || res.Snapshot != n {
		t.Fatalf("bootstrap: %+v", res)
	}
	if len(progress) < n/40 {
		t.Fatalf("%d progress reports for %d records in pages of 40", len(progress), n)
	}
	for i := 1; i < len(progress); i++ {
		if progress[i].Snapshot < progress[i-1].Snapshot {
			t.Fatalf("progress went backwards: %+v", progress)
		}
	}
	if !progress[0].Bootstrapping || !mid[0].Bootstrapping || mid[0].RecordsReceived != progress[0].Snapshot {
		t.Fatalf("first report %+v, status %+v", progress[0], mid[0])
	}
	if last := progress[len(progress)-1]; last.Snapshot != n || last.Bootstrapping {
		t.Fatalf("last report %+v", last)
	}
	if st := ann.Status(); st.Bootstrapping || st.RecordsReceived != n {
		t.Fatalf("status after bootstrap: %+v", st)
	}
	sdkAssertConverged(t, ann, bea)
	// After the bootstrap the device follows the log.
	recs, _ := bea.List(ctx, sdkTeam, "people")
	if err := bea.Set(ctx, recs[0].Ref, "phone", "01942 123456"); err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, bea)
	if res := sdkMustSync(t, ann); res.Bootstrapped || res.Pulled == 0 {
		t.Fatalf("follow-up sync: %+v", res)
	}
	sdkAssertConverged(t, ann, bea)
}

// A tablet whose clock runs three hours fast must not win every conflict:
// after one sync it stamps ops with the server's time. Ops it made before
// that sync are quarantined by the server, visibly.
func TestSDKClockSkewedTablet(t *testing.T) {
	ctx := context.Background()
	clock := newSDKClock(time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC))
	e := newSDKEnv(t, clock.now)
	fast := func() time.Time { return clock.now().Add(3 * time.Hour) }
	ann := e.device("ann", "", func(o *client.Options) { o.Wall = fast })
	bea := e.device("bea", "", nil)

	// Before its first sync the fast tablet records a person: the server
	// quarantines those ops and the tablet is told.
	early, err := ann.Create(ctx, client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson("Early"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := ann.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) == 0 {
		t.Fatalf("ops stamped 3h ahead were accepted: %+v", res)
	}
	for _, rj := range res.Rejected {
		if rj.Code != api.CodeClockSkew || rj.Op.Record != early.ID {
			t.Fatalf("rejection %+v, want clock_skew on %s", rj, early)
		}
	}
	if rj, _ := ann.Rejected(ctx); len(rj) != len(res.Rejected) {
		t.Fatalf("Rejected() lists %d, sync reported %d", len(rj), len(res.Rejected))
	}
	if off := ann.ClockOffset(); off > -2*time.Hour {
		t.Fatalf("offset after sync = %s, want about -3h", off)
	}

	// Once corrected, it cannot win a conflict it lost in real time...
	// though its HLC still sits on the quarantined ops' stamps until real
	// time passes them, so let three hours pass (as they would).
	clock.advance(3*time.Hour + time.Minute)
	id, err := bea.Create(ctx, client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson("Jones"))
	if err != nil {
		t.Fatal(err)
	}
	ref := id
	sdkMustSync(t, bea)
	sdkMustSync(t, ann)
	if err := ann.Set(ctx, ref, "phone", "ann's (earlier)"); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	if err := bea.Set(ctx, ref, "phone", "bea's (later)"); err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	sdkMustSync(t, bea)
	sdkMustSync(t, ann)
	for _, r := range []*client.Replica{ann, bea} {
		got, err := r.Get(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		f := got.Fields["phone"]
		if !f.Conflict || f.Value != "bea's (later)" {
			t.Fatalf("phone on %s = %+v: the later edit must be the winner", r.ID(), f)
		}
	}
}
