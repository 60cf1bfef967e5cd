package demo

import (
	"bytes"
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/vmihailenco/msgpack/v5"
)

// DemoPassword is every demo user's password. It is for the demo only:
// anyone reading this source knows it.
const DemoPassword = "doorstep-demo"

// Team IDs.
const (
	TeamWigan  = "wigan-frailty"
	TeamAshton = "ashton-pcn"
)

// Team is a team: every record belongs to exactly one.
type Team struct{ ID, Name string }

// User is a demo user. Role is one of api.RoleLinkWorker,
// api.RoleCoordinator or api.RoleAdmin.
type User struct {
	Username, Name, Password, Role string
	Teams                          []string
}

// Device is a user's tablet (or laptop): one replica.
type Device struct {
	Username string
	Replica  crdt.ReplicaID
	Name     string
}

// Push is one change a device pushes. Dataset.Pushes lists them in the
// order they should be pushed; per device, seqs run 1, 2, 3 …
type Push struct {
	Device   crdt.ReplicaID
	Username string
	Change   api.Change
}

// Conflict names a register the dataset deliberately leaves in conflict.
type Conflict struct {
	Team, Collection, Record, Field string
	// Clinical reports whether the field is clinically significant, so
	// that no view may auto-resolve it.
	Clinical bool
	// Note says how the conflict arose, for the demo's guide.
	Note string
}

// Dataset is the whole demo.
type Dataset struct {
	Teams   []Team
	Users   []User
	Devices []Device
	Pushes  []Push
	// Conflicts are the concurrent edits waiting for a coordinator once
	// every push is applied: first a clinical one in Wigan (a person's
	// CFS), then a non-clinical one in the Ashton directory.
	Conflicts []Conflict
}

// Span is how long the demo's history is.
const Span = 56 * 24 * time.Hour

// idEpoch is the fixed start the record IDs are made from (a Sunday), so
// that IDs do not change with the day the demo is built.
var idEpoch = time.Date(2026, 1, 4, 0, 0, 0, 0, time.UTC)

// Build returns the demo dataset for seed, with eight weeks of history
// ending at the last Sunday 00:00 UTC at or before now (so the latest
// working week is always complete). The same seed
// gives the same people, names, record IDs, changes and conflicts whatever
// the day: only the times move (whole weeks, so weekends stay weekends).
// The same seed and now give the same dataset.
func Build(seed int64, now time.Time) *Dataset {
	start := now.UTC().Add(-Span).Truncate(24 * time.Hour)
	for start.Weekday() != time.Sunday {
		start = start.AddDate(0, 0, -1)
	}
	g := &gen{
		rnd:     rand.New(rand.NewPCG(uint64(seed), 0x646f6f7273746570)), // "doorstep"
		now:     start.Add(Span),
		start:   start,
		records: map[recordKey]*crdt.Record{},
		devices: map[string]*device{},
		ds:      &Dataset{},
	}
	g.ds.Teams = []Team{{ID: TeamWigan, Name: "Wigan Frailty"}, {ID: TeamAshton, Name: "Ashton PCN"}}
	for _, u := range users {
		u.Password = DemoPassword
		u.Teams = slices.Clone(u.Teams)
		g.ds.Users = append(g.ds.Users, u)
		var r crdt.ReplicaID
		for i := range r {
			r[i] = byte(g.rnd.UintN(256))
		}
		r[0] |= 1 // never the zero ID
		d := &device{Device: Device{Username: u.Username, Replica: r, Name: deviceNames[u.Username]}}
		d.clock = crdt.NewClock(func() time.Time { return g.wall }, time.Minute)
		g.devices[u.Username] = d
		g.ds.Devices = append(g.ds.Devices, d.Device)
	}
	g.wigan()
	g.ashton()
	g.run()
	return g.ds
}

// Usernames lists the demo users' usernames.
func Usernames() []string {
	out := make([]string, len(users))
	for i, u := range users {
		out[i] = u.Username
	}
	return out
}

var users = []User{
	{Username: "amara", Name: "Amara Okafor", Role: api.RoleLinkWorker, Teams: []string{TeamWigan}},
	{Username: "ben", Name: "Ben Whitfield", Role: api.RoleLinkWorker, Teams: []string{TeamWigan}},
	{Username: "chloe", Name: "Chloe Marsh (health and wellbeing coach)", Role: api.RoleLinkWorker, Teams: []string{TeamWigan}},
	{Username: "diane", Name: "Diane Fletcher", Role: api.RoleCoordinator, Teams: []string{TeamWigan}},
	{Username: "farah", Name: "Farah Hussain", Role: api.RoleLinkWorker, Teams: []string{TeamAshton}},
	{Username: "gareth", Name: "Gareth Lloyd", Role: api.RoleLinkWorker, Teams: []string{TeamAshton}},
	{Username: "helen", Name: "Helen Brooks", Role: api.RoleCoordinator, Teams: []string{TeamAshton}},
	{Username: "admin", Name: "Service Admin", Role: api.RoleAdmin, Teams: []string{TeamWigan, TeamAshton}},
}

var deviceNames = map[string]string{
	"amara": "Amara's tablet", "ben": "Ben's tablet", "chloe": "Chloe's tablet", "diane": "Diane's laptop",
	"farah": "Farah's tablet", "gareth": "Gareth's tablet", "helen": "Helen's laptop", "admin": "Admin laptop",
}

type recordKey struct{ team, collection, id string }

type device struct {
	Device
	clock *crdt.Clock
	seq   uint64
}

// event is one piece of work a user does at a time, pushed as one change.
type event struct {
	at   time.Time
	user string
	n    int // insertion order, to break ties deterministically
	do   func(b *batch)
}

type gen struct {
	rnd     *rand.Rand
	now     time.Time
	start   time.Time
	wall    time.Time // the simulated wall clock every device reads
	latest  crdt.Timestamp
	records map[recordKey]*crdt.Record
	devices map[string]*device
	events  eventQueue
	nEvents int
	finish  []func() // run after every event, to fill in Dataset fields
	ds      *Dataset
}

// at schedules work by user at time t, clamped to before now. Work may
// schedule later work while it runs.
func (g *gen) at(t time.Time, user string, do func(b *batch)) {
	if limit := g.now.Add(-time.Hour); t.After(limit) {
		t = limit
	}
	heap.Push(&g.events, event{at: t, user: user, n: g.nEvents, do: do})
	g.nEvents++
}

// run executes the scheduled work in time order (ties in scheduling
// order), each event a change from its user's device, which syncs (adopts
// the latest clock) before working.
func (g *gen) run() {
	for g.events.Len() > 0 {
		ev := heap.Pop(&g.events).(event)
		g.wall = ev.at
		d := g.devices[ev.user]
		_ = d.clock.Update(g.latest) // never ahead of the wall: the max skew cannot trip
		b := &batch{g: g, dev: d}
		ev.do(b)
		if len(b.ops) == 0 {
			continue
		}
		d.seq++
		g.ds.Pushes = append(g.ds.Pushes, Push{Device: d.Replica, Username: d.Username, Change: api.Change{Seq: d.seq, Ops: b.ops}})
	}
	for _, f := range g.finish {
		f()
	}
	for i := range g.ds.Conflicts {
		c := &g.ds.Conflicts[i]
		c.Clinical = schema.Default().Clinical(c.Collection, c.Field)
	}
}

// eventQueue is a min-heap of events by time, then scheduling order.
type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].n < q[j].n
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// batch collects one change's ops, applying each to the shared state as it
// goes (the device's view and, once pushed, the server's).
type batch struct {
	g   *gen
	dev *device
	ops []crdt.Op
}

func (b *batch) id() crdt.OpID {
	id := crdt.OpID{Time: b.dev.clock.Now(), Replica: b.dev.Replica}
	if id.Time > b.g.latest {
		b.g.latest = id.Time
	}
	return id
}

func (b *batch) apply(rec *crdt.Record, op crdt.Op) {
	if err := schema.Default().ValidateOp(&op); err != nil {
		panic(fmt.Sprintf("demo: generated an invalid op: %v", err)) // a bug in this package; tests catch it
	}
	if err := rec.Apply(&op); err != nil {
		panic(fmt.Sprintf("demo: apply: %v", err))
	}
	b.ops = append(b.ops, op)
}

// kv is one field value for create.
type kv struct {
	field string
	value any
}

// create makes a new record with the given register fields and returns it.
// A nil value is skipped.
func (b *batch) create(team, collection string, fields ...kv) *crdt.Record {
	id := b.g.uuid()
	rec := crdt.NewRecord(team, collection, id)
	b.g.records[recordKey{team, collection, id}] = rec
	for _, f := range fields {
		if f.value != nil {
			b.write(rec, f.field, f.value)
		}
	}
	return rec
}

func (b *batch) write(rec *crdt.Record, field string, v any) {
	b.apply(rec, rec.Write(b.id(), field, val(v)))
}

// writeFrom writes with pred taken from an older view of the record: what
// a device that had not yet seen later edits would send.
func (b *batch) writeFrom(view, rec *crdt.Record, field string, v any) {
	b.apply(rec, view.Write(b.id(), field, val(v)))
}

func (b *batch) add(rec *crdt.Record, field string, elems ...any) {
	for _, e := range elems {
		b.apply(rec, rec.Add(b.id(), field, val(e)))
	}
}

func (b *batch) append(rec *crdt.Record, field string, v any) {
	b.apply(rec, rec.Append(b.id(), field, val(v)))
}

// val encodes a value canonically: compact integers and map keys sorted, so
// the dataset's bytes do not depend on Go's map order.
func val(v any) msgpack.RawMessage {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := encodeSorted(enc, v); err != nil {
		panic(fmt.Sprintf("demo: encode %T: %v", v, err))
	}
	return buf.Bytes()
}

func encodeSorted(enc *msgpack.Encoder, v any) error {
	switch m := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if err := enc.EncodeMapLen(len(keys)); err != nil {
			return err
		}
		for _, k := range keys {
			if err := enc.EncodeString(k); err != nil {
				return err
			}
			if err := encodeSorted(enc, m[k]); err != nil {
				return err
			}
		}
		return nil
	case map[string]int:
		conv := make(map[string]any, len(m))
		for k, x := range m {
			conv[k] = x
		}
		return encodeSorted(enc, conv)
	}
	return enc.Encode(v)
}

// uuid returns a deterministic UUIDv7-shaped ID from the simulated time
// (counted from idEpoch rather than the real start, so that IDs are the
// same whatever day the demo is built) and the seeded generator.
func (g *gen) uuid() string {
	ms := uint64(idEpoch.Add(g.wall.Sub(g.start)).UnixMilli())
	r1, r2 := g.rnd.Uint64(), g.rnd.Uint64()
	return fmt.Sprintf("%08x-%04x-7%03x-%04x-%012x",
		ms>>16, ms&0xffff, r1&0xfff, 0x8000|(r1>>12)&0x3fff, r2&0xffffffffffff)
}

// Helpers for random choices.

func (g *gen) pick(xs []string) string { return xs[g.rnd.IntN(len(xs))] }

func (g *gen) chance(p float64) bool { return g.rnd.Float64() < p }

func (g *gen) between(lo, hi int) int { return lo + g.rnd.IntN(hi-lo+1) }

// pickN returns n distinct elements of xs, in xs's order.
func (g *gen) pickN(xs []string, n int) []string {
	idx := g.rnd.Perm(len(xs))[:min(n, len(xs))]
	slices.Sort(idx)
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = xs[j]
	}
	return out
}

// weighted picks from choices with integer weights.
func (g *gen) weighted(choices []string, weights []int) string {
	return choices[g.weightedIndex(weights)]
}

// weightedIndex picks an index with integer weights.
func (g *gen) weightedIndex(weights []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := g.rnd.IntN(total)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	return len(weights) - 1
}

// workTime returns a time on the day d days after start, between 09:00 and
// 16:30, moved to Monday if the day falls at a weekend.
func (g *gen) workTime(d int) time.Time {
	day := g.start.AddDate(0, 0, d)
	switch day.Weekday() {
	case time.Saturday:
		day = day.AddDate(0, 0, 2)
	case time.Sunday:
		day = day.AddDate(0, 0, 1)
	}
	return day.Add(9*time.Hour + time.Duration(g.rnd.IntN(16))*30*time.Minute)
}

// nhsNumber returns a fresh valid NHS number from the 999 test range.
func (g *gen) nhsNumber(used map[string]bool) string {
	for {
		first9 := fmt.Sprintf("999%06d", g.rnd.IntN(1_000_000))
		check, ok := schema.NHSCheckDigit(first9)
		if !ok {
			continue
		}
		n := fmt.Sprintf("%s%d", first9, check)
		if !used[n] {
			used[n] = true
			return n
		}
	}
}

func date(t time.Time) string     { return t.Format(time.DateOnly) }
func datetime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
