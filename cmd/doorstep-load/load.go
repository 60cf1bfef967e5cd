package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
	dsync "github.com/doorstep-health/doorstep/sync"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/crypto/bcrypt"
)

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

// Config is one load run.
type Config struct {
	Devices   int           // concurrent devices
	Duration  time.Duration // measured time, after login and bootstrap; a hard cap
	Rounds    int           // round trips per device; 0 means until Duration ends
	Ops       int           // field ops per push
	PullLimit int           // pull page limit
	TeamSize  int           // devices per team; teams never share records
	Think     time.Duration // mean pause before each of a device's round trips (uniform in [0, 2×Think]); 0: none
	Fresh     bool          // every push writes new records (history and record count grow) instead of overwriting
	Dir       string        // data directory; "" means a temporary one
	MaxSyncs  int           // server.Config.MaxConcurrentSyncs; 0 means its default
	Verify    bool          // after the run, check every acknowledged write on the server
	// Sample, if positive, samples memory (Go heap in use, process RSS)
	// every Sample during the measured time into Result.Memory.
	Sample time.Duration
	Seed   uint64 // seeds the think-time jitter
	// HeapProfile, if set, is where a heap profile is written after the
	// measured phase, while the server still runs.
	HeapProfile string
}

// Result is what one run measured.
type Result struct {
	Devices    int
	RoundTrips int
	Elapsed    time.Duration
	OpsPushed  int
	Pulled     int // ops and snapshot records pulled
	P50, P99   time.Duration
	Max        time.Duration
	BytesUp    int64 // request bytes of the measured round trips
	Errors     int   // failed round trips (each retried with the same change)
	// Verified is the number of acknowledged (record, field) writes found
	// on the server after the run; Missing those not found. -1 when not
	// verified.
	Verified, Missing int
	Memory            []MemSample
}

// MemSample is one memory reading during a run.
type MemSample struct {
	At        time.Duration
	OpsStored int64  // ops acknowledged so far in this run, plus bootstrap
	HeapInuse uint64 // runtime.MemStats.HeapInuse, garbage included
	HeapLive  uint64 // runtime.MemStats.HeapAlloc right after a forced GC
	RSS       uint64 // VmRSS of the whole process (server and load generator)
	RSSAnon   uint64 // RssAnon: RSS less file-backed pages (Badger's mmapped tables)
}

const header = "| devices | round trips | round trips/s | pushed ops/s | pulled items/s | p50 | p99 | max | request bytes/op | errors | verified |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"

// Row formats r as a row of the markdown table under header.
func (r Result) Row() string {
	secs := r.Elapsed.Seconds()
	perOp := 0.0
	if r.OpsPushed > 0 {
		perOp = float64(r.BytesUp) / float64(r.OpsPushed)
	}
	ver := "not checked"
	if r.Verified >= 0 {
		ver = fmt.Sprintf("%d writes, %d missing", r.Verified, r.Missing)
	}
	return fmt.Sprintf("| %d | %d | %.1f | %.0f | %.0f | %s | %s | %s | %.1f | %d | %s |",
		r.Devices, r.RoundTrips, float64(r.RoundTrips)/secs, float64(r.OpsPushed)/secs, float64(r.Pulled)/secs,
		r.P50.Round(100*time.Microsecond), r.P99.Round(100*time.Microsecond), r.Max.Round(100*time.Microsecond), perOp, r.Errors, ver)
}

// fields are free-text people fields of the default schema; the load
// writes them round-robin.
var fields = []string{"given_name", "family_name", "preferred_name", "phone", "email",
	"preferred_language", "temporary_address", "communication_needs", "household_notes", "risk_notes"}

const loadPassword = "load-test-password"

// maxBootstrapPages bounds a device's bootstrap loop.
const maxBootstrapPages = 10_000

// maxRetries bounds a device's consecutive failed round trips before it
// gives up.
const maxRetries = 20

// Run starts a server on loopback, runs cfg.Devices devices for
// cfg.Duration (or cfg.Rounds round trips each) and shuts the server down.
func Run(ctx context.Context, cfg Config) (Result, error) {
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "doorstep-load-")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(d)
		dir = d
	} else {
		dir = fmt.Sprintf("%s/run-%d-%d", dir, cfg.Devices, time.Now().UnixNano())
	}
	if cfg.TeamSize < 1 {
		cfg.TeamSize = 1
	}
	srv, err := server.New(ctx, server.Config{
		DataDir: dir, BcryptCost: bcrypt.MinCost, DeviceRate: -1, AuthRate: -1, MaxConcurrentSyncs: cfg.MaxSyncs,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return Result{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Shutdown(ctx)
		return Result{}, err
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.ServeListener(sctx, ln) }()
	defer func() {
		cancel()
		<-served
	}()
	base := "http://" + ln.Addr().String()

	teams := (cfg.Devices + cfg.TeamSize - 1) / cfg.TeamSize
	for t := 0; t < teams; t++ {
		if _, err := srv.Auth().CreateTeam(ctx, fmt.Sprintf("team-%d", t), fmt.Sprintf("Team %d", t)); err != nil {
			return Result{}, err
		}
	}
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.Devices, MaxConnsPerHost: cfg.Devices}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	devs := make([]*device, cfg.Devices)
	for i := range devs {
		team := fmt.Sprintf("team-%d", i/cfg.TeamSize)
		name := fmt.Sprintf("worker-%d", i)
		u, err := srv.Auth().CreateUser(ctx, auth.NewUser{Username: name, Password: loadPassword, Role: api.RoleLinkWorker, Teams: []string{team}})
		if err != nil {
			return Result{}, err
		}
		devs[i] = &device{idx: i, team: team, user: name, userID: u.ID, base: base, client: client, cfg: cfg,
			id: crdt.NewReplicaID(), clock: crdt.NewClock(time.Now, time.Minute), last: map[string]crdt.OpID{},
			rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i)))}
		if cfg.Verify {
			devs[i].acked = map[int]crdt.OpID{}
		}
	}
	// Log in and bootstrap, unmeasured.
	if err := each(devs, func(d *device) error {
		if err := d.login(); err != nil {
			return err
		}
		more := true
		for page := 0; more && page < maxBootstrapPages; page++ {
			resp, _, err := d.roundTrip(ctx, false)
			if err != nil {
				return err
			}
			more = resp.More
		}
		return nil
	}); err != nil {
		return Result{}, err
	}
	// Measured: round trips until the deadline or cfg.Rounds each.
	var (
		mu        gosync.Mutex
		latencies []time.Duration
		res       = Result{Devices: cfg.Devices, Verified: -1}
		errs      atomic.Int64
		stored    atomic.Int64
	)
	start := time.Now()
	mctx, mcancel := context.WithDeadline(ctx, start.Add(cfg.Duration))
	defer mcancel()
	sampled := make(chan []MemSample, 1)
	if cfg.Sample > 0 {
		go func() { sampled <- sampleMemory(mctx, start, cfg.Sample, &stored) }()
	}
	err = each(devs, func(d *device) error {
		var lat []time.Duration
		var ops, pulled int
		var up int64
		fails := 0
		for round := 0; (cfg.Rounds == 0 || round < cfg.Rounds) && mctx.Err() == nil; {
			if cfg.Think > 0 && fails == 0 {
				// Devices pause before every round trip, the first too,
				// so that they do not all start at the same instant.
				pause := time.Duration(d.rng.Int64N(int64(2 * cfg.Think)))
				select {
				case <-mctx.Done():
				case <-time.After(pause):
				}
				if mctx.Err() != nil {
					break
				}
			}
			t0 := time.Now()
			resp, n, err := d.roundTrip(mctx, true)
			if err != nil {
				if mctx.Err() != nil {
					break // the run ended during the round trip
				}
				errs.Add(1)
				if fails++; fails > maxRetries {
					return fmt.Errorf("device %d: %d failures in a row: %w", d.idx, fails, err)
				}
				time.Sleep(50 * time.Millisecond)
				continue // retry the same change, as a tablet would
			}
			fails = 0
			round++
			lat = append(lat, time.Since(t0))
			ops += cfg.Ops
			stored.Add(int64(cfg.Ops))
			up += n
			pulled += len(resp.Snapshot)
			for _, c := range resp.Changes {
				pulled += c.Ops.Len()
			}
		}
		mu.Lock()
		latencies = append(latencies, lat...)
		res.OpsPushed += ops
		res.Pulled += pulled
		res.BytesUp += up
		mu.Unlock()
		return nil
	})
	res.Elapsed = time.Since(start)
	mcancel()
	if cfg.HeapProfile != "" {
		if err := writeHeapProfile(cfg.HeapProfile); err != nil {
			return res, err
		}
	}
	if cfg.Sample > 0 {
		res.Memory = <-sampled
	}
	res.Errors = int(errs.Load())
	if err != nil {
		return res, err
	}
	slices.Sort(latencies)
	res.RoundTrips = len(latencies)
	if n := len(latencies); n > 0 {
		res.P50 = latencies[n/2]
		res.P99 = latencies[min(n-1, n*99/100)]
		res.Max = latencies[n-1]
	}
	if cfg.Verify {
		res.Verified, res.Missing, err = verify(ctx, srv.Engine(), devs)
	}
	return res, err
}

// verify checks, for every (record, field) a device wrote and had
// acknowledged, that the server's state holds that write or a later write
// of the same device (a change sent but whose reply was lost may have been
// applied). Each device writes only its own records, so nothing else can
// overwrite them.
func verify(ctx context.Context, e *dsync.Engine, devs []*device) (found, missing int, err error) {
	for _, d := range devs {
		c := dsync.Caller{User: d.userID, Teams: []string{d.team}}
		recs := map[string]*crdt.Record{}
		for slot, id := range d.acked {
			rec, field := fmt.Sprintf("d%d-p%d", d.idx, slot/len(fields)), fields[slot%len(fields)]
			r, ok := recs[rec]
			if !ok {
				r, err = e.Record(ctx, c, api.RecordRef{Team: d.team, Collection: "people", ID: rec})
				if err != nil && !errors.Is(err, dsync.ErrNotFound) {
					return found, missing, fmt.Errorf("verify %s: %w", rec, err)
				}
				recs[rec] = r
			}
			if r == nil {
				missing++
				continue
			}
			w, ok := r.Field(field).Winner()
			if ok && w.ID.Replica == d.id && w.ID.Compare(id) >= 0 {
				found++
			} else {
				missing++
			}
		}
	}
	return found, missing, nil
}

// sampleMemory reads the Go heap in use and the process RSS every interval
// until ctx ends.
func sampleMemory(ctx context.Context, start time.Time, every time.Duration, stored *atomic.Int64) []MemSample {
	var out []MemSample
	t := time.NewTicker(every)
	defer t.Stop()
	read := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		smp := MemSample{At: time.Since(start), OpsStored: stored.Load(), HeapInuse: ms.HeapInuse}
		smp.RSS, smp.RSSAnon = rss()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		smp.HeapLive = ms.HeapAlloc
		out = append(out, smp)
	}
	read()
	for {
		select {
		case <-ctx.Done():
			read()
			return out
		case <-t.C:
			read()
		}
	}
}

// rss returns the process's resident set size and its anonymous part
// from /proc/self/status, or zeros.
func rss() (total, anon uint64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		var kb uint64
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			fmt.Sscan(string(v), &kb)
			total = kb << 10
		} else if v, ok := bytes.CutPrefix(line, []byte("RssAnon:")); ok {
			fmt.Sscan(string(v), &kb)
			anon = kb << 10
		}
	}
	return total, anon
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

// each runs fn for every device concurrently and returns the errors joined.
func each(devs []*device, fn func(*device) error) error {
	var wg gosync.WaitGroup
	errs := make([]error, len(devs))
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(d)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// device is one simulated tablet. It writes only its own records, so the
// pred of each write is its own previous write of the field.
type device struct {
	idx                      int
	team, user, userID, base string
	client                   *http.Client
	cfg                      Config
	id                       crdt.ReplicaID
	clock                    *crdt.Clock
	rng                      *rand.Rand
	access                   string
	seq                      uint64
	cursor                   []byte
	round                    int
	lastDown                 int64                // reply bytes of the last round trip, as received
	pending                  *api.Change          // sent but not yet acknowledged
	pendingKeys              []int                // slot (record number × fields + field) of each pending op
	last                     map[string]crdt.OpID // record/field → last write
	acked                    map[int]crdt.OpID    // slot → last acknowledged write (Verify)
}

func (d *device) login() error {
	body, _ := json.Marshal(api.LoginRequest{Username: d.user, Password: loadPassword, DeviceID: d.id.String(), DeviceName: d.user})
	res, err := d.client.Post(d.base+"/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("login %s: %d %s", d.user, res.StatusCode, b)
	}
	var tr api.TokenResponse
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil {
		return err
	}
	d.access = tr.AccessToken
	return nil
}

// change builds the next change: Ops register writes spread over records of
// ten fields each (new records every round if cfg.Fresh).
func (d *device) change() api.Change {
	d.seq++
	d.round++
	ops := make([]crdt.Op, 0, d.cfg.Ops)
	d.pendingKeys = d.pendingKeys[:0]
	perRound := (d.cfg.Ops + len(fields) - 1) / len(fields)
	for i := 0; i < d.cfg.Ops; i++ {
		n := i / len(fields)
		if d.cfg.Fresh {
			n += (d.round - 1) * perRound
		}
		rec := fmt.Sprintf("d%d-p%d", d.idx, n)
		field := fields[i%len(fields)]
		id := crdt.OpID{Time: d.clock.Now(), Replica: d.id}
		op := crdt.Op{ID: id, Team: d.team, Collection: "people", Record: rec, Field: field, Kind: crdt.KindWrite,
			Value: crdt.MustValue(fmt.Sprintf("%s round %d", field, d.round))}
		if !d.cfg.Fresh {
			if prev, ok := d.last[rec+"/"+field]; ok {
				op.Pred = []crdt.OpID{prev}
			}
			d.last[rec+"/"+field] = id
		}
		ops = append(ops, op)
		d.pendingKeys = append(d.pendingKeys, n*len(fields)+i%len(fields))
	}
	return api.Change{Seq: d.seq, Ops: ops}
}

// roundTrip does one POST /v1/sync, with a push if push is set (the pending
// change if one is unacknowledged, else a new one), and returns the reply
// and the request body size.
func (d *device) roundTrip(ctx context.Context, push bool) (*api.SyncResponse, int64, error) {
	req := api.SyncRequest{Protocol: api.ProtocolVersion, Replica: d.id, Clock: d.clock.Now(), Cursor: d.cursor, PullLimit: d.cfg.PullLimit}
	if push {
		if d.pending == nil {
			ch := d.change()
			d.pending = &ch
		}
		req.Changes = []api.Change{*d.pending}
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(&req); err != nil {
		return nil, 0, err
	}
	n := int64(buf.Len())
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/v1/sync", &buf)
	if err != nil {
		return nil, 0, err
	}
	hr.Header.Set("Content-Type", api.ContentType)
	hr.Header.Set("Authorization", "Bearer "+d.access)
	hr.Header.Set("Accept-Encoding", "gzip")
	res, err := d.client.Do(hr)
	if err != nil {
		return nil, 0, err
	}
	defer res.Body.Close()
	// Accept-Encoding was set by hand, so the transport leaves the body
	// compressed and its size on the wire can be counted.
	cr := &countingReader{r: res.Body}
	var body io.Reader = cr
	if res.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(cr)
		if err != nil {
			return nil, 0, err
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, 0, err
	}
	d.lastDown = cr.n
	if res.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("sync %s: %d %x", d.user, res.StatusCode, b)
	}
	var resp api.SyncResponse
	if err := msgpack.Unmarshal(b, &resp); err != nil {
		return nil, 0, err
	}
	// Pulled ops arrive as raw bytes: decode them as a device does, so the
	// round trip still includes client decoding.
	for i, c := range resp.Changes {
		if _, err := c.Ops.Ops(); err != nil {
			return nil, 0, fmt.Errorf("sync %s: pulled change %d: %w", d.user, i, err)
		}
	}
	for _, r := range resp.Results {
		if r.Status == api.ChangeRefused || len(r.Ops) > 0 {
			return nil, 0, fmt.Errorf("sync %s: change %d not applied cleanly: %+v", d.user, r.Seq, r)
		}
	}
	if push {
		if len(resp.Results) != 1 {
			return nil, 0, fmt.Errorf("sync %s: %d results for one change", d.user, len(resp.Results))
		}
		if d.acked != nil {
			for i, op := range d.pending.Ops {
				d.acked[d.pendingKeys[i]] = op.ID
			}
		}
		d.pending = nil
	}
	if err := d.clock.Update(resp.Clock); err != nil {
		return nil, 0, err
	}
	d.cursor = resp.Cursor
	return &resp, n, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
