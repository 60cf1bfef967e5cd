package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/internal/pgtest"
	"github.com/vmihailenco/msgpack/v5"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// haproxyConfig is the tested reverse-proxy configuration, used verbatim.
const haproxyConfig = "../deploy/haproxy/haproxy.cfg"

// proxyProc is a running haproxy in front of doorstep servers.
type proxyProc struct {
	cmd *exec.Cmd
	url string
}

// startHAProxy runs haproxy with deploy/haproxy/haproxy.cfg on a loopback
// port in front of the two servers. haproxy comes from Debian (.ci/run
// installs it); its absence fails the test unless DOORSTEP_SKIP_HAPROXY=1.
func startHAProxy(t *testing.T, a, b string) *proxyProc {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("DOORSTEP_SKIP_HAPROXY") == "1" {
			t.Skip("haproxy tests skipped: DOORSTEP_SKIP_HAPROXY=1")
		}
		t.Fatal("haproxy not found: install Debian's package (apt-get install haproxy, as .ci/run does), or set DOORSTEP_SKIP_HAPROXY=1 to skip")
	}
	cfg, err := filepath.Abs(haproxyConfig)
	if err != nil {
		t.Fatal(err)
	}
attempts:
	for attempt := 0; attempt < 5; attempt++ {
		// haproxy cannot report a port it chose, so take a free one and
		// hand it over; another process grabbing it meanwhile means a retry.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		cmd := exec.Command(bin, "-db", "-f", cfg)
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), "DOORSTEP_PROXY_BIND="+addr, "DOORSTEP_SERVER_A="+a, "DOORSTEP_SERVER_B="+b)
		var logBuf strings.Builder
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if logBuf.Len() < 64<<10 {
					logBuf.WriteString(sc.Text() + "\n")
				}
			}
			_, _ = io.Copy(io.Discard, stdout)
			cmd.Wait()
			close(exited)
		}()
		p := &proxyProc{cmd: cmd, url: "http://" + addr}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				t.Logf("haproxy exited at start (attempt %d):\n%s", attempt+1, logBuf.String())
				continue attempts
			default:
			}
			if res, err := http.Get(p.url + "/healthz"); err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					t.Cleanup(func() {
						cmd.Process.Kill()
						<-exited
					})
					return p
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		cmd.Process.Kill()
		<-exited
		t.Fatalf("haproxy did not serve on %s:\n%s", addr, logBuf.String())
	}
	t.Fatal("haproxy did not start in 5 attempts")
	return nil
}

// servedBy asks the proxy for /healthz and returns the server that
// answered (the X-Doorstep-Server header the config sets).
func (p *proxyProc) servedBy(t *testing.T) string {
	t.Helper()
	res, err := http.Get(p.url + "/healthz")
	if err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("through the proxy: status %d", res.StatusCode)
	}
	return res.Header.Get("X-Doorstep-Server")
}

// TestHAProxyConfigFailover runs deploy/haproxy/haproxy.cfg in front of two
// real doorstep processes on one PostgreSQL database: requests reach
// both; a record one SDK device pushes through the proxy another pulls;
// once one server is killed with SIGKILL every request is answered by the
// other, none failing (a refused connection is redispatched), and the
// devices sync on through the proxy.
func TestHAProxyConfigFailover(t *testing.T) {
	ctx := context.Background()
	pgURL := pgtest.NewDB(t)
	seedPG(t, pgURL)
	procs := pgServers(t, pgURL, 2)
	px := startHAProxy(t, procs[0].addr, procs[1].addr)
	seen := map[string]int{}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		seen[px.servedBy(t)]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("requests reached %v, want both servers", seen)
	}
	var devs []*client.Replica
	for _, u := range []string{"ann", "bea"} {
		r, err := client.Open(ctx, client.Options{Dir: t.TempDir(), EncryptionKey: sdkKey, ServerURL: px.url, DeviceName: u,
			HTTPClient: &http.Client{Timeout: 20 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Login(ctx, u, password); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, r)
	}
	pushPull := func(id string) {
		t.Helper()
		ref := client.Ref{Team: "wigan", Collection: "people", ID: id}
		if err := devs[0].CreateWithID(ctx, ref, map[string]any{"given_name": id, "family_name": "F", "date_of_birth": "1940-02-03", "address": "1 Test Street, Wigan"}); err != nil {
			t.Fatal(err)
		}
		for _, d := range devs {
			if _, err := d.Sync(ctx); err != nil {
				t.Fatalf("sync through haproxy: %v", err)
			}
		}
		if rec, err := devs[1].Get(ctx, ref); err != nil || rec == nil {
			t.Fatalf("%s pushed through the proxy by one device is not on the other: %v", id, err)
		}
	}
	pushPull("before-kill")
	// Console pages stick to one server per browser (cookie affinity).
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	consoleServer := func() string {
		t.Helper()
		res, err := browser.Get(px.url + "/console/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("console through haproxy: %d", res.StatusCode)
		}
		return res.Header.Get("X-Doorstep-Server")
	}
	sticky := consoleServer()
	for i := 0; i < 5; i++ {
		if s := consoleServer(); s != sticky {
			t.Fatalf("console request %d went to %q, the browser's first to %q: no affinity", i, s, sticky)
		}
	}
	u, _ := url.Parse(px.url + "/console/")
	if cs := jar.Cookies(u); len(cs) == 0 || !slices.ContainsFunc(cs, func(c *http.Cookie) bool { return c.Name == "doorstep_srv" && c.Value == sticky }) {
		t.Fatalf("no affinity cookie for server %s: %v", sticky, cs)
	}
	// The cookie, not chance, picks the server.
	for _, want := range []string{"a", "b", "a", "b"} {
		req, _ := http.NewRequest(http.MethodGet, px.url+"/console/", nil)
		req.AddCookie(&http.Cookie{Name: "doorstep_srv", Value: want})
		res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if got := res.Header.Get("X-Doorstep-Server"); got != want {
			t.Fatalf("console request with doorstep_srv=%s answered by %q", want, got)
		}
	}
	procs[0].kill(t)
	// From the kill on, nothing fails: requests the dead server cannot
	// take go to the live one, and after the health checks (inter 1s,
	// fall 2) the dead one is out.
	pushPull("after-kill")
	deadline := time.Now().Add(3 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		if s := px.servedBy(t); s != "b" {
			t.Fatalf("request %d after killing a answered by %q", n, s)
		}
		n++
		time.Sleep(20 * time.Millisecond)
	}
	pushPull("later")
	if s := consoleServer(); s != "b" {
		t.Fatalf("console after killing a answered by %q", s)
	}
	t.Logf("%d requests after the kill, all answered by b", n)
}

// seedPG creates the wigan team, three link workers and an admin in the
// shared PostgreSQL auth store, with the doorstep CLI as an operator would.
func seedPG(t *testing.T, url string) {
	t.Helper()
	env := []string{"DOORSTEP_PASSWORD=" + password, "DOORSTEP_STORE=postgres", "DOORSTEP_PG_URL=" + url, "DOORSTEP_DATA=" + t.TempDir()}
	doorstep(t, env, "team", "add", "--id", "wigan", "--name", "Wigan Frailty")
	for _, u := range []string{"ann", "bea", "cal", "dee"} {
		doorstep(t, env, "user", "add", "--username", u, "--role", "link_worker", "--teams", "wigan")
	}
	doorstep(t, env, "user", "add", "--username", "root", "--role", "admin", "--teams", "wigan")
}

// pgServers starts n `doorstep serve` processes on one PostgreSQL
// database, each with its own --data.
func pgServers(t *testing.T, url string, n int) []*proc {
	t.Helper()
	var ps []*proc
	for i := 0; i < n; i++ {
		ps = append(ps, serveProc(t, t.TempDir(), "--store", "postgres", "--pg-url", url,
			"--device-rate", "-1", "--auth-rate", "-1", "--trust-proxy"))
	}
	return ps
}

// randomProxy sends every request to a server picked at random among the
// live ones, so a device's consecutive round trips, even within one Sync,
// land on different servers.
type randomProxy struct {
	mu    gosync.Mutex
	rnd   *rand.Rand
	names []string
	live  map[string]*httputil.ReverseProxy
	hits  map[string]int
	fails atomic.Int64
}

func newRandomProxy(seed uint64) *randomProxy {
	return &randomProxy{rnd: rand.New(rand.NewPCG(seed, 1)), live: map[string]*httputil.ReverseProxy{}, hits: map[string]int{}}
}

func (p *randomProxy) add(t *testing.T, name, addr string, rt http.RoundTripper) {
	u, err := url.Parse("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = rt
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		p.fails.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.names = append(p.names, name)
	p.live[name] = rp
}

func (p *randomProxy) remove(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.live, name)
	p.names = slices.DeleteFunc(p.names, func(n string) bool { return n == name })
}

func (p *randomProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	name := p.names[p.rnd.IntN(len(p.names))]
	rp := p.live[name]
	p.hits[name]++
	p.mu.Unlock()
	rp.ServeHTTP(w, r)
}

// killOnSync is a transport that, once armed, kills its server with
// SIGKILL a moment after forwarding a sync request to it: the kill
// lands while a push is in flight.
type killOnSync struct {
	armed  atomic.Bool
	killed chan struct{}
	kill   func()
}

func (k *killOnSync) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/v1/sync" && k.armed.CompareAndSwap(true, false) {
		go func() {
			time.Sleep(time.Millisecond)
			k.kill()
			close(k.killed)
		}()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestTwoServersOnePostgres: two `doorstep serve` processes share one
// PostgreSQL database. A device revoked through one server is refused by
// the other at once. Four SDK devices then work concurrently, every round
// trip sent to one of the servers at random; server A is killed with
// SIGKILL while a push to it is in flight, and the devices carry on
// through B. At the end every device converges on the same records,
// nothing written is lost (each device's last value of its own field on
// every shared record wins everywhere; every created record is there) and
// nothing is doubled (no field holds concurrent values), and a fresh
// device bootstrapping from B gets exactly the same state.
func TestTwoServersOnePostgres(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDB(t)
	seedPG(t, url)
	srv := pgServers(t, url, 2)
	a, b := srv[0], srv[1]

	// Revocation through B is seen by A at once.
	t.Run("RevokedThroughOneRefusedByOther", func(t *testing.T) {
		tok, devID := loginRaw(t, "http://"+a.addr, "ann")
		adm := adminToken(t, "http://"+b.addr, "root")
		if st := postJSON(t, "http://"+b.addr+"/v1/admin/devices/"+devID+"/revoke", adm); st != http.StatusOK {
			t.Fatalf("revoke through B: %d", st)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.addr+"/v1/sync", bytes.NewReader(encode(t, &api.SyncRequest{})))
		req.Header.Set("Content-Type", api.ContentType)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized || !bytes.Contains(body, []byte(api.CodeDeviceRevoked)) {
			t.Fatalf("sync through A with the revoked device's token: %d %s", res.StatusCode, body)
		}
	})

	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	px := newRandomProxy(seed)
	killer := &killOnSync{killed: make(chan struct{})}
	killer.kill = func() {
		px.remove("a")
		a.cmd.Process.Signal(syscall.SIGKILL)
	}
	px.add(t, "a", a.addr, killer)
	px.add(t, "b", b.addr, http.DefaultTransport)
	hs := httptest.NewServer(px)
	defer hs.Close()

	users := []string{"ann", "bea", "cal", "dee"}
	fields := []string{"phone", "email", "preferred_name", "household_notes"} // one per device: no concurrent writes to one field
	var devs []*client.Replica
	for _, u := range users {
		r, err := client.Open(ctx, client.Options{Dir: t.TempDir(), EncryptionKey: sdkKey, ServerURL: hs.URL, DeviceName: u,
			HTTPClient: &http.Client{Timeout: 20 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Login(ctx, u, password); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, r)
	}
	person := func(id string) map[string]any {
		return map[string]any{"given_name": id, "family_name": "Family " + id, "date_of_birth": "1940-02-03", "address": "1 Test Street, Wigan"}
	}
	const shared = 5
	for k := 0; k < shared; k++ {
		ref := client.Ref{Team: "wigan", Collection: "people", ID: fmt.Sprintf("shared-%d", k)}
		if err := devs[0].CreateWithID(ctx, ref, person(ref.ID)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range devs {
		if _, err := d.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Concurrent work: each device creates records and edits its own
	// field of the shared ones, syncing after every step.
	const steps = 25
	created := make([][]string, len(devs))
	last := make([]map[string]string, len(devs)) // device -> shared record -> last value written
	syncErrs := make([]int, len(devs))
	var syncs atomic.Int64
	var wg gosync.WaitGroup
	for i, d := range devs {
		last[i] = map[string]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(seed, uint64(i)+10))
			for s := 0; s < steps; s++ {
				if rnd.IntN(2) == 0 {
					ref := client.Ref{Team: "wigan", Collection: "people", ID: fmt.Sprintf("d%d-%d", i, s)}
					if err := d.CreateWithID(ctx, ref, person(ref.ID)); err != nil {
						t.Error(err)
						return
					}
					created[i] = append(created[i], ref.ID)
				} else {
					id := fmt.Sprintf("shared-%d", rnd.IntN(shared))
					v := fmt.Sprintf("%s by %s step %d", fields[i], users[i], s)
					if err := d.Set(ctx, client.Ref{Team: "wigan", Collection: "people", ID: id}, fields[i], v); err != nil {
						t.Error(err)
						return
					}
					last[i][id] = v
				}
				if _, err := d.Sync(ctx); err != nil {
					syncErrs[i]++ // the kill: the device keeps its outbox and tries again
				}
				syncs.Add(1)
			}
		}()
	}
	// Kill A with a push in flight once the devices are well under way.
	for syncs.Load() < int64(len(devs)*steps/3) {
		time.Sleep(5 * time.Millisecond)
	}
	killer.armed.Store(true)
	select {
	case <-killer.killed:
	case <-time.After(30 * time.Second):
		t.Fatal("no sync request reached A after arming the kill")
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	a.cmd.Wait()
	px.mu.Lock()
	t.Logf("round trips: %v; failed at the proxy (A killed): %d; device sync errors: %v", px.hits, px.fails.Load(), syncErrs)
	if px.hits["a"] == 0 || px.hits["b"] == 0 {
		t.Errorf("round trips %v: want both servers used", px.hits)
	}
	px.mu.Unlock()

	// Everyone catches up through B.
	for round := 0; round < 2; round++ {
		for i, d := range devs {
			if _, err := d.Sync(ctx); err != nil {
				t.Fatalf("device %d final sync: %v", i, err)
			}
		}
	}
	var states []map[client.Ref]*crdt.Record
	for i, d := range devs {
		if ops, _ := d.PendingOps(ctx); len(ops) != 0 {
			t.Fatalf("device %d still has %d unsent ops", i, len(ops))
		}
		if rej, _ := d.Rejected(ctx); len(rej) != 0 {
			t.Fatalf("device %d had changes rejected: %+v", i, rej)
		}
		s, err := d.States(ctx)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, s)
	}
	want := shared
	for _, c := range created {
		want += len(c)
	}
	fresh, err := client.Open(ctx, client.Options{Dir: t.TempDir(), EncryptionKey: sdkKey, ServerURL: hs.URL, DeviceName: "fresh"})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := fresh.Login(ctx, "bea", password); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	fs, err := fresh.States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states = append(states, fs)
	for i, s := range states {
		if len(s) != want {
			t.Fatalf("replica %d holds %d records, want %d", i, len(s), want)
		}
		for j, c := range created {
			for _, id := range c {
				if s[client.Ref{Team: "wigan", Collection: "people", ID: id}] == nil {
					t.Fatalf("replica %d lacks %s created by device %d", i, id, j)
				}
			}
		}
		for ref, rec := range states[0] {
			x, _ := crdt.MarshalRecord(rec)
			y, _ := crdt.MarshalRecord(s[ref])
			if !bytes.Equal(x, y) {
				t.Fatalf("replica %d differs from device 0 on %v", i, ref)
			}
			for name, f := range rec.Fields {
				if f.Conflict() {
					t.Fatalf("%v field %s holds %d concurrent values (an op doubled or lost its pred)", ref, name, len(f.Entries))
				}
			}
		}
		for d, m := range last {
			for id, v := range m {
				w, _ := s[client.Ref{Team: "wigan", Collection: "people", ID: id}].Field(fields[d]).Winner()
				if !bytes.Equal(w.Value, crdt.MustValue(v)) {
					t.Fatalf("replica %d: %s.%s = %s, want device %d's last write %q", i, id, fields[d], w.Value, d, v)
				}
			}
		}
	}
}

// TestExactlyOnceAcrossServers: one device sends the same changes (same
// replica seqs) to both servers at once, many times over: each change is
// applied by exactly one server and reported as a duplicate by the other,
// and the log a new device pulls holds every op once.
func TestExactlyOnceAcrossServers(t *testing.T) {
	url := pgtest.NewDB(t)
	seedPG(t, url)
	srv := pgServers(t, url, 2)
	tok, devID := loginRaw(t, "http://"+srv[0].addr, "ann")
	id, err := crdt.ParseReplicaID(devID)
	if err != nil {
		t.Fatal(err)
	}
	clock := crdt.NewClock(time.Now, time.Minute)
	send := func(base string, req *api.SyncRequest) (*api.SyncResponse, error) {
		hr, _ := http.NewRequest(http.MethodPost, base+"/v1/sync", bytes.NewReader(encode(t, req)))
		hr.Header.Set("Content-Type", api.ContentType)
		hr.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(hr)
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%d %s", res.StatusCode, b)
		}
		var resp api.SyncResponse
		return &resp, msgpack.Unmarshal(b, &resp)
	}
	const changes = 30
	wantOps := 0
	for seq := uint64(1); seq <= changes; seq++ {
		var ops []crdt.Op
		for f := 0; f < 3; f++ {
			ops = append(ops, crdt.Op{ID: crdt.OpID{Time: clock.Now(), Replica: id}, Team: "wigan", Collection: "people",
				Record: fmt.Sprintf("x%d", seq), Field: []string{"given_name", "family_name", "phone"}[f], Kind: crdt.KindWrite,
				Value: crdt.MustValue(fmt.Sprintf("v%d-%d", seq, f))})
		}
		wantOps += len(ops)
		req := &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: id, Clock: clock.Now(), Changes: []api.Change{{Seq: seq, Ops: ops}}}
		var wg gosync.WaitGroup
		status := make([]api.ChangeStatus, 2)
		errs := make([]error, 2)
		for i, p := range srv {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := send("http://"+p.addr, req)
				if err == nil && len(resp.Results) == 1 {
					status[i] = resp.Results[0].Status
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("seq %d: %v", seq, err)
			}
		}
		applied := 0
		for _, st := range status {
			switch st {
			case api.ChangeApplied:
				applied++
			case api.ChangeDuplicate:
			default:
				t.Fatalf("seq %d: statuses %v", seq, status)
			}
		}
		if applied != 1 {
			t.Fatalf("seq %d sent to both servers at once: statuses %v, want exactly one applied", seq, status)
		}
	}
	// A new device pulls the whole log from B: every op once.
	tok2, dev2 := loginRaw(t, "http://"+srv[1].addr, "bea")
	tok = tok2
	id2, _ := crdt.ParseReplicaID(dev2)
	seen := map[crdt.OpID]int{}
	var cursor []byte
	for more, rounds := true, 0; more; rounds++ {
		if rounds > 100 {
			t.Fatal("pull never ended")
		}
		resp, err := send("http://"+srv[1].addr, &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: id2, Clock: clock.Now(), Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range resp.Changes {
			ops, err := c.Ops.Ops()
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range ops {
				seen[op.ID]++
			}
		}
		for _, rb := range resp.Snapshot {
			rec, err := rb.Record()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range rec.Fields {
				for _, e := range f.Entries {
					seen[e.ID]++
				}
			}
		}
		cursor, more = resp.Cursor, resp.More
	}
	if len(seen) != wantOps {
		t.Fatalf("the server holds %d distinct ops, want %d", len(seen), wantOps)
	}
	for op, n := range seen {
		if n != 1 {
			t.Fatalf("op %v pulled %d times", op, n)
		}
	}
}

// TestBackupOfPostgresRestoresToBadger: `doorstep backup` of a server on
// PostgreSQL streams both shared stores, and `doorstep restore` turns the
// file into an embedded (Badger) data directory that serves the same
// records: the way back from PostgreSQL, and a disaster copy of it.
func TestBackupOfPostgresRestoresToBadger(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDB(t)
	seedPG(t, url)
	p := pgServers(t, url, 1)[0]
	base := "http://" + p.addr
	r, err := client.Open(ctx, client.Options{Dir: t.TempDir(), EncryptionKey: sdkKey, ServerURL: base, DeviceName: "ann"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Login(ctx, "ann", password); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		ref := client.Ref{Team: "wigan", Collection: "people", ID: fmt.Sprintf("p%d", i)}
		if err := r.CreateWithID(ctx, ref, map[string]any{"given_name": ref.ID, "family_name": "F", "date_of_birth": "1940-02-03", "address": "1 Test Street, Wigan"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "pg.backup")
	doorstep(t, []string{"DOORSTEP_PASSWORD=" + password}, "backup", "--server", base, "--username", "root", "--out", out)
	data := filepath.Join(t.TempDir(), "restored")
	doorstep(t, nil, "restore", "--in", out, "--data", data)
	q := serveProc(t, data)
	fresh, err := client.Open(ctx, client.Options{Dir: t.TempDir(), EncryptionKey: sdkKey, ServerURL: "http://" + q.addr, DeviceName: "bea"})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := fresh.Login(ctx, "bea", password); err != nil {
		t.Fatalf("login on the restored Badger server (users came from PostgreSQL): %v", err)
	}
	if _, err := fresh.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	states, err := fresh.States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 3 {
		t.Fatalf("restored server holds %d records, want 3", len(states))
	}
}

// loginRaw logs a new device in over HTTP and returns its access token
// and device ID.
func loginRaw(t *testing.T, base, user string) (string, string) {
	t.Helper()
	id := crdt.NewReplicaID().String()
	body, _ := json.Marshal(api.LoginRequest{Username: user, Password: password, DeviceID: id, DeviceName: "raw"})
	res, err := http.Post(base+"/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tr api.TokenResponse
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("login %s: %d %v", user, res.StatusCode, err)
	}
	return tr.AccessToken, id
}

// postJSON POSTs an empty body with a bearer token and returns the status.
func postJSON(t *testing.T, u, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}
