package client

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"
	"sync/atomic"
	"testing"
)

// TestBatchGroupCommit: batches made concurrently, some of them failing,
// are each stored whole or not at all: after a reopen every batch that
// returned nil is there with all its ops, in the outbox once, and no
// failed batch left anything, though they shared transactions.
func TestBatchGroupCommit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := openTest(t, dir, nil)
	const writers, each = 8, 40
	refs := make([]Ref, writers)
	for w := range refs {
		ref, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": fmt.Sprint("P", w)})
		if err != nil {
			t.Fatal(err)
		}
		refs[w] = ref
	}
	errBoom := errors.New("boom")
	var ok, failed atomic.Int64
	var wg gosync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				err := r.Batch(ctx, func(b *Batch) error {
					if err := b.Append(refs[w], "notes", fmt.Sprintf("w%d n%d", w, i)); err != nil {
						return err
					}
					if err := b.Set(refs[w], "last", i); err != nil {
						return err
					}
					if i%5 == 4 {
						return errBoom // after writing: must leave nothing
					}
					return nil
				})
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, errBoom):
					failed.Add(1)
				default:
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = openTest(t, dir, nil)
	if got, want := len(pendingOps(t, r)), writers+2*int(ok.Load()); got != want {
		t.Fatalf("%d ops in the outbox, want %d (%d creates, %d batches of 2)", got, want, writers, ok.Load())
	}
	for w, ref := range refs {
		rec, err := r.Get(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		notes := rec.Fields["notes"].Entries
		if len(notes) != each*4/5 {
			t.Fatalf("writer %d: %d notes, want %d", w, len(notes), each*4/5)
		}
		for _, e := range notes {
			var i int
			if _, err := fmt.Sscanf(fmt.Sprint(e.Value), fmt.Sprintf("w%d n%%d", w), &i); err != nil || i%5 == 4 {
				t.Fatalf("writer %d: note %v from a failed batch", w, e.Value)
			}
		}
		if v := rec.Fields["last"].Value; v != int64(each-2) {
			t.Fatalf("writer %d: last = %v, want %d", w, v, each-2)
		}
	}
	if failed.Load() != writers*each/5 {
		t.Fatalf("%d batches failed, want %d", failed.Load(), writers*each/5)
	}
}

// BenchmarkConcurrentSets: durable single-field Sets from 8 goroutines at
// once (an app saving from several screens and a background import). With
// group commit, writes that arrive while a commit is in flight share the
// next transaction and fsync.
//
//	go test -run '^$' -bench '^BenchmarkConcurrentSets$' -benchtime 2000x ./client-sdk
func BenchmarkConcurrentSets(b *testing.B) {
	ctx := context.Background()
	r, err := Open(ctx, Options{Dir: b.TempDir(), EncryptionKey: testKey, NoValidation: true})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	refs := make([]Ref, 64)
	for i := range refs {
		if refs[i], err = r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": "x"}); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.SetParallelism(4) // 4 × GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := r.Set(ctx, refs[i%int64(len(refs))], "phone", fmt.Sprint(i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// TestGroupCommitTxnTooBig: when a batch does not fit the transaction it
// shares with the batches before it, those are stored on their own and it
// alone, each whole: five batches of 10,000 new records, together over
// Badger's per-transaction size (4.8 MiB with 32 MiB memtables), all
// succeed with the group cap lifted so that they try to share one
// transaction.
func TestGroupCommitTxnTooBig(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 50,000 records")
	}
	defer func(n int) { maxGroupBytes = n }(maxGroupBytes)
	maxGroupBytes = 1 << 30
	ctx := context.Background()
	dir := t.TempDir()
	r := openTest(t, dir, nil)
	var group []*batchReq
	for g := range 5 {
		group = append(group, &batchReq{done: make(chan struct{}), fn: func(b *Batch) error {
			for i := range 10_000 {
				if _, err := b.Create(Ref{Team: "wigan", Collection: "people", ID: fmt.Sprintf("g%d-%d", g, i)}, map[string]any{"n": i}); err != nil {
					return err
				}
			}
			return nil
		}})
	}
	r.wmu.Lock()
	r.commitBatches(group)
	r.wmu.Unlock()
	for g, q := range group {
		<-q.done
		if q.err != nil {
			t.Fatalf("batch %d: %v", g, q.err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = openTest(t, dir, nil)
	recs, err := r.List(ctx, "wigan", "people")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 50_000 || len(pendingOps(t, r)) != 50_000 {
		t.Fatalf("%d records and %d ops stored, want 50,000 each", len(recs), len(pendingOps(t, r)))
	}
}
