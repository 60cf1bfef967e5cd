package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/server"
)

// A device killed with SIGKILL right after it stored a sync reply (its
// acknowledgements, or a pulled page and its cursor) must lose none of
// it, and go on to converge with nothing lost and nothing applied twice.

const (
	deviceKillDirEnv   = "DOORSTEP_E2E_DEVICE_KILL_DIR"
	deviceKillURLEnv   = "DOORSTEP_E2E_DEVICE_KILL_URL"
	deviceKillRoundEnv = "DOORSTEP_E2E_DEVICE_KILL_ROUND"
)

// deviceKillOpts are the replica options of the killed device and of the
// parent that reopens it: one record (four ops) a change, two changes a
// request, pages of five records, so that a push and a pull take many
// rounds.
func deviceKillOpts(dir, url string) client.Options {
	return client.Options{Dir: dir, EncryptionKey: sdkKey, ServerURL: url, DeviceName: "killed tablet",
		HTTPClient: &http.Client{Timeout: 20 * time.Second}, MaxRetryWait: 2 * time.Second,
		MaxOpsPerChange: 4, MaxChangesPerRequest: 2, PullLimit: 5}
}

// TestDeviceKillChild is not a test: it is the device process that
// TestDeviceKilledAfterStoredReply starts. It opens the replica in the
// directory the environment names (signed in by the parent), syncs, and
// kills itself with SIGKILL right after the reply of the round the
// environment names is stored, printing what it holds then.
func TestDeviceKillChild(t *testing.T) {
	dir := os.Getenv(deviceKillDirEnv)
	if dir == "" {
		t.Skip("helper process for TestDeviceKilledAfterStoredReply")
	}
	round, _ := strconv.Atoi(os.Getenv(deviceKillRoundEnv))
	opts := deviceKillOpts(dir, os.Getenv(deviceKillURLEnv))
	var r *client.Replica
	opts.OnProgress = func(p client.Progress) {
		if p.Round < round {
			return
		}
		list, err := r.List(context.Background(), sdkTeam, "people")
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		fmt.Printf("STORED round=%d pending=%d records=%d\n", p.Round, p.Pending, len(list))
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // until the signal lands
	}
	var err error
	if r, err = client.Open(context.Background(), opts); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	_, err = r.Sync(context.Background())
	fmt.Println("ERROR sync ended before the kill:", err)
	os.Exit(1)
}

// runKilledDevice runs TestDeviceKillChild on the replica in dir until it
// kills itself after round, and returns the pending ops and records it
// reported holding then.
func runKilledDevice(t *testing.T, dir, url string, round int) (pending, records int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDeviceKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), deviceKillDirEnv+"="+dir, deviceKillURLEnv+"="+url, deviceKillRoundEnv+"="+strconv.Itoa(round))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stored string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "STORED") || strings.HasPrefix(line, "ERROR") {
			stored = line
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v, last line %q; want killed by SIGKILL", err, stored)
	}
	var r int
	if _, err := fmt.Sscanf(stored, "STORED round=%d pending=%d records=%d", &r, &pending, &records); err != nil {
		t.Fatalf("child said %q: %v", stored, err)
	}
	return pending, records
}

// TestDeviceKilledAfterStoredReply kills a device with SIGKILL right after
// it stored the reply of a push round, and another right after it stored
// a pulled page: reopened, each holds exactly what it held at
// the kill (its acknowledgements, pages and cursor), and syncing again
// converges with every record on both and every op pulled exactly once.
func TestDeviceKilledAfterStoredReply(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil, func(c *server.Config) { c.DeviceRate = -1 })
	const people = 30
	// A watcher bootstrapped before the push, to count the ops the
	// server logs for it: a change applied twice would be pulled twice.
	watcher := e.device("bea", "", nil)
	sdkMustSync(t, watcher)

	pushDir := t.TempDir()
	ann := e.device("ann", pushDir, func(o *client.Options) { *o = deviceKillOpts(pushDir, e.url) })
	for i := range people {
		if _, err := ann.Create(ctx, client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson(fmt.Sprintf("K%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	total := ann.Status().Pending
	if err := ann.Close(); err != nil {
		t.Fatal(err)
	}

	// Killed in the push, after its third reply (push-only or not) was
	// stored.
	pending, _ := runKilledDevice(t, pushDir, e.url, 3)
	if pending <= 0 || pending >= total {
		t.Fatalf("child had %d of %d ops pending at the kill; want some pushed, some not", pending, total)
	}
	ann = e.open(pushDir, func(o *client.Options) { *o = deviceKillOpts(pushDir, e.url) })
	if got := ann.Status().Pending; got != pending {
		t.Fatalf("reopened after kill -9: %d ops pending, the child had %d: a stored reply was lost", got, pending)
	}
	sdkMustSync(t, ann)
	if got := ann.Status().Pending; got != 0 {
		t.Fatalf("after sync: %d ops pending", got)
	}
	res := sdkMustSync(t, watcher)
	if res.PulledOps != total {
		t.Fatalf("watcher pulled %d ops, want %d: each exactly once", res.PulledOps, total)
	}
	want := sdkGivenNames(t, watcher)
	if len(want) != people {
		t.Fatalf("watcher holds %d people, want %d", len(want), people)
	}

	// Killed in a fresh device's bootstrap, after its fourth page (of
	// five records) was stored with its cursor.
	pullDir := t.TempDir()
	cal := e.device("cal", pullDir, func(o *client.Options) { *o = deviceKillOpts(pullDir, e.url) })
	if err := cal.Close(); err != nil {
		t.Fatal(err)
	}
	_, records := runKilledDevice(t, pullDir, e.url, 4)
	if records <= 0 || records >= people {
		t.Fatalf("child held %d of %d records at the kill; want a part", records, people)
	}
	cal = e.open(pullDir, func(o *client.Options) { *o = deviceKillOpts(pullDir, e.url) })
	if got := len(sdkGivenNames(t, cal)); got != records {
		t.Fatalf("reopened after kill -9: %d records, the child held %d: a stored page was lost", got, records)
	}
	sdkMustSync(t, cal)
	if got := sdkGivenNames(t, cal); !slices.Equal(got, want) {
		t.Fatalf("after sync the device holds %v, the watcher %v", got, want)
	}
	if got := sdkGivenNames(t, ann); !slices.Equal(got, want) {
		t.Fatalf("the pushing device holds %v, the watcher %v", got, want)
	}
}

// sdkGivenNames returns the sorted given names of r's people.
func sdkGivenNames(t *testing.T, r *client.Replica) []string {
	t.Helper()
	list, err := r.List(context.Background(), sdkTeam, "people")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rec := range list {
		out = append(out, fmt.Sprint(rec.Fields["given_name"].Value))
	}
	slices.Sort(out)
	return out
}
