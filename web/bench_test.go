package web

import (
	"context"
	"fmt"
	storebadger "github.com/doorstep-health/doorstep/store/badger"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
	dsync "github.com/doorstep-health/doorstep/sync"
	"golang.org/x/crypto/bcrypt"
)

// benchTeam is a console over a team of n people, each with 3 contacts,
// a need, ONS4 and UCLA-3 baseline and follow-up assessments (6 records
// per person besides the person), pushed by 4 workers through the engine
// with the default schema, and 20 clinical CFS conflicts.
type benchTeam struct {
	c      *Console
	touch  func() // appends one ONS4 response to an assessment (a change to the team)
	cookie *http.Cookie
	person string // a person with a conflict
	nhs    string
	family string
}

var givens = []string{"Margaret", "Harold", "Joan", "Albert", "Doris", "Kenneth", "Irene", "Stanley", "Edna", "Frank", "Olive", "Walter", "Barbara", "Dennis", "Jean", "Roy"}
var families = []string{"Green", "Hughes", "Smith", "Turner", "Baxter", "Whittle", "Hindley", "Fairhurst", "Rigby", "Ashurst", "Prescott", "Leyland", "Heaton", "Cunliffe", "Dootson", "Atherton"}

func nhsNumber(i int) string {
	for n := 999000000 + i; ; n++ {
		s := fmt.Sprint(n)
		if d, ok := schema.NHSCheckDigit(s); ok {
			return s + fmt.Sprint(d)
		}
	}
}

func newBenchTeam(b *testing.B, n int) *benchTeam {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	akv, err := storebadger.Open(storebadger.Options{Dir: filepath.Join(dir, "auth"), SmallMemory: true, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	a, err := auth.New(ctx, akv, auth.Config{BcryptCost: bcrypt.MinCost, KeyDir: filepath.Join(dir, "keys"), Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	kv, err := storebadger.Open(storebadger.Options{Dir: filepath.Join(dir, "records"), Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := dsync.Open(ctx, dsync.Options{Store: kv, Validator: schema.Default(), Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close(); a.Close() })
	const team = "bench"
	if _, err := a.CreateTeam(ctx, team, "Bench Frailty"); err != nil {
		b.Fatal(err)
	}
	var workers []dsync.Caller
	var clocks []*crdt.Clock
	seqs := map[crdt.ReplicaID]uint64{}
	for i := range 4 {
		u, err := a.CreateUser(ctx, auth.NewUser{Username: fmt.Sprintf("w%d", i), Name: fmt.Sprintf("Worker %d", i), Password: "bench-password", Role: api.RoleLinkWorker, Teams: []string{team}})
		if err != nil {
			b.Fatal(err)
		}
		r := crdt.NewReplicaID()
		if _, err := a.Login(ctx, u.Username, "bench-password", r.String(), fmt.Sprintf("tablet %d", i)); err != nil {
			b.Fatal(err)
		}
		workers = append(workers, dsync.Caller{User: u.ID, Replica: r, Teams: []string{team}})
		clocks = append(clocks, crdt.NewClock(time.Now, time.Hour))
	}
	coord, err := a.CreateUser(ctx, auth.NewUser{Username: "coord", Name: "Coordinator", Password: "bench-password", Role: api.RoleCoordinator, Teams: []string{team}})
	if err != nil {
		b.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	bt := &benchTeam{}
	var ops []crdt.Op
	w := 0
	flush := func() {
		seqs[workers[w].Replica]++
		res, err := eng.Push(ctx, workers[w], []api.Change{{Seq: seqs[workers[w].Replica], Ops: ops}})
		if err != nil || res[0].Status != api.ChangeApplied || len(res[0].Ops) > 0 {
			b.Fatalf("push: %+v %v", res, err)
		}
		ops = nil
	}
	create := func(coll string, fields ...any) *crdt.Record {
		rec := crdt.NewRecord(team, coll, crdt.NewReplicaID().String())
		for i := 0; i < len(fields); i += 2 {
			op := rec.Write(crdt.OpID{Time: clocks[w].Now(), Replica: workers[w].Replica}, fields[i].(string), crdt.MustValue(fields[i+1]))
			if err := rec.Apply(&op); err != nil {
				b.Fatal(err)
			}
			ops = append(ops, op)
		}
		return rec
	}
	appendLog := func(rec *crdt.Record, field string, v any) {
		op := rec.Append(crdt.OpID{Time: clocks[w].Now(), Replica: workers[w].Replica}, field, crdt.MustValue(v))
		ops = append(ops, op)
	}
	day := func(d int) string { return time.Now().AddDate(0, 0, -d).UTC().Format(time.RFC3339) }
	people := make([]*crdt.Record, n)
	var ucla *crdt.Record
	var lastUCLA string
	for i := range n {
		w = i % len(workers)
		given, family := givens[rnd.IntN(len(givens))], families[rnd.IntN(len(families))]
		nhs := nhsNumber(i * 7)
		p := create("people", "given_name", given, "family_name", family, "nhs_number", nhs, "date_of_birth", fmt.Sprintf("19%02d-0%d-1%d", 30+rnd.IntN(30), 1+rnd.IntN(9), rnd.IntN(10)),
			"address", fmt.Sprintf("%d Chapel Street, Wigan", 1+rnd.IntN(200)), "postcode", fmt.Sprintf("WN%d %d%c%c", 1+rnd.IntN(8), rnd.IntN(10), 'A'+rune(rnd.IntN(26)), 'A'+rune(rnd.IntN(26))),
			"gender", "female", "phone", "01942 000000", "lives_alone", rnd.IntN(2) == 0, "cfs", 3+rnd.IntN(5), "cfs_source", "frailty_mdt")
		people[i] = p
		for c := range 3 {
			create("contacts", "person_id", p.ID, "contact_type", "home_visit", "purpose", "follow_up", "actual_start", day(60-c*20), "duration_min", 45, "outcome", "completed")
		}
		create("needs", "person_id", p.ID, "category", "mobility_falls", "status", "open")
		for k, d := range []int{90, 10} {
			ons := create("assessments", "person_id", p.ID, "instrument", "ons4", "timepoint", []string{"baseline", "final"}[k], "administered_by", "self_completed", "assessed_at", day(d))
			appendLog(ons, "responses", map[string]any{"instrument": "ons4", "answers": map[string]int{"ons4_life_satisfaction": rnd.IntN(11), "ons4_worthwhile": rnd.IntN(11), "ons4_happy": rnd.IntN(11), "ons4_anxious": rnd.IntN(11)}})
			ucla = create("assessments", "person_id", p.ID, "instrument", "ucla3", "timepoint", []string{"baseline", "final"}[k], "administered_by", "self_completed", "assessed_at", day(d))
			appendLog(ucla, "responses", map[string]any{"instrument": "ucla3", "answers": map[string]int{"ucla_companionship": 1 + rnd.IntN(3), "ucla_left_out": 1 + rnd.IntN(3), "ucla_isolated": 1 + rnd.IntN(3)}})
			lastUCLA = ucla.ID
		}
		flush()
		if i == n/2 {
			bt.person, bt.nhs, bt.family = p.ID, nhs, family
			assessment := lastUCLA // the person's last UCLA-3 record
			bt.touch = func() {
				w = 0
				rec := crdt.NewRecord(team, "assessments", assessment)
				ops = append(ops, rec.Append(crdt.OpID{Time: clocks[w].Now(), Replica: workers[w].Replica}, "responses",
					crdt.MustValue(map[string]any{"instrument": "ucla3", "answers": map[string]int{"ucla_companionship": 1, "ucla_left_out": 1, "ucla_isolated": 1}})))
				flush()
			}
		}
	}
	// 20 clinical conflicts: two workers write cfs concurrently.
	for i := range 20 {
		p := people[n/2+i]
		for k := range 2 {
			w = k
			op := p.Clone().Write(crdt.OpID{Time: clocks[w].Now(), Replica: workers[w].Replica}, "cfs", crdt.MustValue(4+k))
			ops = append(ops, op)
			flush()
		}
	}
	bt.c, err = New(Config{Engine: eng, Auth: a, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	r := crdt.NewReplicaID()
	tr, err := a.Login(ctx, "coord", "bench-password", r.String(), "console")
	if err != nil {
		b.Fatal(err)
	}
	cl, err := a.Verify(tr.AccessToken)
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := bt.c.ss.create(ctx, time.Now(), cl, coord)
	if err != nil {
		b.Fatal(err)
	}
	bt.cookie = &http.Cookie{Name: cookieSession, Value: tok}
	return bt
}

// get serves one page in-process and fails on anything but 200.
func (bt *benchTeam) get(b *testing.B, path string) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.AddCookie(bt.cookie)
	rec := httptest.NewRecorder()
	bt.c.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("%s: %d %.300s", path, rec.Code, rec.Body.String())
	}
}

// BenchmarkConsolePages measures the server time of each console page for a
// team of 5,000 people (about 35,000 records): the handler from request to
// rendered bytes, in-process, with no network. Target: under 50 ms a page,
// under 20 ms a search.
func BenchmarkConsolePages(b *testing.B) {
	bt := newBenchTeam(b, 5000)
	t := "/console/teams/bench"
	for _, p := range []struct{ name, path string }{
		{"home", t},
		{"conflicts", t + "/conflicts"},
		{"conflict", t + "/conflicts/people/" + bt.person + "/cfs"},
		{"record", t + "/records/people/" + bt.person},
		{"changes", t + "/changes"},
		{"changes_by_worker", t + "/changes?collection=assessments&author=nobody"},
		{"search_name", t + "/search?q=mar+hugh"},
		{"search_nhs", t + "/search?q=" + bt.nhs},
		{"search_family", t + "/search?q=" + bt.family},
		{"outcomes", t + "/outcomes"},
	} {
		b.Run(p.name, func(b *testing.B) {
			cpu0 := cpuTime()
			for b.Loop() {
				bt.get(b, p.path)
			}
			report(b, cpu0)
		})
	}
	// The outcomes view after one assessment changed: the cache catches up
	// from the changed records (the push itself is not timed).
	b.Run("outcomes_after_change", func(b *testing.B) {
		bt.get(b, t+"/outcomes")
		cpu0 := cpuTime()
		for b.Loop() {
			b.StopTimer()
			bt.touch()
			b.StartTimer()
			bt.get(b, t+"/outcomes")
		}
		report(b, cpu0)
	})
	// The first outcomes view of a team (or after an erasure): no cache.
	b.Run("outcomes_uncached", func(b *testing.B) {
		cpu0 := cpuTime()
		for b.Loop() {
			bt.c.outMu.Lock()
			clear(bt.c.outCache)
			bt.c.outMu.Unlock()
			bt.get(b, t+"/outcomes")
		}
		report(b, cpu0)
	})
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report adds wall and CPU milliseconds per page: on a shared, loaded
// machine the CPU figure (the whole process, background Badger work
// included) says more about the page's own cost than the wall time.
func report(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/page")
}
