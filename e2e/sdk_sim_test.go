package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/crdt"
)

var sdkSeedFlag = flag.Uint64("sdkseed", 0, "seed for the SDK's randomized end-to-end tests (0: random; env DOORSTEP_SDK_SEED also works)")

// `make test-long` passes -long to every package. Define it here unless
// another file of this package already has (package-level flag variables
// are initialized before init functions run).
func init() {
	if flag.Lookup("long") == nil {
		flag.Bool("long", false, "run the long forms of randomized tests")
	}
}

// sdkLong reports whether -long was given.
func sdkLong() bool {
	f := flag.Lookup("long")
	if f == nil {
		return false
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	b, _ := g.Get().(bool)
	return b
}

// sdkSeed returns the seed for a randomized test, printing it so that a
// failure replays with -args -sdkseed=N.
func sdkSeed(t *testing.T) uint64 {
	t.Helper()
	seed := *sdkSeedFlag
	if seed == 0 {
		if s, err := strconv.ParseUint(os.Getenv("DOORSTEP_SDK_SEED"), 10, 64); err == nil {
			seed = s
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./e2e -run '%s$' -args -sdkseed=%d)", seed, t.Name(), seed)
	return seed
}

// rand is a seeded generator.
type sdkRand struct{ r *mrand.Rand }

func newSDKRand(seed uint64) *sdkRand {
	return &sdkRand{mrand.New(mrand.NewPCG(seed, seed>>1^0xda3e39cb94b95bdb))}
}
func (r *sdkRand) intn(n int) int { return r.r.IntN(n) }

// TestSDKSimulation drives several devices through random edits, random
// connectivity and a proxy that loses and cuts requests and replies, then
// reconnects everyone and requires identical record states on every device.
func TestSDKSimulation(t *testing.T) {
	seed := sdkSeed(t)
	steps := 250
	switch {
	case testing.Short():
		steps = 80
	case sdkLong():
		steps = 3000
	}
	ctx := context.Background()
	// A simulated clock (one second per step) and record IDs drawn from
	// the seed make op order, and so every random choice, replay.
	clock := newSDKClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	e := newSDKEnv(t, clock.now)
	proxy := newSDKChaosProxy(t, e.http.URL, seed)
	e.url = proxy.srv.URL
	rng := newSDKRand(seed + 1)

	// Three link workers and a coordinator: only the coordinator settles
	// the clinical cfs conflicts; the server refuses or quarantines the
	// writes that race with them, and the tablets restate those records.
	users := []string{"ann", "bea", "cal", "cora"}
	devs := make([]*client.Replica, len(users))
	online := make([]bool, len(users))
	for i, u := range users {
		devs[i] = e.device(u, "", func(o *client.Options) { o.MaxOpsPerChange = 8; o.MaxChangesPerRequest = 2; o.PullLimit = 20 })
		online[i] = true
	}
	needs := []string{"dog", "hoarding", "infection", "access_code"}
	tags := []string{"carer", "falls", "housebound", "lonely"}
	known := func(d *client.Replica) []*client.Record {
		recs, err := d.List(ctx, sdkTeam, "people")
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	counts := map[string]int{}
	for step := range steps {
		clock.advance(time.Second)
		i := rng.intn(len(devs))
		d := devs[i]
		recs := known(d)
		action := rng.intn(100)
		var err error
		switch {
		case action < 8:
			online[i] = !online[i]
			counts["toggle"]++
			continue
		case action < 25:
			if online[i] {
				if _, err := d.Sync(ctx); err != nil && errors.Is(err, client.ErrSignedOut) {
					t.Fatalf("step %d: %v", step, err)
				}
				counts["sync"]++
			}
			continue
		case action < 35 || len(recs) == 0:
			ref := client.Ref{Team: sdkTeam, Collection: "people", ID: fmt.Sprintf("sim-%04d-%08x", step, rng.intn(1<<30))}
			err = d.CreateWithID(ctx, ref, sdkPerson(fmt.Sprintf("S%d", step)))
			counts["create"]++
		default:
			rec := recs[rng.intn(len(recs))]
			ref := rec.Ref
			switch k := rng.intn(10); {
			case rec.Deleted:
				if k < 3 {
					err = d.Restore(ctx, ref)
					counts["restore"]++
				}
			case k == 0:
				err = d.Delete(ctx, ref)
				counts["delete"]++
			case k < 3:
				err = d.Set(ctx, ref, "phone", fmt.Sprintf("0161 %04d", rng.intn(10000)))
				counts["set"]++
			case k < 4:
				err = d.Set(ctx, ref, "cfs", 1+rng.intn(9))
				counts["set"]++
				if errors.Is(err, client.ErrInConflict) { // clinical: resolve, not set
					err = nil
					counts["set_refused"]++
				}
			case k < 5:
				if rec.Fields["cfs"].Conflict || rec.Fields["phone"].Conflict {
					field := "cfs"
					val := any(4)
					if rec.Fields["phone"].Conflict {
						field, val = "phone", "resolved"
					}
					err = d.Resolve(ctx, ref, field, val)
					counts["resolve"]++
					if errors.Is(err, client.ErrResolveForbidden) { // link workers do not settle cfs
						err = nil
						counts["resolve_refused"]++
					}
				}
			case k < 6:
				err = d.Add(ctx, ref, "risk_flags", needs[rng.intn(len(needs))])
				counts["add"]++
			case k < 7:
				err = d.Remove(ctx, ref, "risk_flags", needs[rng.intn(len(needs))])
				counts["remove"]++
			case k < 8:
				err = d.Add(ctx, ref, "tags", tags[rng.intn(len(tags))])
				counts["add"]++
			default:
				err = d.Append(ctx, ref, "case_notes", fmt.Sprintf("step %d by %s", step, users[i]))
				counts["append"]++
			}
		}
		if err != nil {
			t.Fatalf("step %d on %s: %v", step, users[i], err)
		}
	}
	t.Logf("actions: %v", counts)

	// Everyone reconnects; the proxy keeps misbehaving for a while.
	// A plain cfs Set made offline before the device saw a concurrent
	// value is quarantined by the clinical rule (conflict_in_review) and the
	// device is put back in step: the one rejection the simulation expects.
	for round := range 2 {
		for _, d := range devs {
			sdkSyncUntilDone(t, d, 300, api.CodeConflictInReview)
		}
		if round == 0 {
			proxy.setChaos(false)
		}
	}
	for _, d := range devs {
		sdkSyncUntilDone(t, d, 1, api.CodeConflictInReview)
	}
	proxy.mu.Lock()
	t.Logf("proxy modes: %v", proxy.hits)
	proxy.mu.Unlock()
	states := sdkAssertConverged(t, devs...)
	if len(states) == 0 {
		t.Fatal("no records")
	}
	for _, d := range devs {
		if p := d.Status().Pending; p != 0 {
			t.Fatalf("%s still has %d pending ops", d.ID(), p)
		}
	}
}

// TestSDKBackgroundConverges runs every device's background loop through
// the misbehaving proxy: writes trigger syncs, failures back off, NetworkUp
// cuts the backoff short, and change events reach subscribers. It waits (up
// to a generous deadline) for every outbox to drain and every device to hold
// the same states.
func TestSDKBackgroundConverges(t *testing.T) {
	seed := sdkSeed(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := newSDKEnv(t, nil)
	proxy := newSDKChaosProxy(t, e.http.URL, seed)
	e.url = proxy.srv.URL
	rng := newSDKRand(seed + 2)
	var devs []*client.Replica
	var events []<-chan client.Event
	for _, u := range []string{"ann", "bea", "cal"} {
		d := e.device(u, "", func(o *client.Options) {
			o.MinBackoff, o.MaxBackoff, o.PollInterval = 5*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
		})
		ev, stop := d.Subscribe()
		defer stop()
		events = append(events, ev)
		devs = append(devs, d)
	}
	received := make([]atomic.Int64, len(devs))
	for i, ev := range events {
		go func() {
			for e := range ev {
				received[i].Add(int64(len(e.Records)))
			}
		}()
	}
	for _, d := range devs {
		if err := d.Background(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var refs []client.Ref
	for i := range 60 {
		d := devs[rng.intn(len(devs))]
		if i%10 == 0 {
			ref := client.Ref{Team: sdkTeam, Collection: "people", ID: fmt.Sprintf("bg-%02d", i)}
			if err := d.CreateWithID(ctx, ref, sdkPerson("BG")); err != nil {
				t.Fatal(err)
			}
			refs = append(refs, ref)
			continue
		}
		ref := refs[rng.intn(len(refs))]
		if _, err := d.Get(ctx, ref); err != nil {
			continue // not here yet
		}
		if err := d.Append(ctx, ref, "case_notes", fmt.Sprintf("note %d", i)); err != nil {
			t.Fatal(err)
		}
		if rng.intn(5) == 0 {
			d.NetworkUp()
		}
	}
	proxy.setChaos(false)
	deadline := time.Now().Add(60 * time.Second)
	for {
		pending := 0
		for _, d := range devs {
			d.NetworkUp()
			pending += d.Status().Pending
		}
		if pending == 0 && sdkSameStates(t, devs) {
			break
		}
		if time.Now().After(deadline) {
			for _, d := range devs {
				t.Logf("%s: %+v", d.ID(), d.Status())
			}
			t.Fatal("background loops did not converge")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	sdkAssertConverged(t, devs...)
	for i := range devs {
		if received[i].Load() == 0 {
			t.Errorf("device %d got no change events", i)
		}
	}
	proxy.mu.Lock()
	t.Logf("proxy modes: %v", proxy.hits)
	proxy.mu.Unlock()
}

// sdkSameStates reports whether every device holds the same record states.
func sdkSameStates(t *testing.T, devs []*client.Replica) bool {
	t.Helper()
	var first map[client.Ref]*crdt.Record
	for i, d := range devs {
		st, err := d.States(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = st
			continue
		}
		if len(st) != len(first) {
			return false
		}
		for ref, a := range first {
			b, ok := st[ref]
			if !ok {
				return false
			}
			ab, _ := crdt.MarshalRecord(a)
			bb, _ := crdt.MarshalRecord(b)
			if !bytes.Equal(ab, bb) {
				return false
			}
		}
	}
	return true
}
