package demo

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/vmihailenco/msgpack/v5"
)

var (
	seedFlag = flag.Int64("seed", 0, "replay the randomized demo checks with this seed (or set DOORSTEP_SEED)")
	longFlag = flag.Bool("long", false, "check many more random seeds")
)

// testSeeds returns fixed seeds plus one random (or replayed) seed, which it
// logs so a failure can be replayed with -seed.
func testSeeds(t *testing.T) []int64 {
	seed := *seedFlag
	if s := os.Getenv("DOORSTEP_SEED"); seed == 0 && s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("DOORSTEP_SEED: %v", err)
		}
		seed = v
	}
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("random seed %d (replay with -seed %d)", seed, seed)
	seeds := []int64{1, 42, seed}
	if *longFlag && *seedFlag == 0 {
		for i := range int64(50) {
			seeds = append(seeds, seed+i+1)
		}
	}
	return seeds
}

var testNow = time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC)

func TestBuildDeterministic(t *testing.T) {
	a, b := Build(7, testNow), Build(7, testNow)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed gave different datasets")
	}
	c := Build(8, testNow)
	if reflect.DeepEqual(a.Pushes, c.Pushes) {
		t.Fatal("different seeds gave the same pushes")
	}
}

// applied is the in-memory result of pushing a dataset: the merged records
// and every op by ID.
type applied struct {
	records map[api.RecordRef]*crdt.Record
	ops     map[crdt.OpID]*crdt.Op
}

// applyAll checks every push as the server would and merges it.
func applyAll(t *testing.T, ds *Dataset) *applied {
	t.Helper()
	s := schema.Default()
	users := map[string]User{}
	for _, u := range ds.Users {
		users[u.Username] = u
	}
	devices := map[crdt.ReplicaID]Device{}
	for _, d := range ds.Devices {
		if d.Replica.IsZero() {
			t.Fatalf("device %s has the zero replica", d.Name)
		}
		if _, dup := devices[d.Replica]; dup {
			t.Fatalf("replica %s used twice", d.Replica)
		}
		if _, ok := users[d.Username]; !ok {
			t.Fatalf("device %s of unknown user %s", d.Name, d.Username)
		}
		devices[d.Replica] = d
	}
	a := &applied{records: map[api.RecordRef]*crdt.Record{}, ops: map[crdt.OpID]*crdt.Op{}}
	seqs := map[crdt.ReplicaID]uint64{}
	earliest := testNow.Add(-Span - 7*24*time.Hour)
	for pi, p := range ds.Pushes {
		d, ok := devices[p.Device]
		if !ok || d.Username != p.Username {
			t.Fatalf("push %d: device %s / user %s not registered together", pi, p.Device, p.Username)
		}
		if want := seqs[p.Device] + 1; p.Change.Seq != want {
			t.Fatalf("push %d from %s: seq %d, want %d", pi, p.Username, p.Change.Seq, want)
		}
		seqs[p.Device] = p.Change.Seq
		if len(p.Change.Ops) == 0 {
			t.Fatalf("push %d: empty change", pi)
		}
		created := map[api.RecordRef][]string{}
		for oi := range p.Change.Ops {
			op := &p.Change.Ops[oi]
			// Round trip through the wire encoding, as the server sees it.
			raw, err := crdt.MarshalOp(op)
			if err != nil {
				t.Fatal(err)
			}
			op, err = crdt.UnmarshalOp(raw)
			if err != nil {
				t.Fatalf("push %d op %d: %v", pi, oi, err)
			}
			if err := s.ValidateOp(op); err != nil {
				t.Fatalf("push %d op %d (%s.%s): %v", pi, oi, op.Collection, op.Field, err)
			}
			if op.ID.Replica != p.Device {
				t.Fatalf("push %d op %d: id of replica %s", pi, oi, op.ID.Replica)
			}
			if !slices.Contains(users[p.Username].Teams, op.Team) {
				t.Fatalf("push %d: %s writes to team %s", pi, p.Username, op.Team)
			}
			if ts := op.ID.Time.Time(); !ts.Before(testNow) || ts.Before(earliest) {
				t.Fatalf("push %d op %d stamped %s, outside the demo's eight weeks", pi, oi, ts)
			}
			if _, dup := a.ops[op.ID]; dup {
				t.Fatalf("op id %s used twice", op.ID)
			}
			for _, pred := range op.Pred {
				if _, ok := a.ops[pred]; !ok {
					t.Fatalf("push %d op %d names pred %s the server would not have", pi, oi, pred)
				}
			}
			ref := api.RecordRef{Team: op.Team, Collection: op.Collection, ID: op.Record}
			rec, ok := a.records[ref]
			if !ok {
				rec = crdt.NewRecord(op.Team, op.Collection, op.Record)
				a.records[ref] = rec
				created[ref] = []string{}
			}
			if _, ok := created[ref]; ok && op.Kind == crdt.KindWrite {
				created[ref] = append(created[ref], op.Field)
			}
			if f, ok := s.Field(op.Collection, op.Field); ok && f.Transitions != nil {
				if prev := str(t, rec, op.Field); prev != "" {
					var next string
					_ = msgpack.Unmarshal(op.Value, &next)
					if !f.Allows(prev, next) {
						t.Fatalf("push %d: %s.%s moves %s → %s, outside its lifecycle", pi, op.Collection, op.Field, prev, next)
					}
				}
			}
			if err := rec.Apply(op); err != nil {
				t.Fatalf("push %d op %d: %v", pi, oi, err)
			}
			a.ops[op.ID] = op
		}
		// What the SDK checks on create: required fields in the creating change.
		for ref, fields := range created {
			if missing := s.MissingOnCreate(ref.Collection, fields); len(missing) > 0 {
				t.Fatalf("push %d creates %s/%s without %v", pi, ref.Collection, ref.ID, missing)
			}
		}
	}
	return a
}

func str(t *testing.T, rec *crdt.Record, field string) string {
	t.Helper()
	e, ok := rec.Field(field).Winner()
	if !ok {
		return ""
	}
	var s string
	if err := msgpack.Unmarshal(e.Value, &s); err != nil {
		t.Fatalf("%s.%s: %v", rec.Collection, field, err)
	}
	return s
}

func TestDatasetValid(t *testing.T) {
	for _, seed := range testSeeds(t) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			ds := Build(seed, testNow)
			a := applyAll(t, ds)
			checkShape(t, ds, a)
			checkPeople(t, a)
			checkConflicts(t, ds, a)
			// The shipped demo (seed 1, cmd/doorstep) and seed 42 must tell
			// the outcomes story; any other seed only has to be readable:
			// a random seed can leave fewer than 10 people with a final
			// review (about 1 seed in 57), which is the draw, not a bug.
			checkOutcomes(t, a, seed == 1 || seed == 42)
		})
	}
}

func checkShape(t *testing.T, ds *Dataset, a *applied) {
	if len(ds.Teams) != 2 || ds.Teams[0].ID != TeamWigan || ds.Teams[1].ID != TeamAshton {
		t.Fatalf("teams %v", ds.Teams)
	}
	roles := map[string]map[string]int{TeamWigan: {}, TeamAshton: {}}
	for _, u := range ds.Users {
		if u.Password != DemoPassword {
			t.Errorf("%s: password not the documented demo password", u.Username)
		}
		for _, team := range u.Teams {
			roles[team][u.Role]++
		}
	}
	if r := roles[TeamWigan]; r[api.RoleLinkWorker] != 3 || r[api.RoleCoordinator] != 1 || r[api.RoleAdmin] != 1 {
		t.Errorf("wigan roles %v", r)
	}
	if r := roles[TeamAshton]; r[api.RoleLinkWorker] != 2 || r[api.RoleCoordinator] != 1 {
		t.Errorf("ashton roles %v", r)
	}
	count := map[api.RecordRef]int{}
	practices := map[string]bool{}
	anonymous := 0
	for ref, rec := range a.records {
		count[api.RecordRef{Team: ref.Team, Collection: ref.Collection}]++
		switch ref.Collection {
		case "dropin_sessions":
			practices[str(t, rec, "location_name")] = true
		case "dropin_attendances":
			if rec.Field("person_id") == nil {
				anonymous++
			}
		}
	}
	if n := count[api.RecordRef{Team: TeamAshton, Collection: "organisations"}]; n < 35 || n > 45 {
		t.Errorf("ashton directory has %d organisations", n)
	}
	if len(practices) != 9 {
		t.Errorf("drop-ins at %d practices", len(practices))
	}
	attendances := count[api.RecordRef{Team: TeamAshton, Collection: "dropin_attendances"}]
	if attendances == 0 || anonymous*2 < attendances {
		t.Errorf("%d attendances, %d anonymous: want many anonymous", attendances, anonymous)
	}
	for _, coll := range []string{"people", "referrals", "contacts", "assessments", "needs", "care_plans", "goals", "onward_referrals", "carers", "consent_events"} {
		if count[api.RecordRef{Team: TeamWigan, Collection: coll}] == 0 {
			t.Errorf("wigan has no %s", coll)
		}
	}
	t.Logf("%d pushes, %d ops, %d records", len(ds.Pushes), len(a.ops), len(a.records))
}

func checkPeople(t *testing.T, a *applied) {
	seen := map[string]bool{}
	wigan := 0
	for ref, rec := range a.records {
		if ref.Collection != "people" {
			continue
		}
		if nhs := str(t, rec, "nhs_number"); nhs != "" {
			if !schema.IsTestNHSNumber(nhs) {
				t.Errorf("%s: NHS number %s is not a valid 999 test number", ref.ID, nhs)
			}
			if seen[nhs] {
				t.Errorf("NHS number %s used twice", nhs)
			}
			seen[nhs] = true
		}
		if ref.Team != TeamWigan {
			continue
		}
		wigan++
		dob, err := time.Parse(time.DateOnly, str(t, rec, "date_of_birth"))
		if err != nil {
			t.Fatal(err)
		}
		age := testNow.Year() - dob.Year()
		if dob.AddDate(age, 0, 0).After(testNow) {
			age--
		}
		if age < 65 || age > 95 {
			t.Errorf("wigan person %s aged %d", ref.ID, age)
		}
		if str(t, rec, "nhs_number") == "" {
			t.Errorf("wigan person %s has no NHS number", ref.ID)
		}
	}
	if wigan < 20 {
		t.Errorf("only %d Wigan people", wigan)
	}
}

func checkConflicts(t *testing.T, ds *Dataset, a *applied) {
	var got []Conflict
	for ref, rec := range a.records {
		for _, f := range rec.Conflicts() {
			got = append(got, Conflict{Team: ref.Team, Collection: ref.Collection, Record: ref.ID, Field: f})
		}
	}
	if len(got) == 0 || len(got) != len(ds.Conflicts) {
		t.Fatalf("conflicts after all pushes %v, dataset says %v", got, ds.Conflicts)
	}
	for _, c := range ds.Conflicts {
		if !slices.ContainsFunc(got, func(g Conflict) bool {
			return g.Team == c.Team && g.Collection == c.Collection && g.Record == c.Record && g.Field == c.Field
		}) {
			t.Errorf("intended conflict %+v not present", c)
		}
		if c.Clinical != schema.Default().Clinical(c.Collection, c.Field) {
			t.Errorf("conflict on %s.%s: Clinical %v disagrees with the schema", c.Collection, c.Field, c.Clinical)
		}
		f := a.records[api.RecordRef{Team: c.Team, Collection: c.Collection, ID: c.Record}].Field(c.Field)
		if len(f.Entries) != 2 || string(f.Entries[0].Value) == string(f.Entries[1].Value) {
			t.Errorf("conflict %s: entries %v", c.Note, f.Entries)
		}
		// Two devices, separate changes, each with pred = the value both saw.
		o1, o2 := a.ops[f.Entries[0].ID], a.ops[f.Entries[1].ID]
		if o1.ID.Replica == o2.ID.Replica || !slices.Equal(o1.Pred, o2.Pred) || len(o1.Pred) != 1 {
			t.Errorf("conflict ops: %+v / %+v", o1, o2)
		}
	}
	if first := ds.Conflicts[0]; first.Team != TeamWigan || !first.Clinical || first.Collection != "people" {
		t.Errorf("first conflict %+v, want a clinical one on a Wigan person", first)
	}
}

func checkOutcomes(t *testing.T, a *applied, story bool) {
	var recs []*crdt.Record
	for _, rec := range a.records {
		recs = append(recs, rec)
	}
	outcomes, skipped := schema.ONS4Outcomes(recs)
	if skipped != 0 {
		t.Errorf("%d unreadable responses", skipped)
	}
	if !story {
		return
	}
	if len(outcomes) < 10 {
		t.Errorf("only %d people with ONS4 first/last pairs", len(outcomes))
	}
	for _, s := range schema.SummariseONS4(outcomes) {
		better := s.MeanLast > s.MeanFirst
		if s.Item == "ons4_anxious" {
			better = s.MeanLast < s.MeanFirst
		}
		if !better || s.Improved < s.Worse {
			t.Errorf("%s: %+v; the demo should show modest improvement", s.Item, s)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		Build(int64(i), testNow)
	}
}

// TestStableFromDayToDay: built on different days (a week apart, a day
// apart, across a weekend), the demo has the same people, names, record
// IDs, devices, number of changes and conflicts: the README's tour names
// them. Only times move.
func TestStableFromDayToDay(t *testing.T) {
	type summary struct {
		Users     []User
		Devices   []Device
		Pushes    int
		Ops       int
		Records   []string
		Conflicts []Conflict
		Names     []string
	}
	sum := func(ds *Dataset) summary {
		s := summary{Users: ds.Users, Devices: ds.Devices, Pushes: len(ds.Pushes), Conflicts: ds.Conflicts}
		seen := map[string]bool{}
		for _, p := range ds.Pushes {
			s.Ops += len(p.Change.Ops)
			for _, op := range p.Change.Ops {
				if k := op.Collection + "/" + op.Record; !seen[k] {
					seen[k] = true
					s.Records = append(s.Records, k)
				}
				if op.Field == "given_name" || op.Field == "family_name" {
					s.Names = append(s.Names, string(op.Value))
				}
			}
		}
		return s
	}
	base := sum(Build(1, testNow))
	for _, d := range []time.Duration{time.Hour, 24 * time.Hour, 2 * 24 * time.Hour, 3 * 24 * time.Hour, 9 * 24 * time.Hour, 40 * 24 * time.Hour, 400 * 24 * time.Hour} {
		now := testNow.Add(d)
		got := sum(Build(1, now))
		if !reflect.DeepEqual(got, base) {
			t.Errorf("built at %s the demo differs from at %s (%d vs %d pushes, %d vs %d records)", now, testNow, got.Pushes, base.Pushes, len(got.Records), len(base.Records))
		}
		// And nothing is stamped in the future.
		for _, p := range Build(1, now).Pushes {
			for _, op := range p.Change.Ops {
				if op.ID.Time.Time().After(now) {
					t.Fatalf("built at %s: op stamped %s", now, op.ID.Time.Time())
				}
			}
		}
	}
}
