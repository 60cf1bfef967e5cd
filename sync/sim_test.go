package sync

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/doorstep-health/doorstep/api"
)

// TestSimulation runs seeded random devices against one engine: random
// edits of registers, sets, logs and deletes; random syncs whose replies
// are sometimes dropped after the engine applied them (so the device
// retries), sometimes duplicated, sometimes replayed from an older request,
// and sometimes with the outbox reordered. At the end every device and the
// server hold byte-identical states of every record of the device's teams.
func TestSimulation(t *testing.T) {
	seed := testSeed(t)
	steps := 600
	if *longFlag {
		steps = 20000
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 42))
	wall := newFakeWall()
	e := openTest(t, Options{Wall: wall.Now, PageBytes: 8 << 10})

	teamsOf := [][]string{{"wigan"}, {"wigan"}, {"wigan", "ashton"}, {"ashton"}, {"ashton", "wigan"}}
	var devs []*device
	var lastReq []*api.SyncRequest
	for i, teams := range teamsOf {
		devs = append(devs, newDevice(fmt.Sprintf("dev%d", i), wall.Now, teams...))
		lastReq = append(lastReq, nil)
	}
	stats := map[string]int{}

	edit := func(d *device) {
		team := d.caller.Teams[rng.IntN(len(d.caller.Teams))]
		id := fmt.Sprintf("%s-p%d", team, rng.IntN(8))
		r := d.rec(team, "people", id)
		switch k := rng.IntN(20); {
		case k < 9:
			d.write(team, "people", id, fmt.Sprintf("f%d", rng.IntN(4)), rng.IntN(1000))
		case k < 12:
			d.add(team, "people", id, "tags", fmt.Sprintf("t%d", rng.IntN(4)))
		case k < 14:
			d.remove(team, "people", id, "tags", fmt.Sprintf("t%d", rng.IntN(4)))
		case k < 17:
			d.appendLog(team, "people", id, "notes", rng.Int64())
		case k < 18 && len(r.Fields) > 0:
			d.do(r.Delete(d.nextID()))
		case k < 19 && len(r.Fields) > 0:
			d.do(r.Restore(d.nextID()))
		default:
			// A coordinator resolves whatever is in conflict on this record.
			for _, f := range r.FieldNames() {
				if r.Fields[f].Conflict() {
					d.write(team, "people", id, f, "resolved")
				}
			}
		}
		stats["edits"]++
	}

	doSync := func(i int) {
		d := devs[i]
		req := d.request()
		switch x := rng.IntN(10); {
		case x == 0 && lastReq[i] != nil:
			req = lastReq[i] // an old request replayed
			stats["replayed"]++
		case x == 1 && len(req.Changes) > 1:
			rng.Shuffle(len(req.Changes), func(a, b int) { req.Changes[a], req.Changes[b] = req.Changes[b], req.Changes[a] })
			stats["reordered"]++
		}
		req.PullLimit = 1 + rng.IntN(20)
		lastReq[i] = req
		resp, err := e.Sync(bg, d.caller, req)
		if err != nil {
			t.Fatalf("step sync %s: %v", d.caller.User, err)
		}
		if rng.IntN(4) == 0 {
			stats["dropped"]++ // the reply is lost after the server committed
			return
		}
		if rng.IntN(6) == 0 {
			// The request arrives twice; the device sees the second reply.
			if resp, err = e.Sync(bg, d.caller, req); err != nil {
				t.Fatalf("duplicate sync: %v", err)
			}
			stats["duplicated"]++
		}
		for _, r := range resp.Results {
			if r.Status == api.ChangeRefused && r.Code != api.CodeSeqGap {
				t.Fatalf("change %d refused: %+v", r.Seq, r)
			}
		}
		d.receive(t, resp)
		stats["syncs"]++
	}

	for range steps {
		i := rng.IntN(len(devs))
		d := devs[i]
		switch x := rng.IntN(10); {
		case x < 5:
			edit(d)
		case x < 7:
			if len(d.pending) > 0 {
				d.commit()
			}
		default:
			doSync(i)
		}
	}
	for range 2 {
		for _, d := range devs {
			if len(d.pending) > 0 {
				d.commit()
			}
			d.syncAll(t, e)
		}
	}
	for _, d := range devs {
		server := encoded(t, serverRecords(t, e, d.caller.Teams...))
		if diff := diffStates(server, encoded(t, d.recs)); diff != "" {
			t.Fatalf("device %s differs from the server: %s", d.caller.User, diff)
		}
		for ref := range d.recs {
			if !slices.Contains(d.caller.Teams, ref.Team) {
				t.Fatalf("device %s holds a record of team %s", d.caller.User, ref.Team)
			}
		}
	}
	q, err := e.Quarantined(bg, 0)
	if err != nil || len(q) != 0 {
		t.Fatalf("quarantine: %v %+v", err, q)
	}
	conflicts := 0
	for _, r := range serverRecords(t, e, "wigan", "ashton") {
		conflicts += len(r.Conflicts())
	}
	t.Logf("%v; %d fields in conflict at the end", stats, conflicts)
}
