package client

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
)

// TestWhichWritesSync counts the syncs to disk (durable.go) that each
// kind of local write makes: a Batch and a seal are synced once, an
// ordinary reply (acknowledgements, a pulled page) and a transaction that
// writes nothing not at all, a reply holding a rejection once.
func TestWhichWritesSync(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), func(o *Options) { o.MaxOpsPerChange = 3 })
	syncs := func(what string, want int64, fn func() error) {
		t.Helper()
		before := r.db.syncs.Load()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := r.db.syncs.Load() - before; got != want {
			t.Errorf("%s: %d syncs, want %d", what, got, want)
		}
	}
	for i := range 8 {
		syncs("a write", 1, func() error {
			_, err := r.Create(ctx, Ref{Team: "t1", Collection: "people"}, map[string]any{"name": fmt.Sprint("p", i), "n": i})
			return err
		})
	}
	syncs("a transaction that writes nothing", 0, func() error {
		return r.db.Update(func(txn *badger.Txn) error {
			_, err := get(txn, keyCursor)
			return err
		})
	})
	// Eight writes of two ops, three a change: eight changes, sealed in
	// one transaction (before issue 17's fifth pass, two: four changes
	// each).
	syncs("sealing 8 changes", 1, r.seal)
	changes, err := r.loadChanges(0, 8)
	if err != nil || len(changes) != 8 {
		t.Fatalf("loaded %d changes (%v), want 8", len(changes), err)
	}
	acked := func(cs []api.Change) []api.ChangeResult {
		var out []api.ChangeResult
		for _, c := range cs {
			out = append(out, api.ChangeResult{Seq: c.Seq, Status: api.ChangeApplied})
		}
		return out
	}
	syncs("a reply that acknowledges and pulls", 0, func() error {
		_, err := r.storeReply(changes[:4], &api.SyncResponse{Cursor: []byte("c1"), Results: acked(changes[:4])})
		return err
	})
	res := acked(changes[4:])
	res[0].Ops = []api.OpResult{{Index: 0, Code: api.CodeInvalidOp, Detail: "refused"}}
	syncs("a reply with a rejection", 1, func() error {
		_, err := r.storeReply(changes[4:], &api.SyncResponse{Cursor: []byte("c2"), Results: res})
		return err
	})
	if rj, err := r.Rejected(ctx); err != nil || len(rj) != 1 {
		t.Fatalf("rejected %v (%v), want one", rj, err)
	}
	if n, err := r.countPending(); err != nil || n != 0 {
		t.Errorf("%d ops in the outbox (%v) after every change was acknowledged", n, err)
	}
}

// TestEveryCommitGoesThroughSyncedDB: a write transaction committed other
// than by syncedDB (durable.go) would not be synced to disk, since the
// replica's Badger is opened with SyncWrites off. No file of the package
// but durable.go commits a Badger transaction itself or reaches past
// syncedDB to the Badger it wraps (replica.go's Open, which hands it to
// layout.Migrate and syncs after, aside).
func TestEveryCommitGoesThroughSyncedDB(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	commit := regexp.MustCompile(`\.Commit(With)?\(|\.NewWriteBatch\(|\.NewStreamWriter\(`)
	direct := regexp.MustCompile(`\bdb\.DB\b`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "durable.go" {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			if commit.MatchString(line) {
				t.Errorf("%s:%d commits a Badger transaction other than through syncedDB: %s", f, i+1, strings.TrimSpace(line))
			}
			if direct.MatchString(line) && f != "replica.go" {
				t.Errorf("%s:%d writes through the Badger syncedDB wraps: %s", f, i+1, strings.TrimSpace(line))
			}
		}
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
	before := r.db.syncs.Load()
	if err := r.seal(); err != nil {
		t.Fatal(err)
	}
	if n := r.db.syncs.Load() - before; n != 1 {
		t.Errorf("seal: %d syncs, want 1", n)
	}
	write("d", 5) // nothing unsealed before it: sealed as written
	unsealed(0)
	before = r.db.syncs.Load()
	if err := r.seal(); err != nil {
		t.Fatal(err)
	}
	if n := r.db.syncs.Load() - before; n != 0 {
		t.Errorf("seal of nothing: %d syncs, want 0", n)
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
		for _, op := range c.Ops {
			var v string
			if err := msgpack.Unmarshal(op.Value, &v); err != nil {
				t.Fatal(err)
			}
			names[v] = true
		}
		for n := range names {
			got = append(got, fmt.Sprintf("%s:%d", n, len(c.Ops)))
		}
	}
	if want := []string{"a:3", "b:1", "c:4", "d:5"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("changes hold %v, want %v", got, want)
	}
}
