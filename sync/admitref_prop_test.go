package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// TestAdmitMatchesReference is a differential property over pushes shaped
// like a device's: changes of runs of ops per record (a new record's
// fields in a row), new records mixed with stored ones, records of
// another team, erased records, records revisited later in the change,
// IDs out of order across records, copies, reused IDs, preds on ops of
// the same change, type clashes, oversized values, validator and skew
// refusals, under bounds small enough that quotas run out. Each change is
// decided by admitChange and by the reference admission kept from before
// issue 17's third pass (admitref_test.go), each over its own map-backed
// view: the decisions must be equal. The same pushes go to a real engine:
// its replies, its stored record bytes and its log entries must be those
// the reference decided.
func TestAdmitMatchesReference(t *testing.T) {
	seed := testSeed(t)
	// Every change reads its records' purge markers by range (the engine
	// does so from erasedRangeMin records), with the erased records below
	// among them.
	oldMin := erasedRangeMin
	erasedRangeMin = 1
	t.Cleanup(func() { erasedRangeMin = oldMin })
	rng := rand.New(rand.NewSource(seed))
	bounds := Bounds{MaxRecordBytes: 3000, MaxFieldBytes: 1500, QuarantineDeviceEntries: 40, QuarantineDeviceBytes: 16000,
		QuarantineTeamEntries: 8, QuarantineTeamBytes: 1 << 20}
	rules := clinicalRules{clinical: map[string]bool{"cfs": true}, settlers: map[string]bool{api.RoleCoordinator: true}}
	validator := rejectFields{"f1": true}
	e := openTest(t, Options{Wall: func() time.Time { return admitNow },
		MaxSkew: time.Hour, Bounds: bounds, Rules: rules, Validator: validator})
	a := testAdmission()
	a.rules, a.bounds = rules, e.bounds
	ref, cur := newFakeView(), newFakeView()

	// Two erased records: created by a device that pushes nothing else,
	// then erased; the views know only the purge markers.
	setup := Caller{User: "s", Replica: crdt.NewReplicaID(), Teams: []string{"a"}}
	for i, id := range []string{"gone0", "gone1"} {
		op := wop(opAt(setup.Replica, 5_000_000-int64(i)), "a", id, "f0", 1)
		if res, err := e.Push(bg, setup, []api.Change{{Seq: uint64(i + 1), Ops: []crdt.Op{op}}}); err != nil || res[0].Status != api.ChangeApplied {
			t.Fatalf("setup push: %v %+v", err, res)
		}
		admin := Caller{User: "admin", Role: api.RoleAdmin}
		if _, err := e.Erase(bg, admin, api.RecordRef{Team: "a", Collection: "people", ID: id}, false); err != nil {
			t.Fatalf("setup erase: %v", err)
		}
		ref.erased[[2]string{"people", id}], cur.erased[[2]string{"people", id}] = true, true
	}

	type dev struct {
		c    Caller
		seq  uint64
		ms   int64
		sent []crdt.Op
	}
	devs := []*dev{
		{c: Caller{User: "u0", Replica: crdt.NewReplicaID(), Teams: []string{"a"}, Role: api.RoleCoordinator}},
		{c: Caller{User: "u1", Replica: crdt.NewReplicaID(), Teams: []string{"a", "b"}}},
		{c: Caller{User: "u2", Replica: crdt.NewReplicaID(), Teams: []string{"b"}}},
	}
	for _, d := range devs {
		d.ms = 1_000_000
		d.c.Teams = teamSet(d.c.Teams)
	}
	fields := []string{"f0", "f1", "f2", "f3", "cfs", "tags"}
	var all []crdt.Op
	fresh := 0
	// run returns n ops of one record, in ID order, as a device writes a
	// record's fields. A clean run is a new record's first change as the
	// SDK writes it (no preds, values within the bounds and the schema),
	// the shape merged ahead; now and then one of its ops is spoiled in a
	// way only the committer sees (a skewed clock, an ID used earlier in
	// the change).
	run := func(d *dev, team, rec string, n int, inChange []crdt.Op, clean bool) []crdt.Op {
		var out []crdt.Op
		for k := range n {
			d.ms -= int64(1 + rng.Intn(5))
			id := opAt(d.c.Replica, d.ms)
			if !clean && rng.Intn(40) == 0 {
				id = opAt(d.c.Replica, -2*3600*1000-int64(rng.Intn(1000))) // clock_skew
			}
			f := fields[rng.Intn(len(fields))]
			if clean {
				f = fields[k%len(fields)]
			}
			op := crdt.Op{ID: id, Team: team, Collection: "people", Record: rec, Field: f, Kind: crdt.KindWrite, Value: crdt.MustValue(rng.Intn(14))}
			if clean {
				op.Value = crdt.MustValue(rng.Intn(10))
			}
			if f == "tags" || !clean && rng.Intn(30) == 0 {
				op.Kind = crdt.KindAdd // a type clash where the field is a register
			}
			if !clean && rng.Intn(25) == 0 {
				op.Value = crdt.MustValue(strings.Repeat("v", 300+rng.Intn(1200))) // record_too_large in time
			}
			if op.Kind == crdt.KindWrite && !clean {
				switch r := rng.Intn(10); {
				case r == 0:
					op.Pred = []crdt.OpID{opAt(crdt.NewReplicaID(), 2_000_000)} // unknown_pred
				case r < 3 && len(inChange) > 0:
					if p := inChange[rng.Intn(len(inChange))].ID; p.Compare(op.ID) < 0 {
						op.Pred = []crdt.OpID{p} // an op earlier in this change
					}
				case r == 3 && len(all) > 0:
					if p := all[rng.Intn(len(all))].ID; p.Compare(op.ID) < 0 {
						op.Pred = []crdt.OpID{p}
					}
				}
			}
			out = append(out, op)
			inChange = append(inChange, op)
		}
		if clean && n > 1 {
			switch k := 1 + rng.Intn(n-1); rng.Intn(10) {
			case 2:
				if out[k].Field != "tags" && k >= len(fields) {
					out[k].Kind = crdt.KindAdd // a type clash with a write earlier in the run: not merged ahead
				}
			case 3:
				out[k].Value = crdt.MustValue(strings.Repeat("v", 1600)) // record_too_large: not merged ahead
			case 0:
				out[k].ID = opAt(d.c.Replica, -2*3600*1000-int64(rng.Intn(1000))) // clock_skew: held
			case 1:
				if len(inChange) > n {
					out[k].ID = inChange[rng.Intn(len(inChange)-n)].ID // op id used twice
				}
			}
		}
		return out
	}
	stored := map[string][2]string{} // records pushed so far: key → team, id
	pickRecord := func(d *dev) (team, rec string) {
		switch r := rng.Intn(20); {
		case r < 1 && fresh > 0:
			return d.c.Teams[0], fmt.Sprintf("new%d", fresh) // the last new record again (maybe refused so far)
		case r < 8:
			fresh++
			return d.c.Teams[rng.Intn(len(d.c.Teams))], fmt.Sprintf("new%d", fresh)
		case r < 14 && len(stored) > 0:
			keys := make([]string, 0, len(stored))
			for k := range stored {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			s := stored[keys[rng.Intn(len(keys))]]
			if rng.Intn(4) == 0 { // maybe another team's: wrong_team
				return d.c.Teams[rng.Intn(len(d.c.Teams))], s[1]
			}
			return s[0], s[1]
		case r < 16:
			return "a", fmt.Sprint("gone", rng.Intn(2)) // record_erased (or forbidden_team)
		case r < 17:
			return "c", fmt.Sprint("c", rng.Intn(3)) // forbidden_team
		default:
			fresh++
			return d.c.Teams[rng.Intn(len(d.c.Teams))], fmt.Sprint("shared", fresh%40) // new or not, in whichever team wrote it first
		}
	}
	seen := map[api.Code]int{}
	accepted, taken := 0, 0
	for round := range 150 {
		d := devs[rng.Intn(len(devs))]
		var changes []api.Change
		seq := d.seq
		for range 1 + rng.Intn(3) {
			seq++
			ch := api.Change{Seq: seq}
			switch r := rng.Intn(25); {
			case r == 0 && d.seq > 0:
				ch.Seq = d.seq // a duplicate
			case r == 1:
				ch.Seq = seq + 1 // a gap
			}
			var revisit [][2]string
			for range 1 + rng.Intn(4) {
				team, rec := pickRecord(d)
				if len(revisit) > 0 && rng.Intn(4) == 0 {
					team, rec = revisit[0][0], revisit[0][1] // the same record again, later in the change
					if rng.Intn(2) == 0 {
						team = d.c.Teams[rng.Intn(len(d.c.Teams))] // or under another team: wrong_team once claimed
					}
				}
				revisit = append(revisit, [2]string{team, rec})
				if strings.HasPrefix(rec, "new") && rng.Intn(2) == 0 {
					ch.Ops = append(ch.Ops, run(d, team, rec, 2+rng.Intn(10), ch.Ops, true)...)
				} else {
					ch.Ops = append(ch.Ops, run(d, team, rec, 1+rng.Intn(8), ch.Ops, false)...)
				}
			}
			switch r := rng.Intn(8); {
			case r == 0 && len(ch.Ops) > 1:
				// An ID out of order: the last op takes a time before the
				// first's (the opIDSet's map).
				last := &ch.Ops[len(ch.Ops)-1]
				last.ID.Time = ch.Ops[0].ID.Time - 1
				last.Pred = nil
			case r == 1 && len(ch.Ops) > 1:
				ch.Ops[len(ch.Ops)-1].ID = ch.Ops[0].ID // op id used twice
			case (r == 2 || r == 3) && len(d.sent) > 0:
				old := d.sent[rng.Intn(len(d.sent))]
				if rng.Intn(2) == 0 {
					old.Value = crdt.MustValue(100 + rng.Intn(100)) // op_id_reused
				}
				ch.Ops = append(ch.Ops, old) // else a copy
			}
			d.sent = append(d.sent, ch.Ops...)
			all = append(all, ch.Ops...)
			changes = append(changes, ch)
		}
		got, err := e.Push(bg, d.c, changes)
		if err != nil {
			t.Fatalf("seed %d round %d: push: %v", seed, round, err)
		}
		var want []api.ChangeResult
		for i := range changes {
			ch := &changes[i]
			pre := make([]*refusal, len(ch.Ops))
			val := make([]error, len(ch.Ops))
			for j := range ch.Ops {
				if pre[j] = precheck(&d.c, &ch.Ops[j]); pre[j] == nil {
					val[j] = validator.ValidateOp(&ch.Ops[j])
				}
			}
			dr, err := a.admitChangeRef(ref, &d.c, ch, pre, val)
			if err != nil {
				t.Fatal(err)
			}
			dc, err := a.admitChangeRuns(cur, &d.c, ch, pre, val, mergeAhead(a.bounds, ch, pre, val))
			if err != nil {
				t.Fatal(err)
			}
			if msg := decisionsDiffer(&dr, &dc); msg != "" {
				t.Fatalf("seed %d round %d change %d: %s", seed, round, ch.Seq, msg)
			}
			ref.apply(&d.c, &dr)
			cur.apply(&d.c, &dc)
			if msg := sizesDiffer(ref, cur, &dr, &dc); msg != "" {
				t.Fatalf("seed %d round %d change %d: %s", seed, round, ch.Seq, msg)
			}
			want = append(want, dr.result)
			accepted += len(dr.accepted)
			taken += len(dc.built)
			for _, op := range dr.accepted {
				stored[string(store.RecordKey(op.Team, op.Collection, op.Record))] = [2]string{op.Team, op.Record}
			}
		}
		ref.keep(d.c.Replica, want)
		cur.keep(d.c.Replica, want)
		ref.endTxn()
		cur.endTxn()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d round %d: engine\n%+v\nreference admission\n%+v", seed, round, got, want)
		}
		for _, r := range got {
			seen[r.Code]++
			for _, o := range r.Ops {
				seen[o.Code]++
			}
			if r.Status == api.ChangeApplied {
				d.seq = r.Seq
			}
		}
	}
	// Stored bytes: the engine's r/ values hold exactly the states the
	// reference decided, and the current admission's maps agree.
	engineStates := storedStates(t, e, "a", "b")
	if len(engineStates) != len(ref.records) || len(cur.records) != len(ref.records) {
		t.Fatalf("seed %d: engine stores %d records, reference %d, current %d", seed, len(engineStates), len(ref.records), len(cur.records))
	}
	for k, r := range ref.records {
		b, err := crdt.MarshalRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		c, err := crdt.MarshalRecord(cur.records[k])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(engineStates[k], b) || !bytes.Equal(c, b) {
			es, _ := crdt.UnmarshalRecord(engineStates[k])
			t.Fatalf("seed %d: record %q: states differ (engine same as reference: %v, current: %v)\nreference %+v\ncurrent   %+v\nengine    %+v",
				seed, k, bytes.Equal(engineStates[k], b), bytes.Equal(c, b), r, cur.records[k], es)
		}
	}
	// Log entries: per team, the engine's entries with ops (the erasures
	// have none) are the reference's, in order, op for op.
	for _, team := range []string{"a", "b"} {
		var wantLog [][]crdt.Op
		for _, ops := range ref.logs[team] {
			if len(ops) > 0 {
				wantLog = append(wantLog, ops)
			}
		}
		if gotLog := logOps(t, e, team); !reflect.DeepEqual(gotLog, wantLog) {
			t.Fatalf("seed %d: team %s: engine log has %d entries with ops, reference %d (or their ops differ)", seed, team, len(gotLog), len(wantLog))
		}
	}
	t.Logf("%d ops accepted into %d records, %d runs merged ahead taken; codes seen: %v", accepted, len(ref.records), taken, seen)
	if taken < 10 {
		t.Errorf("seed %d: only %d runs merged ahead were taken", seed, taken)
	}
	if accepted < 300 {
		t.Errorf("seed %d: only %d ops accepted", seed, accepted)
	}
	for _, c := range []api.Code{"", api.CodeWrongTeam, api.CodeRecordErased, api.CodeInvalidOp, api.CodeOpIDReused,
		api.CodeUnknownPred, api.CodeClockSkew, api.CodeInvalidValue, api.CodeRecordTooLarge, api.CodeQuarantineFull} {
		if seen[c] == 0 {
			t.Errorf("seed %d: no %q in the run: too tame to show it", seed, c)
		}
	}
}

// decisionsDiffer compares two decisions field by field (the batches, and
// the runs merged ahead that stand for batches, by record and op count;
// the states they make are compared after apply) and says how they
// differ, or "".
func decisionsDiffer(a, b *changeDecision) string {
	switch {
	case !reflect.DeepEqual(a.result, b.result):
		return fmt.Sprintf("results differ:\n%+v\n%+v", a.result, b.result)
	case a.apply != b.apply:
		return "apply differs"
	case !reflect.DeepEqual(a.accepted, b.accepted):
		return fmt.Sprintf("accepted ops differ: %d and %d", len(a.accepted), len(b.accepted))
	case !reflect.DeepEqual(a.held, b.held):
		return "held ops differ"
	case !reflect.DeepEqual(a.summaries, b.summaries):
		return "refusal summaries differ"
	case !reflect.DeepEqual(sizeTotals(a.sizes), sizeTotals(b.sizes)):
		return fmt.Sprintf("sizes differ:\n%v\n%v", a.sizes, b.sizes)
	}
	if qa, qb := queued(a), queued(b); !reflect.DeepEqual(qa, qb) {
		return fmt.Sprintf("ops queued per record differ:\n%v\n%v", qa, qb)
	}
	return ""
}

// sizeTotals returns the record size estimates of a decision without
// their per-field estimates, which sizesDiffer compares once the
// decision is applied.
func sizeTotals(sizes map[string]recSize) map[string]int {
	out := map[string]int{}
	for k, s := range sizes {
		out[k] = s.total
	}
	return out
}

// sizesDiffer compares the per-field size estimates of two views that
// applied equal decisions (a and b), for the records the decisions
// sized, as checkSize would read them next: a field's estimate, or if
// the view keeps none for it, its state's encodedFieldSize (a run merged
// ahead from its ops alone keeps none, see newRun.sz). It says how they
// differ, or "".
func sizesDiffer(va, vb *fakeView, a, b *changeDecision) string {
	fields := func(v *fakeView, k string) map[string]int {
		out := map[string]int{}
		for name, f := range v.records[k].Fields {
			out[name] = encodedFieldSize(name, f)
		}
		for name, n := range v.sizes[k].fields {
			out[name] = n
		}
		return out
	}
	for _, d := range []*changeDecision{a, b} {
		for k := range d.sizes {
			if fa, fb := fields(va, k), fields(vb, k); !reflect.DeepEqual(fa, fb) {
				return fmt.Sprintf("record %q: field size estimates differ:\n%v\n%v", k, fa, fb)
			}
		}
	}
	return ""
}

// queued returns the op count a decision merges per record key: its
// batches' and its runs merged ahead.
func queued(d *changeDecision) map[string]int {
	out := map[string]int{}
	for _, b := range d.batches {
		r := b.Record()
		out[string(store.RecordKey(r.Team, r.Collection, r.ID))] += b.Len()
	}
	for _, u := range d.built {
		out[string(store.RecordKey(u.rec.Team, u.rec.Collection, u.rec.ID))] += u.run.end - u.run.start
	}
	return out
}

// storedStates returns the engine's stored record states (the
// crdt.MarshalRecord bytes under r/) of the teams, by record key.
func storedStates(t *testing.T, e *Engine, teams ...string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for ref := range serverRecords(t, e, teams...) {
		err := e.kv.View(bg, func(txn store.Tx) error {
			sr, err := store.GetRecord(txn, ref.Team, ref.Collection, ref.ID)
			out[string(store.RecordKey(ref.Team, ref.Collection, ref.ID))] = sr.State
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// logOps returns the ops of each of the team's log entries that has any,
// in log order.
func logOps(t *testing.T, e *Engine, team string) [][]crdt.Op {
	t.Helper()
	var out [][]crdt.Op
	err := e.kv.View(bg, func(txn store.Tx) error {
		prefix := store.LogPrefix(team)
		it := txn.Iterate(store.IterOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.Valid(); it.Next() {
			var le store.LogEntry
			if err := itValue(it, func(v []byte) error { return store.Decode(v, &le) }); err != nil {
				return err
			}
			if len(le.Ops) > 0 {
				out = append(out, le.Ops)
			}
		}
		return it.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// countingKV counts the point reads of write transactions by key prefix
// ("x/", "r/"...), and the writes refused with store.ErrTxnTooBig.
type countingKV struct {
	store.KV
	mu     gosync.Mutex
	gets   map[string]int
	tooBig int
}

type countingTxn struct {
	store.Txn
	kv *countingKV
}

func (c *countingKV) Begin(ctx context.Context, update bool) (store.Txn, error) {
	t, err := c.KV.Begin(ctx, update)
	if err != nil || !update {
		return t, err
	}
	return countingTxn{t, c}, nil
}

func (t countingTxn) Get(key []byte) ([]byte, error) {
	t.kv.mu.Lock()
	t.kv.gets[string(key[:min(2, len(key))])]++
	t.kv.mu.Unlock()
	return t.Txn.Get(key)
}

func (t countingTxn) Set(key, value []byte) error {
	err := t.Txn.Set(key, value)
	if errors.Is(err, store.ErrTxnTooBig) {
		t.kv.mu.Lock()
		t.kv.tooBig++
		t.kv.mu.Unlock()
	}
	return err
}

func (t countingTxn) Commit() error {
	err := t.Txn.Commit()
	if errors.Is(err, store.ErrTxnTooBig) {
		t.kv.mu.Lock()
		t.kv.tooBig++
		t.kv.mu.Unlock()
	}
	return err
}

func (c *countingKV) takeTooBig() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.tooBig
	c.tooBig = 0
	return n
}

func (c *countingKV) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.gets
	c.gets = map[string]int{}
	return g
}

// TestNewRecordReads: a push of a new record of 30 fields reads its owner
// and its purge marker once each, and not its state (no team owns it, so
// none stores it); a second push to it reads the owner and the state
// once each, and no purge marker (it has an owner). Both store what the
// engine merged.
func TestNewRecordReads(t *testing.T) {
	kv := &countingKV{KV: testKV(t, t.TempDir()), gets: map[string]int{}}
	e := openTest(t, Options{Store: kv, Wall: func() time.Time { return admitNow }})
	c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	var ops []crdt.Op
	for f := range 30 {
		ops = append(ops, wop(opAt(c.Replica, int64(1000-f)), "wigan", "p1", fmt.Sprintf("f%02d", f), f))
	}
	kv.take()
	if res, err := e.Push(bg, c, []api.Change{{Seq: 1, Ops: ops}}); err != nil || res[0].Status != api.ChangeApplied || len(res[0].Ops) > 0 {
		t.Fatalf("push: %v %+v", err, res)
	}
	if g := kv.take(); g["x/"] != 1 || g["p/"] != 1 || g["r/"] != 0 {
		t.Errorf("new record: reads by prefix %v, want x/ 1, p/ 1, r/ 0", g)
	}
	next := make([]crdt.Op, len(ops))
	for i, op := range ops {
		next[i] = wop(opAt(c.Replica, int64(500-i)), "wigan", "p1", op.Field, 100+i, op.ID)
	}
	if res, err := e.Push(bg, c, []api.Change{{Seq: 2, Ops: next}}); err != nil || res[0].Status != api.ChangeApplied || len(res[0].Ops) > 0 {
		t.Fatalf("push: %v %+v", err, res)
	}
	if g := kv.take(); g["x/"] != 1 || g["p/"] != 0 || g["r/"] != 1 {
		t.Errorf("stored record: reads by prefix %v, want x/ 1, p/ 0, r/ 1", g)
	}
	want := crdt.NewRecord("wigan", "people", "p1")
	for _, op := range append(ops, next...) {
		if err := want.Apply(&op); err != nil {
			t.Fatal(err)
		}
	}
	wb, _ := crdt.MarshalRecord(want)
	if got := storedStates(t, e, "wigan")[string(store.RecordKey("wigan", "people", "p1"))]; !bytes.Equal(got, wb) {
		t.Errorf("stored state differs from the ops applied one by one")
	}
}

// TestMergeAheadFallbacks: the runs merged ahead that admission must not
// take, or must stop taking, in one push (one transaction): a new record
// whose earlier change was refused for size (blank, but its estimate has
// grown), a run with a skewed op in its middle (held: the ops before it
// are queued the usual way), a record revisited later in the change (its
// run is queued the usual way), a run whose field types clash (never
// merged ahead); and a record merged ahead then overwritten in the same
// push (its state changes after it was encoded ahead). Each change's
// decision equals the reference's, and the engine stores what the
// reference decided.
func TestMergeAheadFallbacks(t *testing.T) {
	a := testAdmission()
	e := openTest(t, Options{Wall: func() time.Time { return admitNow }, MaxSkew: time.Hour, Bounds: Bounds{MaxRecordBytes: 3000, MaxFieldBytes: 1500}})
	a.bounds = e.bounds
	c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"a"}}
	c.Teams = teamSet(c.Teams)
	ms := int64(100_000)
	run := func(rec string, n int) []crdt.Op {
		var ops []crdt.Op
		for f := range n {
			ms--
			ops = append(ops, wop(opAt(c.Replica, ms), "a", rec, fmt.Sprint("f", f), f))
		}
		return ops
	}
	big := run("x", 1)
	big[0].Value = crdt.MustValue(strings.Repeat("v", 1600)) // record_too_large
	skewed := run("y", 6)
	skewed[3].ID = opAt(c.Replica, -2*3600*1000)
	clash := run("v", 6)
	clash[4].Field, clash[4].Kind = "f1", crdt.KindAdd
	w := run("w", 5)
	var over []crdt.Op // w's fields overwritten, in the same push (its merged-ahead state changes in the transaction)
	for _, op := range w[:3] {
		ms--
		over = append(over, wop(opAt(c.Replica, ms), "a", "w", op.Field, 50, op.ID))
	}
	changes := []api.Change{
		{Seq: 1, Ops: big},
		{Seq: 2, Ops: run("x", 6)},
		{Seq: 3, Ops: skewed},
		{Seq: 4, Ops: slices.Concat(run("z", 5), w, run("z", 5))},
		{Seq: 5, Ops: clash},
		{Seq: 6, Ops: over},
	}
	wantTaken := []int{0, 0, 0, 1, 0, 0}
	ref, cur := newFakeView(), newFakeView()
	var want []api.ChangeResult
	for i := range changes {
		ch := &changes[i]
		pre := make([]*refusal, len(ch.Ops))
		val := make([]error, len(ch.Ops))
		for j := range ch.Ops {
			pre[j] = precheck(&c, &ch.Ops[j])
		}
		runs := mergeAhead(a.bounds, ch, pre, val)
		dr, err := a.admitChangeRef(ref, &c, ch, pre, val)
		if err != nil {
			t.Fatal(err)
		}
		dc, err := a.admitChangeRuns(cur, &c, ch, pre, val, runs)
		if err != nil {
			t.Fatal(err)
		}
		if msg := decisionsDiffer(&dr, &dc); msg != "" {
			t.Fatalf("change %d: %s", ch.Seq, msg)
		}
		if len(dc.built) != wantTaken[i] {
			t.Errorf("change %d: %d runs merged ahead taken, want %d (of %d merged ahead)", ch.Seq, len(dc.built), wantTaken[i], len(runs))
		}
		ref.apply(&c, &dr)
		cur.apply(&c, &dc)
		if msg := sizesDiffer(ref, cur, &dr, &dc); msg != "" {
			t.Fatalf("change %d: %s", ch.Seq, msg)
		}
		want = append(want, dr.result)
	}
	if n := len(mergeAhead(a.bounds, &changes[4], make([]*refusal, 6), make([]error, 6))); n != 0 {
		t.Errorf("a run whose field types clash was merged ahead")
	}
	got, err := e.Push(bg, c, changes)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("engine: %v\n%+v\nreference\n%+v", err, got, want)
	}
	states := storedStates(t, e, "a")
	for k, r := range ref.records {
		if r.IsEmpty() {
			continue
		}
		b, _ := crdt.MarshalRecord(r)
		cb, _ := crdt.MarshalRecord(cur.records[k])
		if !bytes.Equal(states[k], b) || !bytes.Equal(cb, b) {
			t.Errorf("record %q: engine, reference and current states differ", k)
		}
	}
}

// TestSplitKeepsRunsMergedAhead: a push too big for one transaction is
// committed in halves after a first attempt fails; records merged ahead
// and changed again later in the same push (in the failed attempt too)
// end as the device has them, so the first attempt left the states
// merged ahead as they were made.
func TestSplitKeepsRunsMergedAhead(t *testing.T) {
	e := openTest(t, Options{}) // transactions up to ~2 MB (see TestTxnTooBigSplits)
	d := newDevice("ann", time.Now, "wigan")
	big := string(make([]byte, 1000))
	var changes []api.Change
	for i := range 40 {
		for k := range 40 {
			d.write("wigan", "contacts", fmt.Sprintf("c%d", i), fmt.Sprintf("f%d", k), big)
		}
		if i%3 == 2 {
			// The record of two changes back, overwritten.
			for k := range 5 {
				d.write("wigan", "contacts", fmt.Sprintf("c%d", i-2), fmt.Sprintf("f%d", k), i)
			}
		}
		changes = append(changes, d.commit())
	}
	ahead := 0
	for i := range changes {
		pre := make([]*refusal, len(changes[i].Ops))
		for j := range pre {
			pre[j] = precheck(&d.caller, &changes[i].Ops[j])
		}
		ahead += len(mergeAhead(e.bounds, &changes[i], pre, make([]error, len(pre))))
	}
	if ahead < 40 {
		t.Fatalf("only %d runs merged ahead", ahead)
	}
	res := push(t, e, d, changes...)
	for i, r := range res {
		if r.Seq != uint64(i+1) || r.Status != api.ChangeApplied || len(r.Ops) > 0 {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	if diff := diffStates(encoded(t, d.recs), encoded(t, serverRecords(t, e, "wigan"))); diff != "" {
		t.Fatal(diff)
	}
}

// TestSplitLearnsTheStoreLimit: once the store has refused a push as too
// big for one transaction, a push as heavy is committed in halves without
// a first attempt that fails (its work done twice), and applied whole.
func TestSplitLearnsTheStoreLimit(t *testing.T) {
	kv := &countingKV{KV: testKV(t, t.TempDir()), gets: map[string]int{}}
	e := openTest(t, Options{Store: kv}) // transactions up to ~2 MB (see TestTxnTooBigSplits)
	d := newDevice("ann", time.Now, "wigan")
	big := string(make([]byte, 1000))
	heavy := func(name string) []api.Change {
		var changes []api.Change
		for i := range 40 {
			for k := range 40 {
				d.write("wigan", "contacts", fmt.Sprintf("%s%d", name, i), fmt.Sprintf("f%d", k), big)
			}
			changes = append(changes, d.commit())
		}
		return changes
	}
	for _, name := range []string{"a", "b"} {
		res := push(t, e, d, heavy(name)...)
		for _, r := range res {
			if r.Status != api.ChangeApplied || len(r.Ops) > 0 {
				t.Fatalf("push %s: %+v", name, r)
			}
		}
		switch n := kv.takeTooBig(); {
		case name == "a" && n == 0:
			t.Fatalf("push a fitted one transaction: the test shows nothing")
		case name == "b" && n > 0:
			t.Errorf("push b, as heavy as a: %d transactions refused as too big, want 0", n)
		}
	}
	if diff := diffStates(encoded(t, d.recs), encoded(t, serverRecords(t, e, "wigan"))); diff != "" {
		t.Fatal(diff)
	}
}

// TestSplitRewritesRunHeaders: a push whose first commit attempt the
// store refuses as too big, after the attempt wrote the r/ values of
// records merged ahead (their header in place, newRun.value), is
// committed in halves at a later time; every record ends with the time
// of the attempt that stored it in its r/ value, the same as its
// changed-since entry's, and its state as the device has it.
func TestSplitRewritesRunHeaders(t *testing.T) {
	wall := newFakeWall()
	e := openTest(t, Options{Wall: wall.Now}) // transactions up to ~2 MB (see TestTxnTooBigSplits)
	d := newDevice("ann", wall.Now, "wigan")
	big := string(make([]byte, 1000))
	var changes []api.Change
	for i := range 40 {
		for k := range 40 {
			d.write("wigan", "contacts", fmt.Sprintf("c%d", i), fmt.Sprintf("f%d", k), big)
		}
		changes = append(changes, d.commit())
	}
	before := wall.Now().UnixMilli()
	res := push(t, e, d, changes...)
	for i, r := range res {
		if r.Status != api.ChangeApplied || len(r.Ops) > 0 {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	if e.splitAt == 0 {
		t.Fatal("the push was not split: no attempt failed")
	}
	times := map[int64]int{}
	err := e.kv.View(bg, func(tx store.Tx) error {
		for i := range 40 {
			id := fmt.Sprintf("c%d", i)
			sr, err := store.GetRecord(tx, "wigan", "contacts", id)
			if err != nil {
				return err
			}
			if sr.UpdatedMS <= before {
				return fmt.Errorf("%s: stored at %d, before the push (%d)", id, sr.UpdatedMS, before)
			}
			if _, err := tx.Get(store.ChangedKey("wigan", sr.UpdatedMS, "contacts", id)); err != nil {
				return fmt.Errorf("%s: no changed-since entry at its r/ time %d: %w", id, sr.UpdatedMS, err)
			}
			times[sr.UpdatedMS]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(times) < 2 {
		t.Fatalf("every record stored at one time %v: the halves were not committed apart", times)
	}
	if diff := diffStates(encoded(t, d.recs), encoded(t, serverRecords(t, e, "wigan"))); diff != "" {
		t.Fatal(diff)
	}
}
