package sync

import (
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/memory"
)

// The pure push admission (admit.go), tested over a map: no store, no
// engine, no committer.

// fakeView is an admissionView over plain maps.
type fakeView struct {
	hwm         map[crdt.ReplicaID]uint64
	reported    map[string][]api.OpResult // replica/seq
	owners      map[[2]string]string
	erased      map[[2]string]bool
	records     map[string]*crdt.Record // store.RecordKey
	sizes       map[string]recSize
	quarantined map[crdt.OpID]bool
	merged      map[string]crdt.Op     // record key + op ID: seeded history (table tests)
	logs        map[string][][]crdt.Op // team → entries (position = index + 1), as writeLog groups them
	history     map[string][]int       // record key → positions that touched it
	dev         map[crdt.ReplicaID]store.QuarantineUsage
	team        map[string]store.QuarantineUsage
	stored      []store.QuarantineEntry // what apply stored, in order
	reads       int                     // Record calls (to check the view is what is read)
	pos         int                     // last log position
}

func newFakeView() *fakeView {
	return &fakeView{
		hwm: map[crdt.ReplicaID]uint64{}, reported: map[string][]api.OpResult{},
		owners: map[[2]string]string{}, erased: map[[2]string]bool{},
		records: map[string]*crdt.Record{}, sizes: map[string]recSize{},
		quarantined: map[crdt.OpID]bool{}, merged: map[string]crdt.Op{},
		logs: map[string][][]crdt.Op{}, history: map[string][]int{},
		dev: map[crdt.ReplicaID]store.QuarantineUsage{}, team: map[string]store.QuarantineUsage{},
	}
}

func (f *fakeView) HighWater(r crdt.ReplicaID) (uint64, error) { return f.hwm[r], nil }
func (f *fakeView) Reported(r crdt.ReplicaID, seq uint64) ([]api.OpResult, error) {
	return f.reported[fmt.Sprint(r, "/", seq)], nil
}
func (f *fakeView) Owner(coll, id string) (string, error) { return f.owners[[2]string{coll, id}], nil }
func (f *fakeView) Erased(coll, id string) (bool, error)  { return f.erased[[2]string{coll, id}], nil }
func (f *fakeView) Record(team, coll, id string) (*crdt.Record, error) {
	f.reads++
	k := string(store.RecordKey(team, coll, id))
	r, ok := f.records[k]
	if !ok {
		r = crdt.NewRecord(team, coll, id)
		f.records[k] = r
		f.sizes[k] = recSize{total: 16 + len(team) + len(coll) + len(id)}
	}
	return r, nil
}
func (f *fakeView) Size(team, coll, id string) (recSize, error) {
	if _, err := f.Record(team, coll, id); err != nil {
		return recSize{}, err
	}
	return f.sizes[string(store.RecordKey(team, coll, id))].clone(), nil
}
func (f *fakeView) Quarantined(id crdt.OpID) (bool, error) { return f.quarantined[id], nil }
func (f *fakeView) MergedOp(team, coll, rec string, id crdt.OpID) (crdt.Op, bool, error) {
	// As the store answers it: the first op with the ID in the team's
	// log entries that touched the record (an entry holds the whole
	// change's ops for the team, other records' too).
	for _, pos := range f.history[string(store.RecordKey(team, coll, rec))] {
		for _, op := range f.logs[team][pos-1] {
			if op.ID == id {
				return op, true, nil
			}
		}
	}
	op, ok := f.merged[mergedKey(team, coll, rec, id)]
	return op, ok, nil
}
func (f *fakeView) DeviceUsage(r crdt.ReplicaID) (store.QuarantineUsage, error) { return f.dev[r], nil }
func (f *fakeView) TeamUsage(team string) (store.QuarantineUsage, error)        { return f.team[team], nil }

// apply stores a decision in the maps as the committer stores it in a
// transaction (txnState.applyChange).
func (f *fakeView) apply(c *Caller, d *changeDecision) {
	if !d.apply {
		return
	}
	for _, u := range d.built { // runs merged ahead (admitChangeRuns)
		k := string(store.RecordKey(u.rec.Team, u.rec.Collection, u.rec.ID))
		if f.records[k] != u.rec {
			panic("a run merged ahead taken for a state the view does not hold")
		}
		rec, err := u.run.record() // the run stays as made (recState.shared)
		if err != nil {
			panic(err)
		}
		f.records[k] = rec
	}
	for k, s := range d.sizes {
		f.sizes[k] = s
	}
	f.pos++
	touched := map[string]bool{}
	for _, op := range d.accepted {
		f.owners[[2]string{op.Collection, op.Record}] = op.Team
		entries := f.logs[op.Team]
		for len(entries) < f.pos {
			entries = append(entries, nil)
		}
		entries[f.pos-1] = append(entries[f.pos-1], op)
		f.logs[op.Team] = entries
		if k := string(store.RecordKey(op.Team, op.Collection, op.Record)); !touched[k] {
			touched[k] = true
			f.history[k] = append(f.history[k], f.pos)
		}
	}
	for _, w := range d.held {
		op := w.entry.Op
		f.quarantined[op.ID] = true
		f.owners[[2]string{op.Collection, op.Record}] = op.Team
		rec, _ := f.Record(op.Team, op.Collection, op.Record)
		rec.Skip(op.ID)
	}
	for _, w := range append(slices.Clone(d.held), d.summaries...) {
		q := w.entry
		u := f.dev[q.Replica]
		u.Entries, u.Bytes = u.Entries+1, u.Bytes+q.Charged
		f.dev[q.Replica] = u
		if q.Reapplicable {
			u := f.team[q.Op.Team]
			u.Entries, u.Bytes = u.Entries+1, u.Bytes+q.Charged
			f.team[q.Op.Team] = u
		}
		f.stored = append(f.stored, q)
	}
	for _, b := range d.batches {
		b.Flush()
	}
	f.hwm[c.Replica] = d.result.Seq
}

func mergedKey(team, coll, rec string, id crdt.OpID) string {
	return string(id.AppendBinary(store.RecordKey(team, coll, rec)))
}

// endTxn forgets what only one transaction keeps: size estimates start
// again from the stored states (exact), and records never stored are
// dropped, as a new commit transaction reads them.
func (f *fakeView) endTxn() {
	for k, r := range f.records {
		if r.IsEmpty() {
			delete(f.records, k)
			delete(f.sizes, k)
			continue
		}
		b, err := crdt.MarshalRecord(r)
		if err != nil {
			panic(err)
		}
		f.sizes[k] = recSize{total: len(b)}
	}
}

// keep keeps a push's op results for Reported, as keepReported does.
func (f *fakeView) keep(r crdt.ReplicaID, results []api.ChangeResult) {
	kept := map[string][]api.OpResult{}
	for _, res := range results {
		if len(res.Ops) == 0 || (res.Status != api.ChangeApplied && res.Status != api.ChangeDuplicate) {
			continue
		}
		var ops []api.OpResult
		for _, o := range res.Ops {
			ops = append(ops, api.OpResult{Index: o.Index, Code: o.Code, Quarantined: o.Quarantined,
				Detail: "reported again (the reply to the first push of this change was lost)"})
		}
		kept[fmt.Sprint(r, "/", res.Seq)] = ops
	}
	if len(kept) == 0 {
		return
	}
	for k := range f.reported {
		if strings.HasPrefix(k, r.String()+"/") {
			delete(f.reported, k)
		}
	}
	maps.Copy(f.reported, kept)
}

// clinicalRules: fields in clinical are clinical; settlers may settle.
type clinicalRules struct {
	clinical map[string]bool
	settlers map[string]bool
}

func (r clinicalRules) Clinical(_, field string) bool    { return r.clinical[field] }
func (r clinicalRules) MaySettle(_, _, role string) bool { return r.settlers[role] }

var admitNow = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)

func testAdmission() *admission {
	clock := crdt.NewClock(func() time.Time { return admitNow }, time.Hour)
	return &admission{
		rules:  clinicalRules{clinical: map[string]bool{"cfs": true}, settlers: map[string]bool{api.RoleCoordinator: true}},
		bounds: DefaultBounds, skew: clock.Check, now: admitNow,
	}
}

// opAt returns an op ID of replica r at ms milliseconds before admitNow.
func opAt(r crdt.ReplicaID, msBefore int64) crdt.OpID {
	return crdt.OpID{Time: crdt.MakeTimestamp(admitNow.UnixMilli()-msBefore, 0), Replica: r}
}

func wop(id crdt.OpID, team, rec, field string, v any, pred ...crdt.OpID) crdt.Op {
	return crdt.Op{ID: id, Team: team, Collection: "people", Record: rec, Field: field, Kind: crdt.KindWrite, Value: crdt.MustValue(v), Pred: pred}
}

// admitOne runs prechecks (with val as the Validator's verdicts, or none)
// and admitChange, as Push and the committer do.
func admitOne(t *testing.T, a *admission, v admissionView, c *Caller, ch api.Change, val []error) changeDecision {
	t.Helper()
	pre := make([]*refusal, len(ch.Ops))
	if val == nil {
		val = make([]error, len(ch.Ops))
	}
	for i := range ch.Ops {
		pre[i] = precheck(c, &ch.Ops[i])
	}
	d, err := a.admitChange(v, c, &ch, pre, val)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func codes(d changeDecision) string {
	var out []string
	for _, o := range d.result.Ops {
		s := fmt.Sprintf("%d:%s", o.Index, o.Code)
		if o.Quarantined {
			s += "(q)"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

// TestAdmitTable: each refusal code of a push, decided over a map-backed
// view. Every case starts from one stored record, wigan/people/p1, with
// chloe's cfs 4 and phone "1" merged (seq 1), and pushes seq 2 unless it
// says otherwise.
func TestAdmitTable(t *testing.T) {
	chloe := Caller{User: "chloe", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}, Role: api.RoleLinkWorker}
	amara := crdt.NewReplicaID()
	base := []crdt.Op{
		wop(opAt(chloe.Replica, 9000), "wigan", "p1", "cfs", 4),
		wop(opAt(chloe.Replica, 8900), "wigan", "p1", "phone", "1"),
	}
	amaraCFS := wop(opAt(amara, 8800), "wigan", "p1", "cfs", 6) // concurrent with chloe's 4: a conflict on cfs when merged
	seed := func(conflict bool) *fakeView {
		f := newFakeView()
		ops := slices.Clone(base)
		if conflict {
			ops = append(ops, amaraCFS)
		}
		rec, _ := f.Record("wigan", "people", "p1")
		for i := range ops {
			if err := rec.Apply(&ops[i]); err != nil {
				t.Fatal(err)
			}
			f.merged[mergedKey("wigan", "people", "p1", ops[i].ID)] = ops[i]
		}
		f.owners[[2]string{"people", "p1"}] = "wigan"
		f.hwm[chloe.Replica] = 1
		f.erased[[2]string{"people", "gone"}] = true
		f.owners[[2]string{"people", "theirs"}] = "bolton"
		return f
	}
	next := func(ms int64) crdt.OpID { return opAt(chloe.Replica, ms) }
	cases := []struct {
		name     string
		conflict bool
		caller   *Caller
		seq      uint64 // 0: 2, the next
		zeroSeq  bool
		ops      []crdt.Op
		val      []error
		bounds   func(*Bounds)
		prep     func(*fakeView)
		status   api.ChangeStatus
		code     api.Code // change-level
		want     string   // op codes
		accepted int
		held     int
		summ     []string // summary codes stored
	}{
		{name: "applied", ops: []crdt.Op{wop(next(100), "wigan", "p1", "phone", "2", base[1].ID)},
			status: api.ChangeApplied, accepted: 1},
		{name: "seq 0", zeroSeq: true, ops: []crdt.Op{wop(next(100), "wigan", "p1", "phone", "2")},
			status: api.ChangeRefused, code: api.CodeBadRequest},
		{name: "duplicate", seq: 1, ops: []crdt.Op{wop(next(100), "wigan", "p1", "phone", "2")},
			prep: func(f *fakeView) {
				f.reported[fmt.Sprint(chloe.Replica, "/", 1)] = []api.OpResult{{Index: 0, Code: api.CodeUnknownPred}}
			},
			status: api.ChangeDuplicate, want: "0:unknown_pred"},
		{name: "seq gap", seq: 3, ops: []crdt.Op{wop(next(100), "wigan", "p1", "phone", "2")},
			status: api.ChangeRefused, code: api.CodeSeqGap},
		{name: "forbidden team (precheck)", ops: []crdt.Op{wop(next(100), "bolton", "p9", "phone", "2")},
			status: api.ChangeApplied, want: "0:forbidden_team", summ: []string{"forbidden_team"}},
		{name: "wrong team", ops: []crdt.Op{wop(next(100), "wigan", "theirs", "phone", "2")},
			status: api.ChangeApplied, want: "0:wrong_team", summ: []string{"wrong_team"}},
		{name: "wrong team claimed earlier in the change", caller: &Caller{User: "chloe", Replica: chloe.Replica, Teams: []string{"wigan", "leigh"}},
			ops:    []crdt.Op{wop(next(200), "wigan", "new", "phone", "2"), wop(next(100), "leigh", "new", "phone", "3")},
			status: api.ChangeApplied, want: "1:wrong_team", accepted: 1, summ: []string{"wrong_team"}},
		{name: "record erased (not kept)", ops: []crdt.Op{wop(next(100), "wigan", "gone", "phone", "2")},
			status: api.ChangeApplied, want: "0:record_erased"},
		{name: "exact copy skipped", ops: []crdt.Op{base[1], wop(next(100), "wigan", "p1", "phone", "2", base[1].ID)},
			status: api.ChangeApplied, accepted: 1},
		{name: "op id reused (live value differs)", ops: []crdt.Op{wop(base[1].ID, "wigan", "p1", "phone", "other")},
			status: api.ChangeApplied, want: "0:op_id_reused", summ: []string{"op_id_reused"}},
		{name: "op id reused (log copy differs)", ops: []crdt.Op{wop(base[1].ID, "wigan", "p1", "phone", "1", next(99999))},
			status: api.ChangeApplied, want: "0:op_id_reused", summ: []string{"op_id_reused"}},
		{name: "op id used twice in the change", ops: []crdt.Op{wop(next(100), "wigan", "p1", "phone", "2"), wop(next(100), "wigan", "p1", "email", "x")},
			status: api.ChangeApplied, want: "1:invalid_op", accepted: 1, summ: []string{"invalid_op"}},
		{name: "unknown pred", ops: []crdt.Op{wop(next(100), "wigan", "p1", "phone", "2", next(5000))},
			status: api.ChangeApplied, want: "0:unknown_pred", summ: []string{"unknown_pred"}},
		{name: "pred known in the quarantine", ops: []crdt.Op{wop(next(100), "wigan", "p1", "phone", "2", next(5000))},
			prep:   func(f *fakeView) { f.quarantined[next(5000)] = true },
			status: api.ChangeApplied, accepted: 1},
		{name: "pred merged earlier in the change", ops: []crdt.Op{wop(next(200), "wigan", "p1", "email", "a"), wop(next(100), "wigan", "p1", "email", "b", next(200))},
			status: api.ChangeApplied, accepted: 2},
		{name: "clock skew quarantined", ops: []crdt.Op{wop(opAt(chloe.Replica, -2*3600*1000), "wigan", "p1", "phone", "2")},
			status: api.ChangeApplied, want: "0:clock_skew(q)", held: 1},
		{name: "validator: invalid value", ops: []crdt.Op{wop(next(100), "wigan", "p1", "phone", "2")}, val: []error{errors.New("bad phone")},
			status: api.ChangeApplied, want: "0:invalid_value(q)", held: 1},
		{name: "validator: unknown field", ops: []crdt.Op{wop(next(100), "wigan", "p1", "zzz", "2")}, val: []error{fmt.Errorf("x: %w", schema.ErrUnknownField)},
			status: api.ChangeApplied, want: "0:unknown_field(q)", held: 1},
		{name: "clinical: settle forbidden", conflict: true, ops: []crdt.Op{wop(next(100), "wigan", "p1", "cfs", 5, base[0].ID, amaraCFS.ID)},
			status: api.ChangeApplied, want: "0:resolve_forbidden", summ: []string{"resolve_forbidden"}},
		{name: "clinical: coordinator settles", conflict: true, caller: &Caller{User: "cora", Replica: chloe.Replica, Teams: []string{"wigan"}, Role: api.RoleCoordinator},
			ops:    []crdt.Op{wop(next(100), "wigan", "p1", "cfs", 5, base[0].ID, amaraCFS.ID)},
			status: api.ChangeApplied, accepted: 1},
		{name: "clinical: conflict in review", conflict: true, caller: &Caller{User: "bob", Replica: amara, Teams: []string{"wigan"}},
			ops:    []crdt.Op{wop(opAt(amara, 100), "wigan", "p1", "cfs", 7, base[0].ID)},
			prep:   func(f *fakeView) { f.hwm[amara] = 1 },
			status: api.ChangeApplied, want: "0:conflict_in_review(q)", held: 1},
		{name: "clinical: own value replaced", conflict: true,
			ops:    []crdt.Op{wop(next(100), "wigan", "p1", "cfs", 7, base[0].ID)},
			status: api.ChangeApplied, accepted: 1},
		{name: "field type", ops: []crdt.Op{{ID: next(100), Team: "wigan", Collection: "people", Record: "p1", Field: "phone", Kind: crdt.KindAdd, Value: crdt.MustValue("x")}},
			status: api.ChangeApplied, want: "0:invalid_op", summ: []string{"invalid_op"}},
		{name: "field type within the change", ops: []crdt.Op{
			{ID: next(200), Team: "wigan", Collection: "people", Record: "p1", Field: "tags", Kind: crdt.KindAdd, Value: crdt.MustValue("x")},
			wop(next(100), "wigan", "p1", "tags", "y")},
			status: api.ChangeApplied, want: "1:invalid_op", accepted: 1, summ: []string{"invalid_op"}},
		{name: "record too large", ops: []crdt.Op{wop(next(100), "wigan", "p1", "note", strings.Repeat("x", 2000))},
			bounds: func(b *Bounds) { b.MaxRecordBytes = 1000 },
			status: api.ChangeApplied, want: "0:record_too_large", summ: []string{"record_too_large"}},
		{name: "field too large", ops: []crdt.Op{wop(next(100), "wigan", "p1", "note", strings.Repeat("x", 2000))},
			bounds: func(b *Bounds) { b.MaxFieldBytes = 1000 },
			status: api.ChangeApplied, want: "0:record_too_large", summ: []string{"record_too_large"}},
		{name: "quarantine full (device)", ops: []crdt.Op{wop(next(100), "wigan", "p1", "phone", "2")}, val: []error{errors.New("bad phone")},
			prep:   func(f *fakeView) { f.dev[chloe.Replica] = store.QuarantineUsage{Entries: 2000} },
			status: api.ChangeApplied, want: "0:quarantine_full"},
		{name: "quarantine full (team)", ops: []crdt.Op{wop(next(100), "wigan", "p1", "phone", "2")}, val: []error{errors.New("bad phone")},
			prep:   func(f *fakeView) { f.team["wigan"] = store.QuarantineUsage{Bytes: 64 << 20} },
			status: api.ChangeApplied, want: "0:quarantine_full"},
		{name: "refused summaries: one per code", ops: []crdt.Op{
			wop(next(300), "wigan", "p1", "a", "1", next(5000)),
			wop(next(200), "wigan", "p1", "b", "1", next(5001)),
			wop(next(100), "wigan", "theirs", "c", "1")},
			status: api.ChangeApplied, want: "0:unknown_pred 1:unknown_pred 2:wrong_team", summ: []string{"unknown_pred", "wrong_team"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := seed(tc.conflict)
			if tc.prep != nil {
				tc.prep(f)
			}
			a := testAdmission()
			if tc.bounds != nil {
				tc.bounds(&a.bounds)
			}
			c := &chloe
			if tc.caller != nil {
				c = tc.caller
			}
			seq := uint64(2)
			switch {
			case tc.zeroSeq:
				seq = 0
			case tc.seq != 0:
				seq = tc.seq
			}
			before := encodedRecords(t, f)
			d := admitOne(t, a, f, c, api.Change{Seq: seq, Ops: tc.ops}, tc.val)
			if after := encodedRecords(t, f); !mapsEqual(before, after) {
				t.Fatal("admitChange changed the view's records")
			}
			if d.result.Status != tc.status || d.result.Code != tc.code {
				t.Fatalf("status %v %q, want %v %q", d.result.Status, d.result.Code, tc.status, tc.code)
			}
			if tc.code == api.CodeSeqGap && d.result.Expected != 2 {
				t.Fatalf("expected %d, want 2", d.result.Expected)
			}
			if got := codes(d); got != tc.want {
				t.Fatalf("op results %q, want %q", got, tc.want)
			}
			if d.apply != (tc.status == api.ChangeApplied) {
				t.Fatalf("apply %v for status %v", d.apply, tc.status)
			}
			if len(d.accepted) != tc.accepted || len(d.held) != tc.held {
				t.Fatalf("accepted %d held %d, want %d %d", len(d.accepted), len(d.held), tc.accepted, tc.held)
			}
			var summ []string
			for _, w := range d.summaries {
				if w.entry.Reapplicable || w.entry.Count == 0 || w.entry.Op.Value != nil {
					t.Fatalf("summary %+v: want a refused summary without values", w.entry)
				}
				summ = append(summ, w.entry.Code)
			}
			if !slices.Equal(summ, tc.summ) {
				t.Fatalf("summaries %v, want %v", summ, tc.summ)
			}
			for _, w := range d.held {
				var q store.QuarantineEntry
				if err := store.Decode(w.value, &q); err != nil || q.Charged == 0 || q.Charged != w.entry.Charged || !q.Reapplicable ||
					q.ReceivedMS != admitNow.UnixMilli() || q.Author != c.User {
					t.Fatalf("held entry %+v (%v): want it encoded whole, charged and stamped", q, err)
				}
			}
			// Stored, the decision moves the high-water; the same change
			// again is a duplicate and applies nothing.
			f.apply(c, &d)
			if d.apply {
				again := admitOne(t, a, f, c, api.Change{Seq: seq, Ops: tc.ops}, tc.val)
				if again.result.Status != api.ChangeDuplicate || again.apply || len(again.accepted)+len(again.held)+len(again.summaries) != 0 {
					t.Fatalf("pushed again: %+v", again.result)
				}
			}
		})
	}
}

func encodedRecords(t *testing.T, f *fakeView) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, r := range f.records {
		b, err := crdt.MarshalRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = string(b)
	}
	return out
}

// mapsEqual reports whether every record of a is unchanged in b (b may
// hold empty records the view started for new ones).
func mapsEqual(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestAdmitAgreesWithEngine is a differential property: random pushes
// (copies, reused IDs, unknown and known preds, type clashes, other
// teams, skewed clocks, oversized values, duplicates and gaps, under
// small bounds so quotas run out) are decided over the map by admitChange
// and pushed to a real engine (memory store); every change result and
// every record state must agree. The committer adds nothing of its own
// to what admission decides.
func TestAdmitAgreesWithEngine(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	bounds := Bounds{MaxRecordBytes: 6000, MaxFieldBytes: 3000, QuarantineDeviceEntries: 30, QuarantineDeviceBytes: 12000,
		QuarantineTeamEntries: 6, QuarantineTeamBytes: 1 << 20}
	rules := clinicalRules{clinical: map[string]bool{"cfs": true}, settlers: map[string]bool{api.RoleCoordinator: true}}
	e := openTest(t, Options{Store: keepOpen{memory.New(memory.Options{})}, Wall: func() time.Time { return admitNow },
		MaxSkew: time.Hour, Bounds: bounds, Rules: rules, Validator: rejectFields{"f1": true}})
	a := testAdmission()
	a.rules, a.bounds = rules, e.bounds
	f := newFakeView()

	type dev struct {
		c    Caller
		seq  uint64 // last applied
		ms   int64  // ms before admitNow of its last op
		sent []crdt.Op
	}
	devs := []*dev{
		{c: Caller{User: "u0", Replica: crdt.NewReplicaID(), Teams: []string{"a"}, Role: api.RoleCoordinator}},
		{c: Caller{User: "u1", Replica: crdt.NewReplicaID(), Teams: []string{"a", "b"}}},
		{c: Caller{User: "u2", Replica: crdt.NewReplicaID(), Teams: []string{"b"}}},
	}
	for i := range devs {
		devs[i].ms = 1_000_000
		devs[i].c.Teams = teamSet(devs[i].c.Teams)
	}
	var all []crdt.Op // every op pushed, for preds
	teams := []string{"a", "b", "c"}
	fields := []string{"f0", "f1", "cfs", "tags"}
	newOp := func(d *dev) crdt.Op {
		d.ms -= int64(1 + rng.Intn(20))
		id := opAt(d.c.Replica, d.ms)
		switch r := rng.Intn(30); {
		case r < 2:
			id = opAt(d.c.Replica, -2*3600*1000-int64(rng.Intn(1000))) // far ahead: clock_skew
		case r < 5 && len(d.sent) > 0:
			old := d.sent[rng.Intn(len(d.sent))]
			if r == 4 {
				old.Value = crdt.MustValue(100 + rng.Intn(100)) // the ID reused with other content
			}
			return old // else an exact copy
		}
		team := teams[rng.Intn(len(teams))]
		if rng.Intn(5) > 0 {
			team = d.c.Teams[rng.Intn(len(d.c.Teams))]
		}
		rec := fmt.Sprint(team, rng.Intn(3))
		if rng.Intn(8) == 0 {
			rec = "shared" // in whichever team wrote it first
		}
		op := crdt.Op{ID: id, Team: team, Collection: "people", Record: rec, Field: fields[rng.Intn(len(fields))], Kind: crdt.KindWrite}
		if op.Field == "tags" || rng.Intn(25) == 0 {
			op.Kind = crdt.KindAdd
		}
		op.Value = crdt.MustValue(rng.Intn(14)) // over 10 in f1: invalid_value
		if rng.Intn(15) == 0 {
			op.Value = crdt.MustValue(strings.Repeat("v", 500+rng.Intn(2000)))
		}
		if op.Kind == crdt.KindWrite {
			for range rng.Intn(3) {
				if rng.Intn(6) == 0 || len(all) == 0 {
					op.Pred = append(op.Pred, opAt(crdt.NewReplicaID(), 2_000_000)) // never pushed
				} else if p := all[rng.Intn(len(all))].ID; p.Compare(op.ID) < 0 && !slices.Contains(op.Pred, p) {
					op.Pred = append(op.Pred, p)
				}
			}
			slices.SortFunc(op.Pred, crdt.OpID.Compare)
		}
		d.sent = append(d.sent, op)
		all = append(all, op)
		return op
	}
	seen := map[string]int{} // codes, for the log
	for round := range 150 {
		d := devs[rng.Intn(len(devs))]
		var changes []api.Change
		seq := d.seq
		for range 1 + rng.Intn(3) {
			seq++
			ch := api.Change{Seq: seq}
			switch r := rng.Intn(20); {
			case r == 0 && d.seq > 0:
				ch.Seq = d.seq // a duplicate
			case r == 1:
				ch.Seq = seq + 1 // a gap
			case r == 2:
				ch.Seq = 0
			}
			for range 1 + rng.Intn(5) {
				ch.Ops = append(ch.Ops, newOp(d))
			}
			changes = append(changes, ch)
		}
		got, err := e.Push(bg, d.c, changes)
		if err != nil {
			t.Fatalf("seed %d round %d: push: %v", seed, round, err)
		}
		var want []api.ChangeResult
		for i := range changes {
			val := make([]error, len(changes[i].Ops))
			for j := range val {
				if precheck(&d.c, &changes[i].Ops[j]) == nil {
					val[j] = rejectFields{"f1": true}.ValidateOp(&changes[i].Ops[j])
				}
			}
			dec := admitOne(t, a, f, &d.c, changes[i], val)
			f.apply(&d.c, &dec)
			want = append(want, dec.result)
		}
		f.keep(d.c.Replica, want)
		f.endTxn()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d round %d: engine\n%+v\nadmission over the map\n%+v", seed, round, got, want)
		}
		for _, r := range got {
			seen[string(r.Code)]++
			for _, o := range r.Ops {
				seen[string(o.Code)]++
			}
			if r.Status == api.ChangeApplied {
				d.seq = r.Seq
			}
		}
	}
	stored := serverRecords(t, e, teams...)
	if len(stored) != len(f.records) {
		t.Fatalf("seed %d: engine stores %d records, the map %d", seed, len(stored), len(f.records))
	}
	for ref, rec := range stored {
		mine := f.records[string(store.RecordKey(ref.Team, ref.Collection, ref.ID))]
		a, _ := crdt.MarshalRecord(rec)
		b, _ := crdt.MarshalRecord(mine)
		if mine == nil || string(a) != string(b) {
			t.Fatalf("seed %d: record %v differs", seed, ref)
		}
	}
	t.Logf("codes seen: %v", seen)
	var refused, held int
	for _, q := range f.stored {
		if q.Reapplicable {
			held++
		} else {
			refused++
		}
	}
	if held == 0 || refused == 0 || len(stored) == 0 {
		t.Fatalf("seed %d: the run held %d and refused %d ops over %d records: too tame to show anything", seed, held, refused, len(stored))
	}
}
