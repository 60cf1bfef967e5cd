package e2e

// Attacks of issue 9 run against a real server process (this test binary
// re-executed as TestAbuseChild), each asserting that the attack is
// refused or harmless while another team's device keeps syncing: its
// 1-op syncs are timed during the attack and their p99 must stay under
// victimP99 (a generous, benchmark-style bound over hundreds of samples,
// not a single timer), and the child's peak RSS (VmHWM from /proc) is
// reported, and checked against the documented ceiling in the memory test.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/crypto/bcrypt"
)

const (
	abuseDataEnv = "DOORSTEP_E2E_ABUSE_DATA"
	abuseCfgEnv  = "DOORSTEP_E2E_ABUSE_CFG"
	// victimTarget is DESIGN §6's target for another team's 1-op sync
	// during an attack, at p99; the measured figures are logged against
	// it and reported in docs/benchmarks.md. victimP99 is what the tests
	// assert: twice the target, because every sync is an fsynced commit on
	// a shared machine (a stall that one large legitimate commit causes is
	// ~100 ms there), while the failures these tests exist for are stalls
	// of seconds (2 s with the slot taken before the body, 20 s in the
	// issue's report).
	victimTarget = 100 * time.Millisecond
	victimP99    = 2 * victimTarget
	// rssCeiling is the documented ceiling (docs/SECURITY.md) on the
	// server's resident memory at the default limits.
	rssCeiling = 1536 << 20
)

// abuseConfig is what the parent passes to the child server.
type abuseConfig struct {
	SmallMemory bool
	BodyGraceMS int
	QuarTTLMS   int
}

// TestAbuseChild is not a test: it is the server process the abuse tests
// start. It serves the data directory named in the environment on a
// loopback port, which it prints, until killed.
func TestAbuseChild(t *testing.T) {
	data := os.Getenv(abuseDataEnv)
	if data == "" {
		t.Skip("helper process for the abuse tests")
	}
	var ac abuseConfig
	if err := json.Unmarshal([]byte(os.Getenv(abuseCfgEnv)), &ac); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	cfg := server.Config{DataDir: data, BcryptCost: bcrypt.MinCost, SmallMemory: ac.SmallMemory,
		DeviceRate: -1, AuthRate: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		BodyGrace: time.Duration(ac.BodyGraceMS) * time.Millisecond}
	srv, err := server.New(context.Background(), cfg)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("ADDR", ln.Addr().String())
	_ = srv.ServeListener(context.Background(), ln) // until killed
	os.Exit(0)
}

// child is a running server process.
type child struct {
	t    *testing.T
	addr string
	url  string
	cmd  *exec.Cmd
	data string
}

// startChild stops e's in-process server and serves e's data directory
// from a child process; the devices logged in on e keep their tokens.
func startChild(t *testing.T, e *env, ac abuseConfig) *child {
	t.Helper()
	e.ts.Close()
	if err := e.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(ac)
	cmd := exec.Command(os.Args[0], "-test.run=^TestAbuseChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), abuseDataEnv+"="+e.data, abuseCfgEnv+"="+string(cfg))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &child{t: t, cmd: cmd, data: e.data}
	t.Cleanup(ch.stop)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			ch.addr = a
			break
		}
		if strings.HasPrefix(sc.Text(), "ERROR") {
			t.Fatal(sc.Text())
		}
	}
	if ch.addr == "" {
		t.Fatal("child server did not start")
	}
	go io.Copy(io.Discard, out)
	ch.url = "http://" + ch.addr
	return ch
}

// stop ends the child with SIGTERM-free SIGKILL (its data is not reused
// except by tests that reopen it, after stop returns).
func (c *child) stop() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
}

// rss returns the child's resident set size now and at its peak (VmRSS
// and VmHWM of /proc/PID/status), in bytes.
func (c *child) rss() (now, peak int64) {
	c.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		c.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			now = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return now, peak
}

// diskBytes is the space allocated to files under dir (sparse or
// preallocated files count only their written blocks).
func diskBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && !fi.IsDir() {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// syncResult is one sync round trip to a child server.
type syncResult struct {
	status  int
	resp    *api.SyncResponse
	problem *api.Problem
	bytes   int // reply body as received (gzip decoded by the transport)
	err     error
}

// syncChild posts d's sync request for changes to the child and, on
// success, moves d's cursor and clock. It never calls t.Fatal, so
// attack goroutines may use it.
func syncChild(client *http.Client, url string, d *device, body []byte, hdr map[string]string) syncResult {
	hr, _ := http.NewRequest(http.MethodPost, url+"/v1/sync", bytes.NewReader(body))
	hr.Header.Set("Content-Type", api.ContentType)
	hr.Header.Set("Authorization", "Bearer "+d.access)
	for k, v := range hdr {
		hr.Header.Set(k, v)
	}
	res, err := client.Do(hr)
	if err != nil {
		return syncResult{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return syncResult{status: res.StatusCode, err: err}
	}
	r := syncResult{status: res.StatusCode, bytes: len(b)}
	if res.StatusCode != http.StatusOK {
		var p api.Problem
		if err := msgpack.Unmarshal(b, &p); err != nil {
			r.err = fmt.Errorf("problem %q: %w", b, err)
		}
		r.problem = &p
		return r
	}
	var resp api.SyncResponse
	if err := msgpack.Unmarshal(b, &resp); err != nil {
		r.err = err
		return r
	}
	r.resp = &resp
	d.cursor = resp.Cursor
	_ = d.clock.Update(resp.Clock)
	return r
}

// victim is another team's tablet making 1-op syncs while an attack
// runs.
type victim struct {
	d      *device
	url    string
	client *http.Client
	n      int
}

// newVictim logs in the victim's device; set url once the child runs.
func newVictim(e *env) *victim {
	return &victim{d: e.login("eve"), client: &http.Client{Timeout: 60 * time.Second}}
}

// one makes one 1-op sync and returns its latency, or an error.
func (v *victim) one() (time.Duration, error) {
	v.n++
	rec := fmt.Sprintf("v%d", v.n)
	ch := v.d.change(v.d.write("ashton", "people", rec, "given_name", "Ada"))
	body, _ := msgpack.Marshal(v.d.request(ch))
	start := time.Now()
	r := syncChild(v.client, v.url, v.d, body, nil)
	took := time.Since(start)
	switch {
	case r.err != nil:
		return 0, r.err
	case r.status != http.StatusOK:
		return 0, fmt.Errorf("victim sync: %d %+v", r.status, r.problem)
	case len(r.resp.Results) != 1 || r.resp.Results[0].Status != api.ChangeApplied || len(r.resp.Results[0].Ops) != 0:
		return 0, fmt.Errorf("victim sync results %+v", r.resp.Results)
	}
	return took, nil
}

// during runs attack in its own goroutine and the victim's syncs until
// attack returns (and at least minSyncs), then reports the victim's p50
// and p99. It fails the test if p99 exceeds victimP99 (twice the design
// target, see there) or, on a machine so loaded that the victim's own p99
// without any attack (measured just before, in the same run) is already
// a large part of that, five times the baseline; both are tripled under
// -race, whose figures mean little. A ratio in the same run keeps other
// load on a shared machine from failing the test, while a victim that
// waits for the attacker (seconds, not milliseconds) always does.
func (v *victim) during(t *testing.T, minSyncs int, attack func()) {
	t.Helper()
	var base []time.Duration
	for range 200 { // warm up, and the baseline (enough syncs to see the machine's own tail)
		d, err := v.one()
		if err != nil {
			t.Fatal(err)
		}
		base = append(base, d)
	}
	bound := max(victimP99, 5*p99(base))
	if raceOn {
		bound *= 3
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		attack()
	}()
	var lat []time.Duration
	for running := true; running || len(lat) < minSyncs; {
		select {
		case <-done:
			running = false
		default:
		}
		d, err := v.one()
		if err != nil {
			t.Fatal(err)
		}
		lat = append(lat, d)
	}
	t.Logf("victim (another team): p99 %s over %d syncs before the attack; %d 1-op syncs during it: p50 %s, p99 %s (target %s), max %s",
		p99(base).Round(time.Microsecond), len(base), len(lat), quantile(lat, 0.5).Round(time.Microsecond),
		p99(lat).Round(time.Microsecond), victimTarget, quantile(lat, 1).Round(time.Microsecond))
	if p99(lat) > bound {
		t.Errorf("victim p99 %s during the attack exceeds %s", p99(lat), bound)
	}
}

// quantile returns the q-quantile (nearest rank) of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[max(0, int(math.Ceil(q*float64(len(s))))-1)]
}

func p99(ds []time.Duration) time.Duration { return quantile(ds, 0.99) }

// attackers logs in n devices spread over wigan's four users, so that the
// per-device bound alone does not make an attack harmless.
func attackers(e *env, n int) []*device {
	users := []string{"ann", "bea", "cat", "dan"}
	out := make([]*device, n)
	for i := range out {
		out[i] = e.login(users[i%len(users)])
	}
	return out
}

// TestAbuseSlowUploads (issue 9, attack 1): 32 connections from 16
// devices declare a 100,000-byte sync body and send a byte every 500 ms.
// Bodies are read before a sync slot is taken, so another team's syncs
// are not delayed; the slow senders are cut off with 408 once the grace
// is spent, and a device's third concurrent sync gets 429 at once.
func TestAbuseSlowUploads(t *testing.T) {
	e := newEnv(t)
	devs := attackers(e, 16)
	v := newVictim(e)
	ch := startChild(t, e, abuseConfig{SmallMemory: true, BodyGraceMS: 2000})
	v.url = ch.url

	type answer struct {
		status int
		after  time.Duration
	}
	answers := make(chan answer, 64)
	slow := func(d *device) {
		start := time.Now()
		conn, err := net.Dial("tcp", ch.addr)
		if err != nil {
			answers <- answer{-1, 0}
			return
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /v1/sync HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nAuthorization: Bearer %s\r\nContent-Length: 100000\r\n\r\n", ch.addr, api.ContentType, d.access)
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := conn.Write([]byte{0xc0}); err != nil {
						return
					}
				}
			}
		}()
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answers <- answer{-1, time.Since(start)}
			return
		}
		res.Body.Close()
		answers <- answer{res.StatusCode, time.Since(start)}
	}
	v.during(t, 50, func() {
		var wg gosync.WaitGroup
		for i := range 32 {
			wg.Go(func() { slow(devs[i%len(devs)]) })
		}
		time.Sleep(200 * time.Millisecond)
		// A third concurrent sync of one device is refused at once.
		for range 2 {
			wg.Go(func() { slow(devs[0]) })
		}
		wg.Wait()
		close(answers)
	})
	got := map[int]int{}
	for a := range answers {
		got[a.status]++
		if a.status == http.StatusRequestTimeout && a.after > 10*time.Second {
			t.Errorf("slow sender cut off only after %s", a.after)
		}
	}
	t.Logf("slow senders' answers by status: %v", got)
	if got[http.StatusRequestTimeout] < 30 || got[http.StatusTooManyRequests] < 2 || got[http.StatusRequestTimeout]+got[http.StatusTooManyRequests] != 34 {
		t.Errorf("answers %v: want 32 × 408 request_timeout and 2 × 429", got)
	}
	_, peak := ch.rss()
	t.Logf("server peak RSS %d MiB", peak>>20)
}

// opsBody encodes a sync request of d carrying n ops on team's records
// in changes of at most 30,000 ops, each op's value a string of
// valueLen bytes.
func opsBody(t *testing.T, d *device, team string, n, valueLen int) []byte {
	t.Helper()
	val := crdt.MustValue(strings.Repeat("x", valueLen))
	var changes []api.Change
	for n > 0 {
		k := min(n, 30000)
		n -= k
		ops := make([]crdt.Op, k)
		for i := range ops {
			ops[i] = crdt.Op{ID: crdt.OpID{Time: d.clock.Now(), Replica: d.id}, Team: team, Collection: "people",
				Record: "p" + strconv.Itoa(i%100), Field: "given_name", Kind: crdt.KindWrite, Value: val}
		}
		changes = append(changes, d.change(ops...))
	}
	return encode(t, d.request(changes...))
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	return gzipBytes(t, func(w *gzip.Writer) { w.Write(b) })
}

// TestAbuseRefusedFlood (issue 9, attack 4): gzip bodies of tens of KB
// that decode to about 15 MiB of ops for a team the device is not in.
// Every op is refused (forbidden_team) and kept only as one summary per
// change, so the data directory grows by a few KB, not hundreds of MB;
// the summaries carry counts and an expiry.
func TestAbuseRefusedFlood(t *testing.T) {
	e := newEnv(t)
	ann := e.login("ann")
	v := newVictim(e)
	ch := startChild(t, e, abuseConfig{SmallMemory: true})
	v.url = ch.url
	// Settle the store before measuring: the victim's warm-up writes.
	if _, err := v.one(); err != nil {
		t.Fatal(err)
	}
	before := diskBytes(t, ch.data)
	rounds := 8
	if raceOn {
		rounds = 1
	}
	var sent, decoded, refused int
	client := &http.Client{Timeout: 60 * time.Second}
	// Bodies are built before the attack: the test shares its two cores
	// with the server, and the attacker's CPU is not the server's.
	var bodies [][]byte
	for range rounds {
		raw := opsBody(t, ann, "ashton", 60000, 150)
		bodies = append(bodies, gzipped(t, raw))
		sent += len(bodies[len(bodies)-1])
		decoded += len(raw)
	}
	v.during(t, 50, func() {
		for _, body := range bodies {
			r := syncChild(client, ch.url, ann, body, map[string]string{"Content-Encoding": "gzip"})
			if r.err != nil || r.status != http.StatusOK {
				t.Errorf("flood push: %d %+v %v", r.status, r.problem, r.err)
				return
			}
			for _, res := range r.resp.Results {
				if res.Status != api.ChangeApplied {
					t.Errorf("change %+v", res)
				}
				for _, o := range res.Ops {
					if o.Code != api.CodeForbiddenTeam || o.Quarantined {
						t.Errorf("op %+v", o)
						return
					}
					refused++
				}
			}
		}
	})
	ch.stop()
	after := diskBytes(t, ch.data)
	t.Logf("sent %d KiB gzipped (%d MiB decoded, %d ops refused); data dir %d → %d KiB (+%d KiB)",
		sent>>10, decoded>>20, refused, before>>10, after>>10, (after-before)>>10)
	if refused != rounds*60000 {
		t.Errorf("%d ops refused, want %d", refused, rounds*60000)
	}
	// The victim's own records (well under 1 KiB each) are real data.
	if growth := after - before; growth > 2<<20+int64(v.n)<<10 {
		t.Errorf("data dir grew by %d KiB for %d KiB sent (and %d victim syncs)", growth>>10, sent>>10, v.n)
	}
	// The quarantine holds summaries with counts and an expiry.
	srv, err := server.New(context.Background(), server.Config{DataDir: ch.data, BcryptCost: bcrypt.MinCost, SmallMemory: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	q, err := srv.Engine().Quarantined(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, qo := range q {
		n += qo.Count
		if qo.Op.Value != nil || qo.Code != api.CodeForbiddenTeam || qo.Expires.Sub(qo.Received) != 30*24*time.Hour {
			t.Fatalf("quarantine entry %+v", qo)
		}
	}
	if len(q) != rounds*2 || n != rounds*60000 {
		t.Errorf("quarantine: %d entries standing for %d ops", len(q), n)
	}
}

// TestAbuseOversizedRecord (issue 9, attack 3): seven pushes of 1,500
// case notes of 10 KB each (values the schema allows) to one person. The
// server refuses the notes past the field bound (record_too_large), so
// the record stays syncable: a new tablet bootstraps it and a tablet in
// sync pulls it in replies far below the SDK's 64 MiB cap, and the review
// GET and history stay bounded.
func TestAbuseOversizedRecord(t *testing.T) {
	e := newEnv(t)
	ann, bea := e.login("ann"), e.login("bea")
	cat, fresh := e.login("cat"), e.login("bea")
	v := newVictim(e)
	ch := startChild(t, e, abuseConfig{SmallMemory: true})
	v.url = ch.url
	client := &http.Client{Timeout: 60 * time.Second}
	// Bea is in sync before the attack.
	if r := syncChild(client, ch.url, bea, encode(t, bea.request()), nil); r.status != http.StatusOK {
		t.Fatalf("bea: %d %+v %v", r.status, r.problem, r.err)
	}
	note := crdt.MustValue(strings.Repeat("Visited; talked about the garden. ", 300)[:10000])
	var applied, tooLarge int
	var bodies [][]byte // built before the attack, as in TestAbuseRefusedFlood
	pushes := 7
	if raceOn {
		pushes = 1
	}
	for range pushes {
		ops := make([]crdt.Op, 1500)
		for i := range ops {
			ops[i] = crdt.Op{ID: crdt.OpID{Time: ann.clock.Now(), Replica: ann.id}, Team: "wigan", Collection: "people",
				Record: "big", Field: "case_notes", Kind: crdt.KindAppend, Value: note}
		}
		bodies = append(bodies, gzipped(t, encode(t, ann.request(ann.change(ops...)))))
	}
	v.during(t, 50, func() {
		for _, body := range bodies {
			r := syncChild(client, ch.url, ann, body, map[string]string{"Content-Encoding": "gzip"})
			if r.status != http.StatusOK {
				t.Errorf("push: %d %+v %v", r.status, r.problem, r.err)
				return
			}
			res := r.resp.Results[0]
			applied += 1500 - len(res.Ops)
			for _, o := range res.Ops {
				if o.Code != api.CodeRecordTooLarge {
					t.Errorf("op %+v", o)
					return
				}
				tooLarge++
			}
		}
	})
	t.Logf("%d notes applied, %d refused record_too_large", applied, tooLarge)
	if applied == 0 || tooLarge == 0 || applied*10000 > 2<<20 {
		t.Errorf("%d applied, %d refused", applied, tooLarge)
	}
	// Every reply stays far below what a device decodes.
	pullAll := func(d *device) (pages, maxReply int) {
		for {
			r := syncChild(client, ch.url, d, encode(t, d.request()), nil)
			if r.status != http.StatusOK {
				t.Fatalf("pull: %d %+v %v", r.status, r.problem, r.err)
			}
			pages++
			maxReply = max(maxReply, r.bytes)
			if !r.resp.More {
				return pages, maxReply
			}
		}
	}
	for name, d := range map[string]*device{"tablet in sync": bea, "new tablet": fresh} {
		pages, maxReply := pullAll(d)
		t.Logf("%s: %d pages, largest reply %d KiB", name, pages, maxReply>>10)
		if maxReply > 8<<20 {
			t.Errorf("%s: reply of %d bytes", name, maxReply)
		}
	}
	get := func(path string) int {
		req, _ := http.NewRequest(http.MethodGet, ch.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+cat.access)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
		}
		return len(b)
	}
	rec, hist := get("/v1/teams/wigan/records/people/big"), get("/v1/teams/wigan/records/people/big/history")
	t.Logf("review GET %d KiB, history GET %d KiB", rec>>10, hist>>10)
	if rec > 8<<20 || hist > 16<<20 {
		t.Errorf("review GET %d bytes, history %d bytes", rec, hist)
	}
}

// TestAbuseMemory (issue 9, attack 7): 32 concurrent maximal sync bodies
// (gzip, each decoding to nearly 16 MiB of ops) from 16 devices. The
// memory budgets admit a few at a time; the rest wait or get 503. The
// server's peak RSS stays under the documented ceiling, and another
// team's syncs go on.
func TestAbuseMemory(t *testing.T) {
	e := newEnv(t)
	devs := attackers(e, 16)
	ops := 60000 // 15 MiB decoded, nearly the 16 MiB cap
	if raceOn {
		ops = 2000 // 0.3 MiB: the race detector makes each op ten times slower
	}
	bodies := make([][]byte, 32)
	for i := range bodies {
		bodies[i] = gzipped(t, opsBody(t, devs[i%16], "ashton", ops, 190))
	}
	raw := opsBody(t, &device{e: e, id: crdt.NewReplicaID(), clock: crdt.NewClock(time.Now, time.Minute)}, "ashton", ops, 190)
	t.Logf("each body: %d KiB gzipped, %d MiB decoded", len(bodies[0])>>10, len(raw)>>20)
	v := newVictim(e)
	ch := startChild(t, e, abuseConfig{})
	v.url = ch.url
	_, base := ch.rss()
	got := map[int]int{}
	var mu gosync.Mutex
	v.during(t, 50, func() {
		var wg gosync.WaitGroup
		client := &http.Client{Timeout: 120 * time.Second}
		for i := range bodies {
			wg.Go(func() {
				d := *devs[i%16] // two bodies per device at once: each its own cursor
				r := syncChild(client, ch.url, &d, bodies[i], map[string]string{"Content-Encoding": "gzip"})
				mu.Lock()
				got[r.status]++
				mu.Unlock()
			})
		}
		wg.Wait()
	})
	_, peak := ch.rss()
	t.Logf("answers by status %v; server RSS peak %d MiB before the attack, %d MiB after (ceiling %d MiB)", got, base>>20, peak>>20, rssCeiling>>20)
	if got[http.StatusOK] == 0 {
		t.Errorf("no maximal body was served: %v", got)
	}
	if peak > rssCeiling {
		t.Errorf("server RSS peaked at %d MiB, over the %d MiB ceiling", peak>>20, rssCeiling>>20)
	}
}

// TestAbuseRecordID (issue 9, attack 5): ops naming records by IDs that
// JSON or a URL path cannot carry exactly (invalid UTF-8, a slash, too
// long) are refused with invalid_record_id, so no teammate pulls a record
// that erasure cannot name; a valid ID is applied, pulled and erased.
func TestAbuseRecordID(t *testing.T) {
	e := newEnv(t)
	ann, bea, dan := e.login("ann"), e.login("bea"), e.login("dan")
	v := newVictim(e)
	ch := startChild(t, e, abuseConfig{SmallMemory: true})
	v.url = ch.url
	client := &http.Client{Timeout: 60 * time.Second}
	bad := []string{"\xff\xfe", "a/b", strings.Repeat("x", 65), "p 1", ""}
	v.during(t, 50, func() {
		for range 20 {
			var ops []crdt.Op
			for _, id := range bad {
				ops = append(ops, crdt.Op{ID: crdt.OpID{Time: ann.clock.Now(), Replica: ann.id}, Team: "wigan", Collection: "people",
					Record: id, Field: "given_name", Kind: crdt.KindWrite, Value: crdt.MustValue("Edna")})
			}
			r := syncChild(client, ch.url, ann, encode(t, ann.request(ann.change(ops...))), nil)
			if r.status != http.StatusOK || len(r.resp.Results[0].Ops) != len(bad) {
				t.Errorf("push: %d %+v %v", r.status, r.resp, r.err)
				return
			}
			for _, o := range r.resp.Results[0].Ops {
				// The empty ID is malformed (invalid_op) before it is checked as an ID.
				if o.Code != api.CodeInvalidRecordID && !(o.Code == api.CodeInvalidOp && bad[o.Index] == "") {
					t.Errorf("op %d (%q): %+v", o.Index, bad[o.Index], o)
				}
			}
		}
	})
	ok := ann.change(ann.write("wigan", "people", "0190f6c2-1a2b-7c3d-8e4f-0123456789ab", "given_name", "Edna"))
	if r := syncChild(client, ch.url, ann, encode(t, ann.request(ok)), nil); r.status != http.StatusOK || len(r.resp.Results[0].Ops) != 0 {
		t.Fatalf("valid ID: %d %+v %v", r.status, r.resp, r.err)
	}
	// Bea pulls only the valid record, and an admin can erase it by name.
	r := syncChild(client, ch.url, bea, encode(t, bea.request()), nil)
	if r.status != http.StatusOK || len(r.resp.Snapshot) != 1 {
		t.Fatalf("bea's pull: %d %+v %v", r.status, r.resp, r.err)
	}
	body, _ := json.Marshal(map[string]any{"team": "wigan", "collection": "people", "id": "0190f6c2-1a2b-7c3d-8e4f-0123456789ab"})
	req, _ := http.NewRequest(http.MethodPost, ch.url+"/v1/admin/erasures", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+dan.access)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("erasure: %d %s", res.StatusCode, b)
	}
}
