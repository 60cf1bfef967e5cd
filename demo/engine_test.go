package demo_test

import (
	"context"
	storebadger "github.com/doorstep-health/doorstep/store/badger"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/demo"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/sync"
)

// TestDatasetThroughEngine pushes the whole demo through the real sync
// engine on Badger, as `doorstep serve --demo` does: every change applies,
// nothing is quarantined or refused, and the Wigan conflict is listed for
// review.
func TestDatasetThroughEngine(t *testing.T) {
	now := time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC)
	ds := demo.Build(1, now)
	ctx := context.Background()
	kv, err := storebadger.Open(storebadger.Options{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), SmallMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	e, err := sync.Open(ctx, sync.Options{
		Store: kv, Validator: schema.Default(), Wall: func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	teams := map[string][]string{}
	for _, u := range ds.Users {
		teams[u.Username] = u.Teams
	}
	// A device pushes its pending changes together: consecutive changes
	// by one device go in one request.
	for i := 0; i < len(ds.Pushes); {
		j := i
		var changes []api.Change
		for ; j < len(ds.Pushes) && ds.Pushes[j].Device == ds.Pushes[i].Device; j++ {
			changes = append(changes, ds.Pushes[j].Change)
		}
		p := ds.Pushes[i]
		results, err := e.Push(ctx, sync.Caller{User: p.Username, Replica: p.Device, Teams: teams[p.Username]}, changes)
		if err != nil {
			t.Fatalf("push %d-%d: %v", i, j-1, err)
		}
		for _, r := range results {
			if r.Status != api.ChangeApplied || len(r.Ops) > 0 {
				t.Fatalf("push by %s seq %d: status %d code %q ops %+v", p.Username, r.Seq, r.Status, r.Code, r.Ops)
			}
		}
		i = j
	}
	q, err := e.Quarantined(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 0 {
		t.Fatalf("%d ops quarantined, first: %+v", len(q), q[0])
	}
	// A coordinator of each team sees that team's seeded conflicts.
	for _, team := range []string{demo.TeamWigan, demo.TeamAshton} {
		coordinator := sync.Caller{User: "coordinator", Teams: []string{team}}
		for _, d := range ds.Devices {
			if d.Username == map[string]string{demo.TeamWigan: "diane", demo.TeamAshton: "helen"}[team] {
				coordinator.Replica, coordinator.User = d.Replica, d.Username
			}
		}
		refs, err := e.Conflicts(ctx, coordinator, team)
		if err != nil {
			t.Fatal(err)
		}
		var want []api.RecordRef
		for _, c := range ds.Conflicts {
			if c.Team != team {
				continue
			}
			want = append(want, api.RecordRef{Team: c.Team, Collection: c.Collection, ID: c.Record})
			rec, err := e.Record(ctx, coordinator, want[len(want)-1])
			if err != nil {
				t.Fatal(err)
			}
			if !rec.Field(c.Field).Conflict() {
				t.Fatalf("%s.%s of %s not in conflict on the server", c.Collection, c.Field, c.Record)
			}
		}
		if len(want) == 0 || len(refs) != len(want) {
			t.Fatalf("%s: engine lists conflicts %v, dataset %v", team, refs, want)
		}
		for _, w := range want {
			if !slices.Contains(refs, w) {
				t.Fatalf("%s: engine does not list %v", team, w)
			}
		}
	}
}
