package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// TestUpgradeKeepsLayout2Outbox: a device upgraded from layout 2 with a
// full outbox (sealed changes and unsealed writes, stored in the msgpack
// form) opens at layout 3 without rewriting any entry, shows the same
// pending ops, seals the old writes together with new ones, and pushes
// every op exactly once: the server ends with the device's records.
func TestUpgradeKeepsLayout2Outbox(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	dir := t.TempDir()
	mod := func(o *Options) {
		o.ServerURL = f.srv.URL
		o.MaxOpsPerChange = 5
		o.MaxChangesPerRequest = 2
	}
	r, err := Open(ctx, Options{Dir: dir, EncryptionKey: testKey, NoValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	r = openTest(t, dir, mod)
	if _, err := r.Login(ctx, "ann", "pw"); err != nil {
		t.Fatal(err)
	}
	var refs []Ref
	write := func(n int) {
		for i := range n {
			ref, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": fmt.Sprint("p", i), "age": i})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Batch(ctx, func(b *Batch) error {
				if err := b.Set(ref, "phone", fmt.Sprint("0194", i)); err != nil {
					return err
				}
				return b.Add(ref, "needs", "mobility")
			}); err != nil {
				t.Fatal(err)
			}
			refs = append(refs, ref)
		}
	}
	write(4)
	if err := r.seal(); err != nil { // seals 2 changes (MaxChangesPerRequest)
		t.Fatal(err)
	}
	write(3)
	// Rewrite the outbox as layout 2 stored it, and say layout 2.
	old := map[string][]byte{}
	err = r.db.Update(func(txn *badger.Txn) error {
		for _, p := range [][]byte{prefChange, prefPending} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: p, PrefetchValues: true})
			for it.Rewind(); it.Valid(); it.Next() {
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					it.Close()
					return err
				}
				c, err := decodeChange(v)
				if err != nil {
					it.Close()
					return err
				}
				b, err := encodeChangeMsgpack(c)
				if err != nil {
					it.Close()
					return err
				}
				old[string(it.Item().KeyCopy(nil))] = b
			}
			it.Close()
		}
		for k, v := range old {
			if err := txn.Set([]byte(k), v); err != nil {
				return err
			}
		}
		return txn.Set(keyLayout, binary.BigEndian.AppendUint32(nil, 2))
	})
	if err != nil {
		t.Fatal(err)
	}
	sealed, unsealed, err := r.OutboxChanges(ctx)
	if err != nil || len(sealed) < 2 || unsealed == 0 {
		t.Fatalf("outbox before the upgrade: %d sealed, %d unsealed, %v", len(sealed), unsealed, err)
	}
	wantOps := pendingOps(t, r)
	wantPending := r.Status().Pending
	r.Close()

	r = openTest(t, dir, mod)
	err = r.db.View(func(txn *badger.Txn) error {
		if v, err := get(txn, keyLayout); err != nil || u32(v) != CurrentLayout {
			return fmt.Errorf("layout %x, %v", v, err)
		}
		for k, want := range old {
			got, err := get(txn, []byte(k))
			if err != nil || !bytes.Equal(got, want) {
				return fmt.Errorf("entry %q rewritten by the upgrade (%v)", k, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := pendingOps(t, r); !reflect.DeepEqual(got, wantOps) {
		t.Fatalf("pending ops after the upgrade differ: %d ops, want %d", len(got), len(wantOps))
	}
	if got := r.Status().Pending; got != wantPending {
		t.Fatalf("Pending %d after the upgrade, want %d", got, wantPending)
	}
	write(2)
	if err := r.seal(); err != nil {
		t.Fatal(err)
	}
	if got := pendingOps(t, r); !reflect.DeepEqual(got[:len(wantOps)], wantOps) {
		t.Fatal("sealing the old writes changed their ops")
	}
	res := mustSync(t, r)
	if res.PushedOps != len(wantOps)+2*4 || r.Status().Pending != 0 {
		t.Fatalf("pushed %d ops, want %d; pending %d", res.PushedOps, len(wantOps)+2*4, r.Status().Pending)
	}
	if empty, err := r.outboxEmpty(); err != nil || !empty {
		t.Fatalf("outbox not empty after the push: %v", err)
	}
	for _, ref := range refs {
		st, err := r.GetState(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		assertSameState(t, st, f.state(ref))
	}
}

// TestSealKeepsOpsAndOrder: sealing concatenates the writes' packed
// blocks without decoding them; the sealed changes hold every op once, in
// write order, within MaxOpsPerChange unless a single write is bigger.
func TestSealKeepsOpsAndOrder(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.MaxOpsPerChange = 7; o.MaxChangesPerRequest = 100 })
	var want []crdt.Op
	for i := range 20 {
		fields := map[string]any{}
		for k := range i%4 + 1 {
			fields[fmt.Sprint("f", k)] = i*10 + k
		}
		if _, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, fields); err != nil {
			t.Fatal(err)
		}
	}
	if i := 9; i > 0 {
		// One write bigger than a change: sealed alone.
		if err := r.Batch(ctx, func(b *Batch) error {
			for k := range i {
				if _, err := b.Create(Ref{Team: "wigan", Collection: "people"}, map[string]any{"n": k}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	want = pendingOps(t, r)
	if err := r.seal(); err != nil {
		t.Fatal(err)
	}
	changes, unsealed, err := r.OutboxChanges(ctx)
	if err != nil || unsealed != 0 {
		t.Fatalf("unsealed %d, %v", unsealed, err)
	}
	var got []crdt.Op
	for i, c := range changes {
		if c.Seq != uint64(i+1) || len(c.Ops) > 9 || len(c.Ops) > 7 && len(c.Ops) != 9 {
			t.Fatalf("change %d: seq %d, %d ops", i, c.Seq, len(c.Ops))
		}
		got = append(got, c.Ops...)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("sealed ops differ from the writes' (%d vs %d)", len(got), len(want))
	}
}

// TestFailedCreateInBatchLeavesNoTrace: a create or a set that fails
// inside a batch whose fn goes on leaves neither ops nor a record behind:
// the same ID can be created in the same batch, and only that create is
// stored and queued.
func TestFailedCreateInBatchLeavesNoTrace(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.MaxValueBytes = 64 })
	ref := Ref{Team: "wigan", Collection: "people", ID: "p1"}
	err := r.Batch(ctx, func(b *Batch) error {
		if err := b.CreateWithID(ref, map[string]any{"a": "x", "z": strings.Repeat("v", 100)}); !errors.Is(err, ErrInvalid) {
			t.Errorf("oversized create: %v, want ErrInvalid", err)
		}
		if err := b.CreateWithID(ref, map[string]any{"b": "y"}); err != nil {
			return err
		}
		if err := b.Set(ref, "b", strings.Repeat("v", 100)); !errors.Is(err, ErrInvalid) {
			t.Errorf("oversized set: %v, want ErrInvalid", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Get(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Fields) != 1 || got.Fields["b"].Value != "y" {
		t.Fatalf("record holds %+v", got.Fields)
	}
	if ops := pendingOps(t, r); len(ops) != 1 || ops[0].Field != "b" {
		t.Fatalf("outbox holds %d ops: %+v", len(ops), ops)
	}
}

// TestCreateOpsInNameOrder: a create's ops come in field-name order
// whether its fields are those of the create before it (whose sorted
// names are reused) or not.
func TestCreateOpsInNameOrder(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), nil)
	forms := []map[string]any{
		{"c": 1, "a": 2, "b": 3},
		{"b": 1, "c": 2, "a": 3},  // the same names
		{"b": 1, "c": 2, "d": 3},  // as many, others
		{"z": 1, "y": 2},          // fewer
		{"y": 1, "z": 2, "x": 3},  // more
		{"x": 1, "y": 2, "z": 3},  // the same again
		{"x": 1, "y": 2, "zz": 3}, // one differs
		{"q": 1, "p": 2, "o": 3, "n": 4},
	}
	want := [][]string{{"a", "b", "c"}, {"a", "b", "c"}, {"b", "c", "d"}, {"y", "z"}, {"x", "y", "z"}, {"x", "y", "z"}, {"x", "y", "zz"}, {"n", "o", "p", "q"}}
	for i, f := range forms {
		before := len(pendingOps(t, r))
		if _, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, f); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, op := range pendingOps(t, r)[before:] {
			got = append(got, op.Field)
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Fatalf("create %d: ops on %v, want %v", i, got, want[i])
		}
	}
}

// FuzzOutboxEntry: decodeChange never panics on stored bytes, whatever
// they are, and what it decodes encodes back to a packed entry that
// decodes to the same change.
//
//	go test -run '^$' -fuzz '^FuzzOutboxEntry$' -fuzztime 30s ./client-sdk
func FuzzOutboxEntry(f *testing.F) {
	rep := crdt.ReplicaID{9}
	ops := []crdt.Op{
		{ID: crdt.OpID{Time: 100, Replica: rep}, Team: "wigan", Collection: "people", Record: NewID(), Field: "name", Kind: crdt.KindWrite, Value: crdt.MustValue("A")},
		{ID: crdt.OpID{Time: 101, Replica: rep}, Team: "wigan", Collection: "people", Record: "p1", Field: "needs", Kind: crdt.KindRemove, Pred: []crdt.OpID{{Time: 100, Replica: rep}}},
	}
	for _, c := range []*api.Change{{Seq: 1, Ops: ops}, {Seq: 2}, {Seq: 3, Ops: ops[:1]}} {
		f.Add(must(encodeChange(c)))
		f.Add(must(encodeChangeMsgpack(c)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeChange(b)
		if err != nil {
			return
		}
		if n, err := entryOps(b); err != nil || n != len(c.Ops) {
			t.Fatalf("entryOps %d, %v; decoded %d ops", n, err, len(c.Ops))
		}
		for i := range c.Ops {
			if c.Ops[i].Validate() != nil {
				return // no write stores an invalid op (the msgpack form's decoder lets them by)
			}
		}
		again, err := encodeChange(c)
		if err != nil {
			t.Fatalf("valid ops do not pack: %v", err)
		}
		back, err := decodeChange(again)
		if err != nil || back.Seq != c.Seq || len(back.Ops) != len(c.Ops) {
			t.Fatalf("re-encoded change decodes to %+v, %v; want %+v", back, err, c)
		}
		for i := range c.Ops {
			if !reflect.DeepEqual(normOp(back.Ops[i]), normOp(c.Ops[i])) {
				t.Fatalf("op %d: %+v, want %+v", i, back.Ops[i], c.Ops[i])
			}
		}
	})
}

// normOp makes empty and nil values and preds alike.
func normOp(op crdt.Op) crdt.Op {
	if len(op.Value) == 0 {
		op.Value = nil
	}
	if len(op.Pred) == 0 {
		op.Pred = nil
	}
	return op
}

// goldenChange is the change of TestOutboxEntryGolden.
func goldenChange() *api.Change {
	rep := crdt.ReplicaID{0xa1, 0xb2, 15: 0x01}
	other := crdt.ReplicaID{0xbe, 0xa0, 15: 0x02}
	return &api.Change{Seq: 42, Ops: []crdt.Op{
		{ID: crdt.OpID{Time: crdt.MakeTimestamp(1764590400000, 0), Replica: rep}, Team: "wigan", Collection: "people",
			Record: "0123456789abcdef0123456789abcdef", Field: "name", Kind: crdt.KindWrite, Value: crdt.MustValue("Mrs Jones")},
		{ID: crdt.OpID{Time: crdt.MakeTimestamp(1764590400000, 1), Replica: rep}, Team: "wigan", Collection: "people",
			Record: "0123456789abcdef0123456789abcdef", Field: "needs", Kind: crdt.KindAdd, Value: crdt.MustValue("mobility")},
		{ID: crdt.OpID{Time: crdt.MakeTimestamp(1764590400001, 0), Replica: rep}, Team: "wigan", Collection: "people",
			Record: "p1", Field: "needs", Kind: crdt.KindRemove, Pred: []crdt.OpID{{Time: crdt.MakeTimestamp(1764590399000, 3), Replica: other}}},
		{ID: crdt.OpID{Time: crdt.MakeTimestamp(1764590400001, 1), Replica: rep}, Team: "wigan", Collection: "people",
			Record: "p1", Field: "notes", Kind: crdt.KindAppend, Value: crdt.MustValue(map[string]any{"t": "first visit"})},
	}}
}

// storedLayout3 is goldenChange as this build's encodeChange stores it.
const storedLayout3 = "012a04df0201ac0101070a776967616e0c70656f706c65210123456789abcdef0123456789abcdef086e616d650a6e656564730470310a6e6f74657302a1b20000000000000000000000000001bea0000000000000000000000000000201000409020001020200010502040304040604090a130c0e808080a096f2ec9a0302feff070204000000000501fdffa31f250aa94d7273204a6f6e657309a86d6f62696c6974790f81a174ab6669727374207669736974"

// TestOutboxEntryGolden: an outbox entry stored by layout 3 keeps decoding
// to the same change. Devices hold such entries across upgrades, so
// neither this package's entry header nor api's packed block (version 1)
// may stop reading them: a change to either needs a new layout and a
// migration, not an edit of this constant.
func TestOutboxEntryGolden(t *testing.T) {
	b, err := hex.DecodeString(storedLayout3)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeChange(b)
	if err != nil {
		t.Fatalf("a stored layout-3 entry no longer decodes: %v", err)
	}
	if want := goldenChange(); !reflect.DeepEqual(got, want) {
		t.Fatalf("a stored layout-3 entry decodes to\n%+v\nwant\n%+v", got, want)
	}
}

// TestSealUnpackableOldGroup: a write group an older SDK stored with an op
// the packed form refuses (a pred newer than the op) is sealed alone in
// the msgpack form, between the changes of the groups around it, instead
// of stopping the seal: every op stays in the outbox, in order.
func TestSealUnpackableOldGroup(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.MaxOpsPerChange = 100 })
	ref, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": "A"})
	if err != nil {
		t.Fatal(err)
	}
	bad := crdt.Op{ID: crdt.OpID{Time: 10, Replica: r.ID()}, Team: "wigan", Collection: "people", Record: ref.ID,
		Field: "name", Kind: crdt.KindWrite, Value: crdt.MustValue("B"), Pred: []crdt.OpID{{Time: 20, Replica: r.ID()}}}
	err = r.db.Update(func(txn *badger.Txn) error {
		v, err := get(txn, keyNextOp)
		if err != nil {
			return err
		}
		n := u64(v) + 1
		b, err := encodeChangeMsgpack(&api.Change{Ops: []crdt.Op{bad}})
		if err != nil {
			return err
		}
		if err := txn.Set(u64Key(prefPending, n), b); err != nil {
			return err
		}
		return txn.Set(keyNextOp, u64Bytes(n))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Set(ctx, ref, "name", "C"); err != nil {
		t.Fatal(err)
	}
	want := pendingOps(t, r)
	if err := r.seal(); err != nil {
		t.Fatalf("seal: %v", err)
	}
	changes, unsealed, err := r.OutboxChanges(ctx)
	if err != nil || unsealed != 0 || len(changes) != 3 {
		t.Fatalf("%d changes, %d unsealed, %v; want 3 changes", len(changes), unsealed, err)
	}
	if len(changes[1].Ops) != 1 || !reflect.DeepEqual(normOp(changes[1].Ops[0]), normOp(bad)) {
		t.Fatalf("change 2 holds %+v", changes[1].Ops)
	}
	if got := pendingOps(t, r); !reflect.DeepEqual(got, want) {
		t.Fatalf("ops after sealing differ from the writes'")
	}
}
