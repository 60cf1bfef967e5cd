package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/crypto/bcrypt"
)

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

// Config is one load run.
type Config struct {
	Devices   int           // concurrent devices
	Duration  time.Duration // measured time, after login and bootstrap
	Ops       int           // field ops per push
	PullLimit int           // pull page limit
	TeamSize  int           // devices per team
	Dir       string        // data directory; "" means a temporary one
	MaxSyncs  int           // server.Config.MaxConcurrentSyncs; 0 means its default
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
	Errors     int
}

const header = "| devices | round trips | round trips/s | pushed ops/s | pulled items/s | p50 | p99 | max | request bytes/op | errors |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"

// Row formats r as a row of the markdown table under header.
func (r Result) Row() string {
	secs := r.Elapsed.Seconds()
	perOp := 0.0
	if r.OpsPushed > 0 {
		perOp = float64(r.BytesUp) / float64(r.OpsPushed)
	}
	return fmt.Sprintf("| %d | %d | %.1f | %.0f | %.0f | %s | %s | %s | %.1f | %d |",
		r.Devices, r.RoundTrips, float64(r.RoundTrips)/secs, float64(r.OpsPushed)/secs, float64(r.Pulled)/secs,
		r.P50.Round(100*time.Microsecond), r.P99.Round(100*time.Microsecond), r.Max.Round(100*time.Microsecond), perOp, r.Errors)
}

// fields are free-text people fields of the default schema; the load
// writes them round-robin.
var fields = []string{"given_name", "family_name", "preferred_name", "phone", "email",
	"preferred_language", "temporary_address", "communication_needs", "household_notes", "risk_notes"}

const loadPassword = "load-test-password"

// Run starts a server on loopback, runs cfg.Devices devices for
// cfg.Duration and shuts the server down.
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
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.Devices, MaxConnsPerHost: cfg.Devices, DisableCompression: false}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	devs := make([]*device, cfg.Devices)
	for i := range devs {
		team := fmt.Sprintf("team-%d", i/cfg.TeamSize)
		name := fmt.Sprintf("worker-%d", i)
		if _, err := srv.Auth().CreateUser(ctx, auth.NewUser{Username: name, Password: loadPassword, Role: api.RoleLinkWorker, Teams: []string{team}}); err != nil {
			return Result{}, err
		}
		devs[i] = &device{idx: i, team: team, user: name, base: base, client: client, cfg: cfg,
			id: crdt.NewReplicaID(), clock: crdt.NewClock(time.Now, time.Minute), last: map[string]crdt.OpID{}}
	}
	// Log in and bootstrap, unmeasured.
	if err := each(devs, func(d *device) error {
		if err := d.login(); err != nil {
			return err
		}
		for more := true; more; {
			resp, _, err := d.roundTrip(false)
			if err != nil {
				return err
			}
			more = resp.More
		}
		return nil
	}); err != nil {
		return Result{}, err
	}
	// Measured: round trips until the deadline.
	var (
		mu        gosync.Mutex
		latencies []time.Duration
		res       = Result{Devices: cfg.Devices}
		errs      atomic.Int64
	)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	err = each(devs, func(d *device) error {
		var lat []time.Duration
		var ops, pulled int
		var up int64
		for time.Now().Before(deadline) && ctx.Err() == nil {
			t0 := time.Now()
			resp, n, err := d.roundTrip(true)
			if err != nil {
				errs.Add(1)
				return err
			}
			lat = append(lat, time.Since(t0))
			ops += cfg.Ops
			up += n
			pulled += len(resp.Snapshot)
			for _, c := range resp.Changes {
				pulled += len(c.Ops)
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
	return res, nil
}

// each runs fn for every device concurrently and returns the first error.
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
	idx              int
	team, user, base string
	client           *http.Client
	cfg              Config
	id               crdt.ReplicaID
	clock            *crdt.Clock
	access           string
	seq              uint64
	cursor           []byte
	round            int
	last             map[string]crdt.OpID // record/field → last write
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
// ten fields each.
func (d *device) change() api.Change {
	d.seq++
	d.round++
	ops := make([]crdt.Op, 0, d.cfg.Ops)
	for i := 0; i < d.cfg.Ops; i++ {
		rec := fmt.Sprintf("d%d-p%d", d.idx, i/len(fields))
		field := fields[i%len(fields)]
		id := crdt.OpID{Time: d.clock.Now(), Replica: d.id}
		op := crdt.Op{ID: id, Team: d.team, Collection: "people", Record: rec, Field: field, Kind: crdt.KindWrite,
			Value: crdt.MustValue(fmt.Sprintf("%s round %d", field, d.round))}
		if prev, ok := d.last[rec+"/"+field]; ok {
			op.Pred = []crdt.OpID{prev}
		}
		d.last[rec+"/"+field] = id
		ops = append(ops, op)
	}
	return api.Change{Seq: d.seq, Ops: ops}
}

// roundTrip does one POST /v1/sync, with a push if push is set, and returns
// the reply and the request body size.
func (d *device) roundTrip(push bool) (*api.SyncResponse, int64, error) {
	req := api.SyncRequest{Protocol: api.ProtocolVersion, Replica: d.id, Clock: d.clock.Now(), Cursor: d.cursor, PullLimit: d.cfg.PullLimit}
	if push {
		req.Changes = []api.Change{d.change()}
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(&req); err != nil {
		return nil, 0, err
	}
	n := int64(buf.Len())
	hr, err := http.NewRequest(http.MethodPost, d.base+"/v1/sync", &buf)
	if err != nil {
		return nil, 0, err
	}
	hr.Header.Set("Content-Type", api.ContentType)
	hr.Header.Set("Authorization", "Bearer "+d.access)
	res, err := d.client.Do(hr)
	if err != nil {
		return nil, 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, 0, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("sync %s: %d %x", d.user, res.StatusCode, b)
	}
	var resp api.SyncResponse
	if err := msgpack.Unmarshal(b, &resp); err != nil {
		return nil, 0, err
	}
	for _, r := range resp.Results {
		if r.Status == api.ChangeRefused || len(r.Ops) > 0 {
			return nil, 0, fmt.Errorf("sync %s: change %d not applied cleanly: %+v", d.user, r.Seq, r)
		}
	}
	if err := d.clock.Update(resp.Clock); err != nil {
		return nil, 0, err
	}
	d.cursor = resp.Cursor
	return &resp, n, nil
}
