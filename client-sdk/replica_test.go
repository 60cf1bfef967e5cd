package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// fakeWall is a settable wall clock for tests.
type fakeWall struct{ t time.Time }

func (w *fakeWall) now() time.Time { return w.t }

func openTest(t *testing.T, dir string, mod func(*Options)) *Replica {
	t.Helper()
	opts := Options{Dir: dir, EncryptionKey: testKey, NoValidation: true}
	if mod != nil {
		mod(&opts)
	}
	r, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// pendingOps returns every op in the outbox, sealed or not, in order.
func pendingOps(t *testing.T, r *Replica) []crdt.Op {
	t.Helper()
	changes, _, err := r.OutboxChanges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ops []crdt.Op
	for _, c := range changes {
		ops = append(ops, c.Ops...)
	}
	groups, err := r.unsealed()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		ops = append(ops, g.Ops...)
	}
	return ops
}

// deliver applies ops to r as if pulled from the server, keeping r's cursor.
func deliver(t *testing.T, r *Replica, ops []crdt.Op) {
	t.Helper()
	cur, err := r.loadCursor()
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.storeReply(nil, &api.SyncResponse{Changes: []api.PulledChange{{Author: "test", Ops: crdt.NewOpsBytes(ops)}}, Cursor: cur})
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
}

func TestOpenNeedsKey(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, Options{Dir: t.TempDir()}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("Open without key: %v, want ErrNoKey", err)
	}
	if _, err := Open(ctx, Options{Dir: t.TempDir(), EncryptionKey: []byte("short")}); err == nil {
		t.Fatal("Open with a 5-byte key succeeded")
	}
	r, err := Open(ctx, Options{Dir: t.TempDir(), InsecureNoEncryption: true, NoValidation: true})
	if err != nil {
		t.Fatalf("Open insecure: %v", err)
	}
	r.Close()
}

// writeSecret writes a record holding secret (in a small and a big value)
// to a replica in dir and closes it.
func writeSecret(t *testing.T, dir string, opts Options, secret string) string {
	t.Helper()
	ctx := context.Background()
	opts.Dir, opts.NoValidation = dir, true
	r, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	id, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": secret})
	if err != nil {
		t.Fatal(err)
	}
	ref := id
	if err := r.Append(ctx, ref, "notes", "visited "+secret); err != nil {
		t.Fatal(err)
	}
	// Big values: the record's state, past 128 KiB (deviceValueThreshold),
	// goes to Badger's value log, which must be encrypted too.
	for range 3 {
		if err := r.Append(ctx, ref, "notes", strings.Repeat(secret+" ", 1500)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.seal(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return id.ID
}

// filesContaining returns the names of files under dir holding s.
func filesContaining(t *testing.T, dir, s string) []string {
	t.Helper()
	var hits []string
	files := 0
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(s)) {
			hits = append(hits, filepath.Base(path))
		}
		return nil
	})
	if err != nil || files == 0 {
		t.Fatalf("walk: %v, %d files", err, files)
	}
	return hits
}

func TestEncryptionAtRest(t *testing.T) {
	ctx := context.Background()
	const secret = "Winifred Quarterbridge-Oyelaran"
	// Control: unencrypted, the scan finds the name, so the scan works.
	plain := t.TempDir()
	writeSecret(t, plain, Options{InsecureNoEncryption: true}, secret)
	if hits := filesContaining(t, plain, "Quarterbridge"); len(hits) == 0 {
		t.Fatal("control: name not found in an unencrypted replica; the scan proves nothing")
	}

	dir := t.TempDir()
	id := writeSecret(t, dir, Options{EncryptionKey: testKey}, secret)
	if hits := filesContaining(t, dir, "Quarterbridge"); len(hits) > 0 {
		t.Fatalf("files hold the name in plaintext: %v", hits)
	}
	wrong := bytes.Repeat([]byte{7}, 32)
	if r2, err := Open(ctx, Options{Dir: dir, EncryptionKey: wrong, NoValidation: true}); err == nil {
		r2.Close()
		t.Fatal("opened with the wrong key")
	}
	r3 := openTest(t, dir, nil)
	got, err := r3.Get(ctx, Ref{Team: "wigan", Collection: "people", ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if got.Fields["name"].Value != secret || len(got.Fields["notes"].Entries) != 4 {
		t.Fatalf("after reopen: %+v", got.Fields)
	}
}

func TestLocalWritesAndReads(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), nil)
	id, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": "Ann Jones", "age": 81})
	if err != nil {
		t.Fatal(err)
	}
	ref := id
	steps := []error{
		r.Set(ctx, ref, "mobility", "stick"),
		r.Set(ctx, ref, "mobility", "frame"),
		r.Add(ctx, ref, "needs", "mobility"),
		r.Add(ctx, ref, "needs", "loneliness"),
		r.Remove(ctx, ref, "needs", "mobility"),
		r.Append(ctx, ref, "notes", "first visit"),
		r.Append(ctx, ref, "notes", "second visit"),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	got, err := r.Get(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if v := got.Fields["name"].Value; v != "Ann Jones" {
		t.Errorf("name = %v", v)
	}
	if v := got.Fields["age"].Value; fmt.Sprint(v) != "81" {
		t.Errorf("age = %v", v)
	}
	if f := got.Fields["mobility"]; f.Value != "frame" || f.Conflict || len(f.Values) != 1 {
		t.Errorf("mobility = %+v", f)
	}
	if m := got.Fields["needs"].Members; len(m) != 1 || m[0] != "loneliness" {
		t.Errorf("needs = %v", m)
	}
	if e := got.Fields["notes"].Entries; len(e) != 2 || e[0].Value != "first visit" || e[1].Value != "second visit" {
		t.Errorf("notes = %+v", e)
	}
	if got.Deleted {
		t.Error("deleted")
	}
	if err := r.Set(ctx, Ref{Team: "wigan", Collection: "people", ID: "nope"}, "x", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Set on missing record: %v", err)
	}
	if _, err := r.Get(ctx, Ref{Team: "wigan", Collection: "people", ID: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get missing: %v", err)
	}
	list, err := r.List(ctx, "wigan", "people")
	if err != nil || len(list) != 1 || list[0].Ref != ref {
		t.Errorf("List = %v, %v", list, err)
	}
	if list, _ := r.List(ctx, "ashton", ""); len(list) != 0 {
		t.Errorf("List other team = %v", list)
	}

	if err := r.Delete(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if err := r.Set(ctx, ref, "mobility", "bed"); !errors.Is(err, ErrDeleted) {
		t.Errorf("Set on deleted: %v", err)
	}
	if err := r.Restore(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Get(ctx, ref); got.Deleted || got.Fields["mobility"].Value != "frame" {
		t.Errorf("after restore: deleted=%v mobility=%v", got.Deleted, got.Fields["mobility"].Value)
	}
	// 2 (create) + 7 steps + delete + restore.
	if n := r.Status().Pending; n != 11 {
		t.Errorf("Pending = %d, want 11", n)
	}
	if n := len(pendingOps(t, r)); n != 11 {
		t.Errorf("outbox holds %d ops, want 11", n)
	}
}

// refuser refuses values equal to "bad" and requires "name" on create.
type refuser struct{}

var errBadValue = errors.New("bad value")

func (refuser) ValidateOp(op *crdt.Op) error {
	if bytes.Equal(op.Value, crdt.MustValue("bad")) {
		return errBadValue
	}
	return nil
}

func (refuser) MissingOnCreate(collection string, fields []string) []string {
	if collection == "people" && !slices.Contains(fields, "name") {
		return []string{"name"}
	}
	return nil
}

func TestValidation(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.Validator = refuser{}; o.NoValidation = false })
	_, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"age": 3})
	var ve *ValidationError
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &ve) || !slices.Equal(ve.Missing, []string{"name"}) {
		t.Fatalf("create without name: %v", err)
	}
	if _, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": "bad"}); !errors.Is(err, ErrInvalid) || !errors.Is(err, errBadValue) {
		t.Fatalf("create with bad value: %v", err)
	}
	id, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": "ok"})
	if err != nil {
		t.Fatal(err)
	}
	ref := id
	if err := r.Set(ctx, ref, "name", "bad"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("set bad: %v", err)
	}
	got, _ := r.Get(ctx, ref)
	if got.Fields["name"].Value != "ok" {
		t.Fatalf("refused write was stored: %v", got.Fields["name"].Value)
	}
	if n := len(pendingOps(t, r)); n != 1 {
		t.Fatalf("outbox holds %d ops after refused writes, want 1", n)
	}
}

func TestConflictBetweenTwoReplicas(t *testing.T) {
	ctx := context.Background()
	ann := openTest(t, t.TempDir(), nil)
	bea := openTest(t, t.TempDir(), nil)
	ref := Ref{Team: "wigan", Collection: "people", ID: "p1"}
	if err := ann.CreateWithID(ctx, ref, map[string]any{"name": "Mrs Jones", "mobility": "stick"}); err != nil {
		t.Fatal(err)
	}
	deliver(t, bea, pendingOps(t, ann))
	annSeen := len(pendingOps(t, ann))
	beaSeen := len(pendingOps(t, bea))

	// Offline, both edit the same field; Bea also edits another field.
	if err := ann.Set(ctx, ref, "mobility", "frame"); err != nil {
		t.Fatal(err)
	}
	if err := bea.Set(ctx, ref, "mobility", "wheelchair"); err != nil {
		t.Fatal(err)
	}
	if err := bea.Add(ctx, ref, "needs", "aids"); err != nil {
		t.Fatal(err)
	}
	fromAnn := pendingOps(t, ann)[annSeen:]
	fromBea := pendingOps(t, bea)[beaSeen:]
	deliver(t, ann, fromBea)
	deliver(t, bea, fromAnn)

	for _, r := range []*Replica{ann, bea} {
		got, err := r.Get(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		f := got.Fields["mobility"]
		if !f.Conflict || len(f.Values) != 2 {
			t.Fatalf("mobility = %+v, want a conflict of two", f)
		}
		if !slices.Contains(got.Conflicts(), "mobility") {
			t.Errorf("Conflicts() = %v", got.Conflicts())
		}
	}
	a, _ := ann.GetState(ctx, ref)
	b, _ := bea.GetState(ctx, ref)
	assertSameState(t, a, b)

	// An ordinary Set while in conflict keeps the conflict.
	if err := ann.Set(ctx, ref, "mobility", "frame"); err != nil {
		t.Fatal(err)
	}
	if got, _ := ann.Get(ctx, ref); !got.Fields["mobility"].Conflict {
		t.Fatal("Set settled a conflict")
	}
	// Resolve settles it, and the resolution reaches Bea.
	n := len(pendingOps(t, ann))
	if err := ann.Resolve(ctx, ref, "mobility", "frame"); err != nil {
		t.Fatal(err)
	}
	deliver(t, bea, pendingOps(t, ann)[n-1:])
	for _, r := range []*Replica{ann, bea} {
		got, _ := r.Get(ctx, ref)
		if f := got.Fields["mobility"]; f.Conflict || f.Value != "frame" {
			t.Fatalf("after resolve mobility = %+v", f)
		}
	}
	if got, _ := bea.Get(ctx, ref); len(got.Fields["needs"].Members) != 1 {
		t.Fatalf("needs = %v", got.Fields["needs"].Members)
	}
}

func TestDeleteConcurrentWithEdit(t *testing.T) {
	ctx := context.Background()
	ann := openTest(t, t.TempDir(), nil)
	bea := openTest(t, t.TempDir(), nil)
	ref := Ref{Team: "wigan", Collection: "people", ID: "p2"}
	if err := ann.CreateWithID(ctx, ref, map[string]any{"name": "Mr Smith"}); err != nil {
		t.Fatal(err)
	}
	base := pendingOps(t, ann)
	deliver(t, bea, base)
	if err := ann.Delete(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if err := bea.Set(ctx, ref, "phone", "01942 000000"); err != nil {
		t.Fatal(err)
	}
	deliver(t, ann, pendingOps(t, bea)) // Bea's outbox holds only her edit
	deliver(t, bea, pendingOps(t, ann)[len(base):])
	for _, r := range []*Replica{ann, bea} {
		got, _ := r.Get(ctx, ref)
		if !got.Deleted || !slices.Equal(got.DeleteConflicts, []string{"phone"}) {
			t.Fatalf("deleted=%v delete conflicts=%v", got.Deleted, got.DeleteConflicts)
		}
	}
}

func TestOutboxSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	wall := &fakeWall{t: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	r := openTest(t, dir, func(o *Options) { o.Wall = wall.now })
	id0 := r.ID()
	ref := Ref{Team: "wigan", Collection: "people", ID: "p"}
	if err := r.CreateWithID(ctx, ref, map[string]any{"name": "A"}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := r.Append(ctx, ref, "notes", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.seal(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := r.Set(ctx, ref, "n", i); err != nil {
			t.Fatal(err)
		}
	}
	before := pendingOps(t, r)
	lastID := before[len(before)-1].ID
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	// The tablet's clock is set back an hour while it is off.
	wall.t = wall.t.Add(-time.Hour)
	r2 := openTest(t, dir, func(o *Options) { o.Wall = wall.now })
	if r2.ID() != id0 {
		t.Fatalf("replica ID changed across reopen: %s vs %s", r2.ID(), id0)
	}
	after := pendingOps(t, r2)
	if len(after) != len(before) || len(after) != 26 {
		t.Fatalf("outbox has %d ops after reopen, had %d", len(after), len(before))
	}
	for i := range before {
		a, _ := crdt.MarshalOp(&before[i])
		b, _ := crdt.MarshalOp(&after[i])
		if !bytes.Equal(a, b) {
			t.Fatalf("op %d differs after reopen", i)
		}
	}
	if n := r2.Status().Pending; n != 26 {
		t.Errorf("Pending after reopen = %d", n)
	}
	if err := r2.Set(ctx, ref, "n", "later"); err != nil {
		t.Fatal(err)
	}
	ops := pendingOps(t, r2)
	if id := ops[len(ops)-1].ID; id.Compare(lastID) <= 0 {
		t.Fatalf("op ID %s after reopen with clock set back is not after %s", id, lastID)
	}
}

func TestSealedChangesNeverChange(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.MaxOpsPerChange = 7; o.MaxChangesPerRequest = 3 })
	ref := Ref{Team: "wigan", Collection: "people", ID: "p"}
	if err := r.CreateWithID(ctx, ref, map[string]any{"name": "A", "b": 1, "c": 2}); err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[uint64][]byte {
		changes, _, err := r.OutboxChanges(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[uint64][]byte{}
		for _, c := range changes {
			b, err := encodeChange(&c)
			if err != nil {
				t.Fatal(err)
			}
			m[c.Seq] = b
		}
		return m
	}
	seen := map[uint64][]byte{}
	total := 3
	for round := range 6 {
		for i := range 5 {
			if err := r.Append(ctx, ref, "notes", fmt.Sprint(round, i)); err != nil {
				t.Fatal(err)
			}
			total++
		}
		if err := r.seal(); err != nil {
			t.Fatal(err)
		}
		for seq, b := range snapshot() {
			if old, ok := seen[seq]; ok && !bytes.Equal(old, b) {
				t.Fatalf("round %d: change %d changed after sealing", round, seq)
			}
			seen[seq] = b
		}
	}
	changes, unsealed, _ := r.OutboxChanges(ctx)
	n := unsealed
	for i, c := range changes {
		if c.Seq != uint64(i+1) {
			t.Fatalf("change %d has seq %d", i, c.Seq)
		}
		if len(c.Ops) > 7 {
			t.Fatalf("change %d has %d ops, cap 7", c.Seq, len(c.Ops))
		}
		n += len(c.Ops)
	}
	if n != total {
		t.Fatalf("outbox holds %d ops, wrote %d", n, total)
	}
	if len(changes) < 3 {
		t.Fatalf("only %d changes sealed", len(changes))
	}
}

func assertSameState(t *testing.T, a, b *crdt.Record) {
	t.Helper()
	ab, err := crdt.MarshalRecord(a)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := crdt.MarshalRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ab, bb) {
		t.Fatalf("states differ:\n%s\n%s", describe(a), describe(b))
	}
}

func describe(r *crdt.Record) string {
	var sb strings.Builder
	for _, n := range r.FieldNames() {
		f := r.Fields[n]
		fmt.Fprintf(&sb, "%s: %d entries %d pending; ", n, len(f.Entries), len(f.Pending))
	}
	return sb.String()
}

func TestDefaultSchema(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.NoValidation = false })
	_, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"given_name": "Ann"})
	var ve *ValidationError
	if !errors.As(err, &ve) || !slices.Contains(ve.Missing, "date_of_birth") {
		t.Fatalf("create without required fields: %v", err)
	}
	id, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{
		"given_name": "Ann", "family_name": "Jones", "date_of_birth": "1941-03-02",
		"address": "1 Mesnes Road, Wigan", "risk_flags": []string{"dog", "access_code"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ref := id
	if err := r.Set(ctx, ref, "cfs", 12); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cfs 12: %v", err)
	}
	if err := r.Set(ctx, ref, "cfs", 6); err != nil {
		t.Fatal(err)
	}
	if err := r.Append(ctx, ref, "case_notes", "visited; frame delivered"); err != nil {
		t.Fatal(err)
	}
	got, _ := r.Get(ctx, ref)
	if m := got.Fields["risk_flags"].Members; len(m) != 2 || got.Fields["risk_flags"].Type != crdt.Set {
		t.Fatalf("risk_flags = %+v", got.Fields["risk_flags"])
	}
}

// BenchmarkLocalWrite measures one durable local write: build, validate,
// apply, store the record and append to the outbox in one fsynced Badger
// transaction.
func BenchmarkLocalWrite(b *testing.B) {
	ctx := context.Background()
	r, err := Open(ctx, Options{Dir: b.TempDir(), EncryptionKey: testKey})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	id, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{
		"given_name": "Ann", "family_name": "Jones", "date_of_birth": "1941-03-02", "address": "1 Mesnes Road, Wigan",
	})
	if err != nil {
		b.Fatal(err)
	}
	ref := id
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := r.Set(ctx, ref, "phone", fmt.Sprint(i)); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBatchIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.Validator = refuser{}; o.NoValidation = false })
	var a, b Ref
	err := r.Batch(ctx, func(bt *Batch) error {
		var err error
		if a, err = bt.Create(Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": "A"}); err != nil {
			return err
		}
		if b, err = bt.Create(Ref{Team: "wigan", Collection: "carers"}, map[string]any{"of": a.ID}); err != nil {
			return err
		}
		ref := a
		if err := bt.Append(ref, "notes", "carer identified"); err != nil {
			return err
		}
		got, err := bt.Get(ref)
		if err != nil || len(got.Fields["notes"].Entries) != 1 {
			return fmt.Errorf("batch Get: %v %v", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	groups, err := r.unsealed()
	if err != nil || len(groups) != 1 || len(groups[0].Ops) != 3 {
		t.Fatalf("outbox groups %+v, %v; want one group of 3 ops", groups, err)
	}
	// A batch with one bad write stores nothing.
	ref := a
	err = r.Batch(ctx, func(bt *Batch) error {
		if err := bt.Set(ref, "name", "B"); err != nil {
			return err
		}
		return bt.Set(b, "of", "bad")
	})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad batch: %v", err)
	}
	if got, _ := r.Get(ctx, ref); got.Fields["name"].Value != "A" {
		t.Fatalf("half a failed batch was stored: %v", got.Fields["name"].Value)
	}
	if n := len(pendingOps(t, r)); n != 3 || r.Status().Pending != 3 {
		t.Fatalf("outbox %d ops, status %d", n, r.Status().Pending)
	}
}

// A write overwriting a pulled op stamped after the local clock (from a
// replica whose clock runs ahead) gets an ID after it instead of failing,
// even if the server's reply carried no clock reading.
func TestWriteOverFutureOp(t *testing.T) {
	ctx := context.Background()
	wall := &fakeWall{t: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	ann := openTest(t, t.TempDir(), func(o *Options) { o.Wall = wall.now })
	ref := Ref{Team: "wigan", Collection: "people", ID: "p"}
	future := crdt.OpID{Time: crdt.MakeTimestamp(wall.t.Add(time.Minute).UnixMilli(), 0), Replica: crdt.ReplicaID{9}}
	op := crdt.Op{ID: future, Team: ref.Team, Collection: ref.Collection, Record: ref.ID, Field: "phone", Kind: crdt.KindWrite, Value: crdt.MustValue("theirs")}
	deliver(t, ann, []crdt.Op{op})
	if err := ann.Set(ctx, ref, "phone", "mine"); err != nil {
		t.Fatal(err)
	}
	got, _ := ann.Get(ctx, ref)
	if f := got.Fields["phone"]; f.Value != "mine" || f.Conflict {
		t.Fatalf("phone = %+v", f)
	}
}

// TestApplyRemoteDuringClose: ApplyRemote that was waiting for the write
// lock while Close began returns ErrClosed, as every other write does,
// rather than writing (or failing on a closed Badger). The short pause only
// lets the call get past its first check so the case is exercised; the
// assertion holds whichever way the goroutines are scheduled.
func TestApplyRemoteDuringClose(t *testing.T) {
	r := openTest(t, t.TempDir(), nil)
	rec := crdt.NewRecord("wigan", "people", "p")
	op := rec.Write(crdt.OpID{Time: 1 << 40, Replica: crdt.NewReplicaID()}, "name", crdt.MustValue("P"))
	r.wmu.Lock()
	done := make(chan error, 1)
	go func() { done <- r.ApplyRemote(context.Background(), []crdt.Op{op}) }()
	time.Sleep(20 * time.Millisecond)
	r.closeFn() // Close's first step: from here every call must see ErrClosed
	r.wmu.Unlock()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("ApplyRemote during Close: %v, want ErrClosed", err)
	}
}
