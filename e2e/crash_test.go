package e2e

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
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

var crashSeed = flag.Uint64("crashseed", 0, "seed for TestServerSIGKILL's kill time (0: random; env DOORSTEP_CRASH_SEED also works)")

const childDataEnv = "DOORSTEP_E2E_CHILD_DATA"

// TestCrashChild is not a test: it is the server process that
// TestServerSIGKILL starts and kills. It serves the data directory named
// in the environment on a loopback port, which it prints, until killed.
func TestCrashChild(t *testing.T) {
	data := os.Getenv(childDataEnv)
	if data == "" {
		t.Skip("helper process for TestServerSIGKILL")
	}
	srv, err := server.New(context.Background(), server.Config{DataDir: data, BcryptCost: bcrypt.MinCost, SmallMemory: true,
		DeviceRate: -1, AuthRate: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OverlapCommits: true}) // killed while commits overlap too (sync/overlap.go)
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
	_ = srv.ServeListener(context.Background(), ln) // until SIGKILL
	os.Exit(0)
}

// TestServerSIGKILL kills a real server process with SIGKILL while devices
// push: after a restart every change the server acknowledged is there, and
// a change whose reply was lost is applied exactly once when resent.
func TestServerSIGKILL(t *testing.T) {
	seed := *crashSeed
	if s := os.Getenv("DOORSTEP_CRASH_SEED"); seed == 0 && s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay with -crashseed %d)", seed, seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	killAfter := time.Duration(100+rnd.IntN(400)) * time.Millisecond

	e := newEnv(t)
	devs := []*device{e.login("ann"), e.login("bea"), e.login("ann")}
	e.ts.Close()
	if err := e.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childDataEnv+"="+e.data)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var addr string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			addr = a
			break
		}
		if strings.HasPrefix(sc.Text(), "ERROR") {
			t.Fatal(sc.Text())
		}
	}
	if addr == "" {
		t.Fatal("child server did not start")
	}
	go io.Copy(io.Discard, out)
	url := "http://" + addr + "/v1/sync"

	var (
		mu      gosync.Mutex
		acked   = map[string]bool{}              // records whose change was acknowledged
		pending = make([]*api.Change, len(devs)) // per device: the change whose reply never came
		wg      gosync.WaitGroup
	)
	client := &http.Client{Timeout: 10 * time.Second}
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				rec := fmt.Sprintf("d%d-p%d", i, n)
				ch := d.change(d.write("wigan", "people", rec, "given_name", rec))
				res, err := client.Do(d.syncHTTPRequest(url, ch))
				if err != nil {
					pending[i] = &ch // killed: the outcome is unknown
					return
				}
				body, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil {
					pending[i] = &ch
					return
				}
				if res.StatusCode != http.StatusOK {
					t.Errorf("device %d: status %d", i, res.StatusCode)
					return
				}
				var resp api.SyncResponse
				if err := msgpack.Unmarshal(body, &resp); err != nil || resp.Results[0].Status != api.ChangeApplied {
					t.Errorf("device %d: %+v %v", i, resp.Results, err)
					return
				}
				d.cursor = resp.Cursor
				mu.Lock()
				acked[rec] = true
				mu.Unlock()
			}
		}()
	}
	time.Sleep(killAfter)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	cmd.Wait()
	if len(acked) == 0 {
		t.Fatalf("nothing acknowledged in %s", killAfter)
	}

	// Restart on the same data, in process.
	e2 := &env{t: t, data: e.data, users: e.users}
	srv, err := server.New(context.Background(), server.Config{DataDir: e.data, BcryptCost: bcrypt.MinCost, SmallMemory: true,
		DeviceRate: -1, AuthRate: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e2.srv = srv
	e2.ts = httptestServer(t, srv)
	defer func() { e2.ts.Close(); srv.Shutdown(context.Background()) }()
	for rec := range acked {
		r, err := srv.Engine().Record(context.Background(), callerOf(e, "cat"), api.RecordRef{Team: "wigan", Collection: "people", ID: rec})
		if err != nil {
			t.Fatalf("acknowledged record %s lost: %v", rec, err)
		}
		if w, ok := r.Field("given_name").Winner(); !ok || !bytes.Equal(w.Value, crdt.MustValue(rec)) {
			t.Fatalf("acknowledged record %s: %+v", rec, r.Field("given_name"))
		}
	}
	// Resend each change whose reply was lost: applied now, or found
	// applied already — exactly once either way.
	resent := 0
	for i, d := range devs {
		if pending[i] == nil {
			continue
		}
		resent++
		d.e = e2
		st, resp, p := e2.postSync(d.access, encode(t, d.request(*pending[i])), nil)
		if st != http.StatusOK {
			t.Fatalf("resend: %d %+v", st, p)
		}
		if s := resp.Results[0].Status; s != api.ChangeApplied && s != api.ChangeDuplicate {
			t.Fatalf("resent change: %+v", resp.Results[0])
		}
		// And resending again is a duplicate.
		_, resp, _ = e2.postSync(d.access, encode(t, &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: d.id, Clock: d.clock.Now(), Changes: []api.Change{*pending[i]}}), nil)
		if resp == nil || resp.Results[0].Status != api.ChangeDuplicate {
			t.Fatalf("second resend: %+v", resp)
		}
	}
	t.Logf("killed after %s: %d changes acknowledged and kept, %d lost replies resent exactly once", killAfter, len(acked), resent)
}
