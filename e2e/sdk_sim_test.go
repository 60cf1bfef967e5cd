package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	client "github.com/doorstep-health/doorstep/client-sdk"
)

var sdkSeedFlag = flag.Uint64("sdkseed", 0, "seed for the SDK's randomized end-to-end tests (0: random; env DOORSTEP_SDK_SEED also works)")

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
	if testing.Short() {
		steps = 80
	}
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	proxy := newSDKChaosProxy(t, e.http.URL, seed)
	e.url = proxy.srv.URL
	rng := newSDKRand(seed + 1)

	users := []string{"ann", "bea", "cal", "dee"}
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
			_, err = d.Create(ctx, "people", sdkTeam, sdkPerson(fmt.Sprintf("S%d", step)))
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
			case k < 5:
				if rec.Fields["cfs"].Conflict || rec.Fields["phone"].Conflict {
					field := "cfs"
					val := any(4)
					if rec.Fields["phone"].Conflict {
						field, val = "phone", "resolved"
					}
					err = d.Resolve(ctx, ref, field, val)
					counts["resolve"]++
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
	for round := range 2 {
		for _, d := range devs {
			sdkSyncUntilDone(t, d, 300)
		}
		if round == 0 {
			proxy.setChaos(false)
		}
	}
	for _, d := range devs {
		sdkMustSync(t, d)
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
