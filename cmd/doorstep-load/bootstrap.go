package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	gosync "sync"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
	dsync "github.com/doorstep-health/doorstep/sync"
	"golang.org/x/crypto/bcrypt"
)

// buildTeam writes people records of fields register fields each into
// team through the engine (8 pushers, no schema validation).
func buildTeam(ctx context.Context, eng *dsync.Engine, team string, people, fields int) error {
	const pushers = 8
	var wg gosync.WaitGroup
	errs := make([]error, pushers)
	base := crdt.MakeTimestamp(time.Now().UnixMilli(), 0)
	value := crdt.MustValue("a typical short answer")
	for p := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dsync.Caller{User: "builder", Replica: crdt.NewReplicaID(), Teams: []string{team}}
			seq := uint64(0)
			for i := p; i < people && ctx.Err() == nil; i += pushers {
				seq++
				ch := api.Change{Seq: seq, Ops: make([]crdt.Op, fields)}
				for k := range ch.Ops {
					ch.Ops[k] = crdt.Op{ID: crdt.OpID{Time: base + crdt.Timestamp(i*fields+k), Replica: c.Replica},
						Team: team, Collection: "people", Record: fmt.Sprintf("person-%05d", i), Field: fmt.Sprintf("field_%03d", k),
						Kind: crdt.KindWrite, Value: value}
				}
				if _, err := eng.Push(ctx, c, []api.Change{ch}); err != nil {
					errs[p] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// BootstrapResult is what one bootstrap over HTTP measured.
type BootstrapResult struct {
	People, Fields int
	Built          time.Duration // writing the team's records (through the engine, not timed below)
	Elapsed        time.Duration // login excluded: first sync to the page without More
	Pages, Records int
	BytesDown      int64 // reply bytes as received (gzipped)
}

// Bootstrap fills one team with people records of fields register fields
// each (through the engine, without schema validation, like
// sync.BenchmarkBootstrap), then times a new device bootstrapping the team
// over loopback HTTP: snapshot pages until it follows the log.
func Bootstrap(ctx context.Context, dir string, people, fields int) (BootstrapResult, error) {
	res := BootstrapResult{People: people, Fields: fields}
	tmp, err := os.MkdirTemp(dir, "doorstep-bootstrap-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	srv, err := server.New(ctx, server.Config{
		DataDir: tmp, BcryptCost: bcrypt.MinCost, DeviceRate: -1, AuthRate: -1, NoSchema: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return res, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Shutdown(ctx)
		return res, err
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.ServeListener(sctx, ln) }()
	defer func() {
		cancel()
		<-served
	}()
	if _, err := srv.Auth().CreateTeam(ctx, "team-0", "Team 0"); err != nil {
		return res, err
	}
	start := time.Now()
	if err := buildTeam(ctx, srv.Engine(), "team-0", people, fields); err != nil {
		return res, err
	}
	res.Built = time.Since(start)
	if _, err := srv.Auth().CreateUser(ctx, auth.NewUser{Username: "newcomer", Password: loadPassword, Role: api.RoleLinkWorker, Teams: []string{"team-0"}}); err != nil {
		return res, err
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	d := &device{team: "team-0", user: "newcomer", base: "http://" + ln.Addr().String(), client: &http.Client{Transport: tr, Timeout: 2 * time.Minute},
		id: crdt.NewReplicaID(), clock: crdt.NewClock(time.Now, time.Minute), last: map[string]crdt.OpID{}}
	if err := d.login(); err != nil {
		return res, err
	}
	start = time.Now()
	for more := true; more && res.Pages < maxBootstrapPages; {
		resp, _, err := d.roundTrip(ctx, false)
		if err != nil {
			return res, err
		}
		res.Pages++
		// Decode every record as a device does (bounded and validated),
		// so the time includes the client's decoding.
		for i, raw := range resp.Snapshot {
			if _, err := raw.Record(); err != nil {
				return res, fmt.Errorf("bootstrap page %d record %d: %w", res.Pages, i, err)
			}
		}
		res.Records += len(resp.Snapshot)
		res.BytesDown += d.lastDown
		more = resp.More
	}
	res.Elapsed = time.Since(start)
	if res.Records != people {
		return res, fmt.Errorf("bootstrap: %d records, want %d", res.Records, people)
	}
	return res, nil
}
