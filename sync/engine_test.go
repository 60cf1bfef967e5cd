package sync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

var bg = context.Background()

func push(t *testing.T, e *Engine, d *device, changes ...api.Change) []api.ChangeResult {
	t.Helper()
	res, err := e.Push(bg, d.caller, changes)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if len(res) != len(changes) {
		t.Fatalf("push: %d results for %d changes", len(res), len(changes))
	}
	return res
}

func TestPushPullRoundTrip(t *testing.T) {
	e := openTest(t, Options{})
	ann := newDevice("ann", time.Now, "wigan")
	bea := newDevice("bea", time.Now, "wigan")

	ann.write("wigan", "people", "p1", "name", "Mrs Jones")
	ann.add("wigan", "people", "p1", "needs", "mobility")
	ann.appendLog("wigan", "people", "p1", "notes", "first visit")
	ann.syncAll(t, e)
	if len(ann.outbox) != 0 {
		t.Fatalf("outbox not acknowledged: %v", ann.outbox)
	}
	ann.commit() // an empty change is fine
	ann.syncAll(t, e)

	bea.syncAll(t, e) // bootstrap from a snapshot
	if d := diffStates(encoded(t, ann.recs), encoded(t, bea.recs)); d != "" {
		t.Fatalf("after bootstrap: %s", d)
	}
	ann.write("wigan", "people", "p1", "mobility", "frame")
	ann.commit()
	own, err := e.Sync(bg, ann.caller, ann.request())
	if err != nil {
		t.Fatal(err)
	}
	if len(own.Changes) != 0 {
		t.Fatalf("a device received %d of its own changes back", len(own.Changes))
	}
	ann.receive(t, own)
	pulled, err := e.Pull(bg, bea.caller, bea.cursor, 0)
	if err != nil || len(pulled.Changes) != 1 || pulled.Changes[0].Ops.Len() != 1 || pulled.Changes[0].Author != "ann" {
		t.Fatalf("bea's pull: %+v %v", pulled, err)
	}
	bea.syncAll(t, e) // follows the log
	if d := diffStates(encoded(t, ann.recs), encoded(t, bea.recs)); d != "" {
		t.Fatalf("after follow: %s", d)
	}
	if d := diffStates(encoded(t, ann.recs), encoded(t, serverRecords(t, e, "wigan"))); d != "" {
		t.Fatalf("server: %s", d)
	}

	// A pull with an up-to-date cursor returns nothing.
	resp, err := e.Pull(bg, bea.caller, bea.cursor, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Changes)+len(resp.Snapshot) != 0 || resp.More {
		t.Fatalf("idle pull returned %d changes, %d records, more=%v", len(resp.Changes), len(resp.Snapshot), resp.More)
	}
	if resp.Clock == 0 {
		t.Fatal("no server clock in the response")
	}
}

func TestSyncRequestChecks(t *testing.T) {
	e := openTest(t, Options{})
	d := newDevice("ann", time.Now, "wigan")
	req := d.request()
	req.Protocol = 99
	if _, err := e.Sync(bg, d.caller, req); !errors.Is(err, ErrProtocol) {
		t.Fatalf("protocol 99: %v", err)
	}
	req = d.request()
	req.Replica = crdt.NewReplicaID()
	if _, err := e.Sync(bg, d.caller, req); !errors.Is(err, ErrDeviceMismatch) {
		t.Fatalf("other replica: %v", err)
	}
	if _, err := e.Pull(bg, d.caller, []byte{1, 2, 3}, 0); !errors.Is(err, ErrBadCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
}

func TestExactlyOnceDuplicatedAndReordered(t *testing.T) {
	e := openTest(t, Options{})
	d := newDevice("ann", time.Now, "wigan")
	var changes []api.Change
	for i := range 6 {
		d.appendLog("wigan", "contacts", "c1", "notes", fmt.Sprintf("note %d", i))
		d.write("wigan", "contacts", "c1", "outcome", i)
		changes = append(changes, d.commit())
	}
	res := push(t, e, d, changes[0], changes[1], changes[2])
	for _, r := range res {
		if r.Status != api.ChangeApplied {
			t.Fatalf("first push: %+v", r)
		}
	}
	// Duplicated (a retry after a lost reply) and reordered.
	res = push(t, e, d, changes[2], changes[1], changes[4], changes[3], changes[4], changes[5], changes[5])
	want := []api.ChangeStatus{api.ChangeDuplicate, api.ChangeDuplicate, api.ChangeRefused, api.ChangeApplied, api.ChangeApplied, api.ChangeApplied, api.ChangeDuplicate}
	for i, r := range res {
		if r.Status != want[i] {
			t.Fatalf("result %d (seq %d): status %d, want %d", i, r.Seq, r.Status, want[i])
		}
	}
	if res[2].Code != api.CodeSeqGap || res[2].Expected != 4 {
		t.Fatalf("gap: %+v, want seq_gap expecting 4", res[2])
	}
	// A gap far ahead names the expected seq.
	res = push(t, e, d, api.Change{Seq: 10})
	if res[0].Status != api.ChangeRefused || res[0].Code != api.CodeSeqGap || res[0].Expected != 7 {
		t.Fatalf("gap: %+v", res[0])
	}
	hist, err := e.History(bg, d.caller, api.RecordRef{Team: "wigan", Collection: "contacts", ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 12 {
		t.Fatalf("history holds %d ops, want 12 (each applied once)", len(hist))
	}
	for _, h := range hist {
		if h.Author != "ann" || h.Op.ID.Replica != d.caller.Replica || h.Received.IsZero() {
			t.Fatalf("history entry %+v", h)
		}
	}
	// The log holds each change once.
	other := newDevice("bea", time.Now, "wigan")
	resp, err := e.Pull(bg, other.caller, cursor{mode: modeLog, pos: 0, teams: teamsHash([]string{"wigan"})}.encode(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Changes) != 6 {
		t.Fatalf("log holds %d changes, want 6", len(resp.Changes))
	}
	// And the state is the device's.
	if d2 := diffStates(encoded(t, d.recs), encoded(t, serverRecords(t, e, "wigan"))); d2 != "" {
		t.Fatal(d2)
	}
}

// opCodes returns the code of every op result of one change, by index.
func opCodes(r api.ChangeResult) map[int]api.Code {
	m := map[int]api.Code{}
	for _, o := range r.Ops {
		m[o.Index] = o.Code
	}
	return m
}

func TestOpRefusals(t *testing.T) {
	e := openTest(t, Options{})
	ann := newDevice("ann", time.Now, "wigan")
	bea := newDevice("bea", time.Now, "ashton")

	// Bea owns ashton/people/p9; Ann cannot write it under wigan.
	bea.write("ashton", "people", "p9", "name", "Mr Patel")
	bea.commit()
	bea.syncAll(t, e)

	good := ann.write("wigan", "people", "p1", "name", "Mrs Jones")
	ann.pending = nil
	// forbidden team: Ann is not in ashton.
	forbidden := ann.rec("ashton", "people", "p2").Write(ann.nextID(), "name", crdt.MustValue("x"))
	// wrong team: p9 exists under ashton.
	wrongTeam := ann.rec("wigan", "people", "p9").Write(ann.nextID(), "name", crdt.MustValue("y"))
	// wrong replica: an op ID naming Bea's device.
	wrongReplica := ann.rec("wigan", "people", "p3").Write(crdt.OpID{Time: ann.clock.Now(), Replica: bea.caller.Replica}, "name", crdt.MustValue("z"))
	// unknown pred: names an op the server never saw.
	ghost := crdt.OpID{Time: 5, Replica: crdt.NewReplicaID()}
	unknownPred := crdt.Op{ID: ann.nextID(), Team: "wigan", Collection: "people", Record: "p1", Field: "name", Kind: crdt.KindWrite, Value: crdt.MustValue("w"), Pred: []crdt.OpID{ghost}}
	// a pred earlier in the same change is fine.
	knownPred := crdt.Op{ID: ann.nextID(), Team: "wigan", Collection: "people", Record: "p1", Field: "name", Kind: crdt.KindWrite, Value: crdt.MustValue("v"), Pred: []crdt.OpID{good.ID}}
	// malformed: no value.
	invalid := crdt.Op{ID: ann.nextID(), Team: "wigan", Collection: "people", Record: "p1", Field: "age", Kind: crdt.KindWrite}
	// kind mismatch: a set add on the register "name".
	mismatch := crdt.Op{ID: ann.nextID(), Team: "wigan", Collection: "people", Record: "p1", Field: "name", Kind: crdt.KindAdd, Value: crdt.MustValue("u")}

	ch := api.Change{Seq: 1, Ops: []crdt.Op{good, forbidden, wrongTeam, wrongReplica, unknownPred, knownPred, invalid, mismatch}}
	res := push(t, e, ann, ch)
	if res[0].Status != api.ChangeApplied {
		t.Fatalf("status %+v", res[0])
	}
	want := map[int]api.Code{1: api.CodeForbiddenTeam, 2: api.CodeWrongTeam, 3: api.CodeWrongReplica, 4: api.CodeUnknownPred, 6: api.CodeInvalidOp, 7: api.CodeInvalidOp}
	got := opCodes(res[0])
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("op codes %v, want %v", got, want)
	}
	for _, o := range res[0].Ops {
		if o.Quarantined {
			t.Fatalf("refused op %d marked quarantined", o.Index)
		}
	}
	rec, err := e.Record(bg, ann.caller, api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	if w, _ := rec.Field("name").Winner(); w.ID != knownPred.ID {
		t.Fatalf("name winner %s, want %s", w.ID, knownPred.ID)
	}
	if _, err := e.Record(bg, ann.caller, api.RecordRef{Team: "ashton", Collection: "people", ID: "p9"}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("record of another team: %v", err)
	}
	if _, err := e.Record(bg, bea.caller, api.RecordRef{Team: "ashton", Collection: "people", ID: "p2"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused record exists: %v", err)
	}
	// Nothing is silently dropped: every refused op is in the quarantine,
	// as one summary per code (the two invalid_op ops share one).
	q, err := e.Quarantined(bg, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, qo := range q {
		n += qo.Count
		if qo.Op.Value != nil {
			t.Errorf("refused op's value stored: %+v", qo)
		}
	}
	if n != len(want) || len(q) != len(want)-1 {
		t.Fatalf("quarantine holds %d entries for %d ops, want %d for %d", len(q), n, len(want)-1, len(want))
	}
	for _, qo := range q {
		if qo.Reapplicable || qo.Author != "ann" || qo.Seq != 1 {
			t.Fatalf("quarantine entry %+v", qo)
		}
		if err := e.Reapply(bg, qo.ID); !errors.Is(err, ErrInvalid) {
			t.Fatalf("reapply of refused op: %v", err)
		}
	}
	// Bea (ashton) never sees Ann's wigan ops, and Ann never sees Bea's.
	fresh := newDevice("bea2", time.Now, "ashton")
	fresh.syncAll(t, e)
	for ref := range fresh.recs {
		if ref.Team != "ashton" {
			t.Fatalf("ashton device received %v", ref)
		}
	}
	if len(fresh.recs) != 1 {
		t.Fatalf("ashton device holds %d records, want 1", len(fresh.recs))
	}
}

// rejectField is a validator that rejects values of one field until
// allowed.
type rejectField struct {
	field string
	allow bool
}

func (v *rejectField) ValidateOp(op *crdt.Op) error {
	var n int
	if op.Field == v.field && !v.allow && (decodeValue(op.Value, &n) != nil || n > 10) {
		return fmt.Errorf("field %q: value not allowed", op.Field)
	}
	return nil
}

func TestQuarantineAndReapply(t *testing.T) {
	wall := newFakeWall()
	val := &rejectField{field: "ons4_anxiety"}
	e := openTest(t, Options{Wall: wall.Now, Validator: val, MaxSkew: time.Minute})
	d := newDevice("ann", wall.Now, "wigan")
	d.write("wigan", "assessments", "a1", "ons4_happy", 7)
	bad := d.write("wigan", "assessments", "a1", "ons4_anxiety", 11)
	// A later write naming the quarantined op in pred is not an unknown pred.
	fix := d.write("wigan", "assessments", "a1", "ons4_anxiety", 3)
	future := crdt.Op{ID: crdt.OpID{Time: crdt.MakeTimestamp(wall.Now().Add(time.Hour).UnixMilli(), 0), Replica: d.caller.Replica},
		Team: "wigan", Collection: "assessments", Record: "a1", Field: "ons4_life", Kind: crdt.KindWrite, Value: crdt.MustValue(8)}
	d.do(future)
	res := push(t, e, d, d.commit())
	got := res[0].Ops
	// fix is merged and names bad in pred: bad sits in the field's removed
	// IDs without having been merged.
	if len(got) != 2 || got[0].Index != 1 || got[0].Code != api.CodeInvalidValue || !got[0].Quarantined ||
		got[1].Index != 3 || got[1].Code != api.CodeClockSkew || !got[1].Quarantined {
		t.Fatalf("op results %+v", got)
	}
	if fix.Pred[0] != bad.ID {
		t.Fatal("test setup: fix does not name bad")
	}
	q, err := e.Quarantined(bg, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 2 || !q[0].Reapplicable || q[1].Code != api.CodeClockSkew {
		t.Fatalf("quarantine %+v", q)
	}
	// Still invalid: stays quarantined.
	if err := e.Reapply(bg, q[0].ID); !errors.Is(err, ErrInvalid) {
		t.Fatalf("reapply while invalid: %v", err)
	}
	if err := e.Reapply(bg, 999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reapply of unknown id: %v", err)
	}
	// The schema now allows the field; the clock has caught up.
	val.allow = true
	wall.Advance(2 * time.Hour)
	for _, qo := range q {
		if err := e.Reapply(bg, qo.ID); err != nil {
			t.Fatalf("reapply %d: %v", qo.ID, err)
		}
	}
	if q, _ := e.Quarantined(bg, 10); len(q) != 0 {
		t.Fatalf("quarantine after reapply: %+v", q)
	}
	rec, err := e.Record(bg, d.caller, api.RecordRef{Team: "wigan", Collection: "assessments", ID: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := crdt.MarshalRecord(rec); string(b) != encoded(t, d.recs)[api.RecordRef{Team: "wigan", Collection: "assessments", ID: "a1"}] {
		t.Fatal("server state after reapply differs from the device's")
	}
	// Another device pulling sees the reapplied ops through the log.
	other := newDevice("bea", wall.Now, "wigan")
	other.syncAll(t, e)
	if diff := diffStates(encoded(t, d.recs), encoded(t, other.recs)); diff != "" {
		t.Fatal(diff)
	}
}

func TestReviewConflictsResolveHistory(t *testing.T) {
	e := openTest(t, Options{})
	ann := newDevice("ann", time.Now, "wigan")
	bea := newDevice("bea", time.Now, "wigan")
	coord := Caller{User: "cara", Teams: []string{"wigan"}}
	ref := api.RecordRef{Team: "wigan", Collection: "people", ID: "p1"}
	start := time.Now().Add(-time.Second)

	ann.write("wigan", "people", "p1", "mobility", "stick")
	ann.commit()
	ann.syncAll(t, e)
	bea.syncAll(t, e)
	ann.write("wigan", "people", "p1", "mobility", "frame")
	ann.commit()
	bea.write("wigan", "people", "p1", "mobility", "wheelchair")
	bea.commit()
	ann.syncAll(t, e)
	bea.syncAll(t, e)

	conf, err := e.Conflicts(bg, coord, "wigan")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(conf, []api.RecordRef{ref}) {
		t.Fatalf("conflicts %v", conf)
	}
	changed, err := e.ChangedSince(bg, coord, "wigan", start, 0)
	if err != nil || !slices.Equal(changed, []api.RecordRef{ref}) {
		t.Fatalf("changed since: %v %v", changed, err)
	}
	if changed, _ := e.ChangedSince(bg, coord, "wigan", time.Now().Add(time.Hour), 0); len(changed) != 0 {
		t.Fatalf("changed in the future: %v", changed)
	}
	if _, err := e.Conflicts(bg, coord, "ashton"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("conflicts of another team: %v", err)
	}

	rec, err := e.Resolve(bg, coord, ref, "mobility", crdt.MustValue("frame"))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Field("mobility").Conflict() {
		t.Fatal("still in conflict after resolve")
	}
	if conf, _ := e.Conflicts(bg, coord, "wigan"); len(conf) != 0 {
		t.Fatalf("conflicts after resolve %v", conf)
	}
	if _, err := e.Resolve(bg, coord, api.RecordRef{Team: "wigan", Collection: "people", ID: "nobody"}, "x", crdt.MustValue(1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resolve of missing record: %v", err)
	}
	hist, err := e.History(bg, coord, ref)
	if err != nil {
		t.Fatal(err)
	}
	var authors []string
	for _, h := range hist {
		authors = append(authors, h.Author)
	}
	if !slices.Equal(authors, []string{"ann", "ann", "bea", "cara"}) && !slices.Equal(authors, []string{"ann", "bea", "ann", "cara"}) {
		t.Fatalf("history authors %v", authors)
	}
	if hist[len(hist)-1].Op.ID.Replica != e.ServerReplica() {
		t.Fatal("resolve op not stamped with the server replica")
	}
	// Devices receive the resolution.
	ann.syncAll(t, e)
	bea.syncAll(t, e)
	if diff := diffStates(encoded(t, ann.recs), encoded(t, bea.recs)); diff != "" {
		t.Fatal(diff)
	}
	if ann.rec("wigan", "people", "p1").Field("mobility").Conflict() {
		t.Fatal("device still in conflict")
	}
}

func TestReopenKeepsState(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(bg, Options{Store: testKV(t, dir), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	d := newDevice("ann", time.Now, "wigan")
	d.write("wigan", "people", "p1", "name", "Mrs Jones")
	ch := d.commit()
	d.syncAll(t, e)
	server := e.ServerReplica()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Push(bg, d.caller, []api.Change{ch}); !errors.Is(err, ErrClosed) {
		t.Fatalf("push after close: %v", err)
	}
	e = openTestAt(t, dir, Options{})
	if e.ServerReplica() != server {
		t.Fatal("server replica changed on reopen")
	}
	res := push(t, e, d, ch)
	if res[0].Status != api.ChangeDuplicate {
		t.Fatalf("re-push after reopen: %+v", res[0])
	}
	other := newDevice("bea", time.Now, "wigan")
	other.syncAll(t, e)
	if diff := diffStates(encoded(t, d.recs), encoded(t, other.recs)); diff != "" {
		t.Fatal(diff)
	}
	// The old cursor still follows the log.
	d.write("wigan", "people", "p1", "name", "Mrs J Jones")
	d.commit()
	d.syncAll(t, e)
	other.syncAll(t, e)
	if diff := diffStates(encoded(t, d.recs), encoded(t, other.recs)); diff != "" {
		t.Fatal(diff)
	}
}

func TestDefaultSchemaQuarantines(t *testing.T) {
	e := openTest(t, Options{Validator: schema.Default()})
	d := newDevice("ann", time.Now, "wigan")
	d.write("wigan", "people", "p1", "cfs", 5)
	d.write("wigan", "people", "p1", "cfs", 10)
	d.write("wigan", "people", "p1", "shoe_size", 9)
	d.write("wigan", "spaceships", "s1", "name", "x")
	res := push(t, e, d, d.commit())
	want := map[int]api.Code{1: api.CodeInvalidValue, 2: api.CodeUnknownField, 3: api.CodeUnknownField}
	if got := opCodes(res[0]); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("op codes %v, want %v", got, want)
	}
	for _, o := range res[0].Ops {
		if !o.Quarantined {
			t.Fatalf("op %d not quarantined", o.Index)
		}
	}
}

// TestTxnTooBigSplits pushes more than one Badger transaction can hold: the
// committer splits the push at change boundaries, every change is applied
// once and in order; a single change too big for any transaction is
// refused with ErrTooLarge and nothing of it is applied.
func TestTxnTooBigSplits(t *testing.T) {
	e := openTest(t, Options{}) // Badger SmallMemory and the test memory and PostgreSQL stores: transactions up to ~2 MB
	d := newDevice("ann", time.Now, "wigan")
	big := string(make([]byte, 1000))
	var changes []api.Change
	for i := range 60 {
		for k := range 50 {
			d.write("wigan", "contacts", fmt.Sprintf("c%d", i), fmt.Sprintf("f%d", k), big)
		}
		changes = append(changes, d.commit())
	}
	res := push(t, e, d, changes...)
	for i, r := range res {
		if r.Seq != uint64(i+1) || r.Status != api.ChangeApplied {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	if diff := diffStates(encoded(t, d.recs), encoded(t, serverRecords(t, e, "wigan"))); diff != "" {
		t.Fatal(diff)
	}
	// A change touching 12,000 records writes ~48,000 keys, more than one
	// transaction may count.
	huge := newDevice("bea", time.Now, "wigan")
	for k := range 12000 {
		huge.write("wigan", "contacts", fmt.Sprintf("h%d", k), "f", 1)
	}
	_, err := e.Push(bg, huge.caller, []api.Change{huge.commit()})
	// Every backend bounds a transaction (PostgreSQL by Options.MaxTxnBytes,
	// 2 MiB in these tests).
	switch {
	case !errors.Is(err, ErrTooLarge):
		t.Fatalf("huge change: %v", err)
	default:
		if _, err := e.Record(bg, huge.caller, api.RecordRef{Team: "wigan", Collection: "contacts", ID: "h0"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("huge change partly applied: %v", err)
		}
	}
	// The engine still works afterwards.
	d.write("wigan", "contacts", "c0", "f0", "after")
	d.commit()
	d.syncAll(t, e)
}
