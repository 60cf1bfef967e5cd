package client

import (
	"context"
	"fmt"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// commits returns the replica's last commit timestamp: it moves by one
// for every transaction that wrote something, each a durable commit (and
// two msyncs) with SyncWrites on, and not for one that wrote nothing.
func commits(r *Replica) uint64 {
	txn := r.db.NewTransaction(false)
	defer txn.Discard()
	return txn.ReadTs()
}

// TestSealTransactions: sealing a round's eight small changes is one
// durable transaction (before issue 17's fifth pass, two: at most four
// changes each), and a seal with nothing to seal writes nothing.
func TestSealTransactions(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.MaxOpsPerChange = 3 })
	for i := range 8 {
		// Two ops, three a change: each write a change of its own.
		if _, err := r.Create(ctx, Ref{Team: "t1", Collection: "people"}, map[string]any{"name": fmt.Sprint("p", i), "n": i}); err != nil {
			t.Fatal(err)
		}
	}
	before := commits(r)
	if err := r.seal(); err != nil {
		t.Fatal(err)
	}
	if n := commits(r) - before; n != 1 {
		t.Errorf("sealing 8 changes: %d transactions, want 1", n)
	}
	changes, err := r.loadChanges(0, 8)
	if err != nil || len(changes) != 8 {
		t.Fatalf("loaded %d changes (%v), want 8", len(changes), err)
	}
	before = commits(r)
	if err := r.seal(); err != nil {
		t.Fatal(err)
	}
	if n := commits(r) - before; n != 0 {
		t.Errorf("a seal with nothing to seal: %d transactions, want 0", n)
	}
}

// TestSealAtWrite: a write whose ops fill a change is stored as that
// sealed change in its own transaction, unless an unsealed write is
// before it; either way the changes hold the writes' ops in write order,
// one write a change, as sealFrom alone would seal them.
func TestSealAtWrite(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.MaxOpsPerChange = 3 })
	write := func(name string, fields int) {
		t.Helper()
		f := map[string]any{}
		for i := range fields {
			f[fmt.Sprintf("f%d", i)] = name
		}
		if _, err := r.Create(ctx, Ref{Team: "t1", Collection: "people"}, f); err != nil {
			t.Fatal(err)
		}
	}
	unsealed := func(want int) {
		t.Helper()
		groups, err := r.unsealed()
		if err != nil || len(groups) != want {
			t.Fatalf("%d unsealed groups (%v), want %d", len(groups), err, want)
		}
	}
	write("a", 3) // fills a change: sealed as it is written
	unsealed(0)
	write("b", 1) // does not: unsealed
	write("c", 4) // fills one, but b is before it: unsealed
	unsealed(2)
	before := commits(r)
	if err := r.seal(); err != nil {
		t.Fatal(err)
	}
	if n := commits(r) - before; n != 1 {
		t.Errorf("seal: %d transactions, want 1", n)
	}
	write("d", 5) // nothing unsealed before it: sealed as written
	unsealed(0)
	before = commits(r)
	if err := r.seal(); err != nil {
		t.Fatal(err)
	}
	if n := commits(r) - before; n != 0 {
		t.Errorf("seal of nothing: %d transactions, want 0", n)
	}
	changes, err := r.loadChanges(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, c := range changes {
		if c.Seq != uint64(i+1) {
			t.Errorf("change %d has seq %d", i, c.Seq)
		}
		names := map[string]bool{}
		ops, err := c.decoded()
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			var v string
			if err := msgpack.Unmarshal(op.Value, &v); err != nil {
				t.Fatal(err)
			}
			names[v] = true
		}
		for n := range names {
			got = append(got, fmt.Sprintf("%s:%d", n, len(ops)))
		}
	}
	if want := []string{"a:3", "b:1", "c:4", "d:5"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("changes hold %v, want %v", got, want)
	}
}
