package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/crdt"
)

// storedState returns the stored state bytes of ref.
func storedState(t *testing.T, r *Replica, ref Ref) []byte {
	t.Helper()
	var v []byte
	if err := r.view(func(txn *badger.Txn) error {
		var err error
		v, err = get(txn, recordKey(ref))
		return err
	}); err != nil || v == nil {
		t.Fatalf("state of %v: %v (%d bytes)", ref, err, len(v))
	}
	return v
}

// TestCreateStoresBuiltState: a record created in a batch is stored
// without being built (Batch.news, crdt.AppendNewState), and its stored
// state is the one building it from its outbox ops gives; one written
// again or read in the batch after its create is built then, and the
// later write lands on it; a second create of a batch's record fails.
func TestCreateStoresBuiltState(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.NoValidation = false })
	a := Ref{Team: "wigan", Collection: "people", ID: "a"}
	b := Ref{Team: "wigan", Collection: "people", ID: "b"}
	c := Ref{Team: "wigan", Collection: "people", ID: "c"}
	person := func(name string, more map[string]any) map[string]any {
		m := map[string]any{"given_name": name, "family_name": "Jones", "date_of_birth": "1940-01-02", "address": "1 Street"}
		for k, v := range more {
			m[k] = v
		}
		return m
	}
	var fresh Ref
	err := r.Batch(ctx, func(bt *Batch) error {
		if err := bt.CreateWithID(a, person("A", map[string]any{"phone": "1", "tags": []any{"x", "y", "x"}, "case_notes": []string{"one", "two"}})); err != nil {
			return err
		}
		if err := bt.CreateWithID(a, person("again", nil)); !errors.Is(err, ErrInvalid) {
			t.Errorf("second create in the batch: %v", err)
		}
		if err := bt.CreateWithID(b, person("B", map[string]any{"phone": "2"})); err != nil {
			return err
		}
		if err := bt.Set(b, "phone", "3"); err != nil {
			return err
		}
		if err := bt.CreateWithID(c, person("C", nil)); err != nil {
			return err
		}
		got, err := bt.Get(c)
		if err != nil || got.Fields["given_name"].Value != "C" {
			t.Errorf("Get after create: %+v %v", got, err)
		}
		fresh, err = bt.Create(Ref{Team: "wigan", Collection: "people"}, person("D", nil))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ops := pendingOps(t, r)
	for _, ref := range []Ref{a, b, c, fresh} {
		rec := crdt.NewRecord(ref.Team, ref.Collection, ref.ID)
		for i := range ops {
			if ops[i].Record == ref.ID {
				if err := rec.Apply(&ops[i]); err != nil {
					t.Fatal(err)
				}
			}
		}
		want, err := crdt.MarshalRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if got := storedState(t, r, ref); !bytes.Equal(got, want) {
			t.Errorf("%s: stored state\n%x\nwant (its ops applied)\n%x", ref.ID, got, want)
		}
	}
	if got, _ := r.Get(ctx, b); got.Fields["phone"].Value != "3" {
		t.Errorf("b.phone = %v, want the write after the create", got.Fields["phone"].Value)
	}
	if got, _ := r.Get(ctx, a); len(got.Fields["tags"].Members) != 2 || len(got.Fields["case_notes"].Entries) != 2 {
		t.Errorf("a.tags = %+v, a.case_notes = %+v", got.Fields["tags"], got.Fields["case_notes"])
	}
	// A stored record is not created again.
	if err := r.CreateWithID(ctx, a, person("again", nil)); !errors.Is(err, ErrInvalid) {
		t.Errorf("create of a stored record: %v", err)
	}
}

// TestCreatePlanPerCollection: the schema look-ups a create keeps for the
// next create of the same fields (createPlan) hold only in the same
// collection: the same fields missing what people require are refused
// there every time, and checked afresh against what carers require.
func TestCreatePlanPerCollection(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.NoValidation = false })
	fields := map[string]any{"phone": "01942 000000"}
	missing := func(collection string) []string {
		t.Helper()
		_, err := r.Create(ctx, Ref{Team: "wigan", Collection: collection}, fields)
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("create in %s: %v", collection, err)
		}
		return ve.Missing
	}
	for range 2 {
		if got := missing("people"); len(got) != 4 {
			t.Fatalf("people: missing %v, want given_name, family_name, date_of_birth, address", got)
		}
	}
	if got := missing("carers"); len(got) != 2 {
		t.Fatalf("carers: missing %v, want cared_for_person_id, relationship", got)
	}
}

// TestLargestBatchOfCreatesFits: a batch of creates at the write limits
// (MaxWriteOps ops, their estimate just under MaxWriteBytes) fits one
// Badger transaction with its records' states and its outbox group: with
// 32 MiB memtables a transaction holds 4.8 MiB (replica.go).
func TestLargestBatchOfCreatesFits(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 4 MB")
	}
	ctx := context.Background()
	r := openTest(t, t.TempDir(), nil)
	value := strings.Repeat("v", 300)
	var size int
	err := r.Batch(ctx, func(b *Batch) error {
		for i := range 1000 {
			fields := make(map[string]any, 10)
			for k := range 10 {
				fields[fmt.Sprintf("f%d", k)] = fmt.Sprintf("%04d%s", i, value)
			}
			if _, err := b.Create(Ref{Team: "wigan", Collection: "people"}, fields); err != nil {
				return err
			}
		}
		size = opsSize(b.ops)
		return nil
	})
	if err != nil {
		t.Fatalf("a batch of %d ops, %d bytes estimated: %v", 10_000, size, err)
	}
	if size < r.opts.MaxWriteBytes*9/10 {
		t.Fatalf("estimate %d bytes, not near the limit %d", size, r.opts.MaxWriteBytes)
	}
	if n := len(pendingOps(t, r)); n != 10_000 {
		t.Fatalf("%d ops in the outbox", n)
	}
}
