package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	gosync "sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/crypto/bcrypt"
)

// TestGracefulShutdownKeepsAcknowledged stops a server while devices are
// syncing: no request may fail with a server error, and after a restart on
// the same data every change the server acknowledged is there.
func TestGracefulShutdownKeepsAcknowledged(t *testing.T) {
	e := newEnv(t) // for its seeded users; its httptest server stays unused
	ctx := context.Background()
	devs := []*device{e.login("ann"), e.login("bea"), e.login("ann"), e.login("bea")}
	// Hand the data directory over to a second server that Serve runs.
	e.ts.Close()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{DataDir: e.data, BcryptCost: bcrypt.MinCost, SmallMemory: true, DeviceRate: -1, AuthRate: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.ServeListener(sctx, ln) }()
	url := "http://" + ln.Addr().String() + "/v1/sync"

	var (
		mu    gosync.Mutex
		acked = map[string]string{} // record → value acknowledged
		wg    gosync.WaitGroup
	)
	client := &http.Client{Timeout: 30 * time.Second}
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				rec := fmt.Sprintf("d%d-p%d", i, n)
				op := d.write("wigan", "people", rec, "given_name", rec)
				ch := d.change(op)
				res, err := client.Do(d.syncHTTPRequest(url, ch))
				if err != nil {
					return // the server stopped listening
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					t.Errorf("device %d: status %d during shutdown: %x", i, res.StatusCode, body)
					return
				}
				var resp api.SyncResponse
				if err := msgpack.Unmarshal(body, &resp); err != nil {
					t.Errorf("device %d: %v", i, err)
					return
				}
				if r := resp.Results[0]; r.Status != api.ChangeApplied {
					t.Errorf("device %d: %+v", i, r)
					return
				}
				d.cursor = resp.Cursor
				mu.Lock()
				acked[rec] = rec
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged before shutdown")
	}

	// Restart on the same data; a new device bootstraps and must see every
	// acknowledged change.
	srv2, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Shutdown(ctx)
	cat := srv2.Engine()
	for rec, want := range acked {
		r, err := cat.Record(ctx, callerOf(e, "cat"), api.RecordRef{Team: "wigan", Collection: "people", ID: rec})
		if err != nil {
			t.Fatalf("acknowledged record %s: %v", rec, err)
		}
		w, ok := r.Field("given_name").Winner()
		if !ok || string(w.Value) != string(crdt.MustValue(want)) {
			t.Fatalf("record %s: %+v", rec, r.Field("given_name"))
		}
	}
	t.Logf("%d acknowledged changes survived the shutdown", len(acked))
}
