package sync

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store/memory"
)

// Overlapped commits (overlap.go) on a real Badger store, whatever the
// test backend.

// overlapChanges returns the changes seqs from..to of replica r (crashChange:
// one record each, ten fields).
func overlapChanges(r crdt.ReplicaID, from, to uint64, base crdt.Timestamp) []api.Change {
	var out []api.Change
	for s := from; s <= to; s++ {
		out = append(out, crashChange(r, s, base))
	}
	return out
}

// queue sends a prepared push straight to the committer, as submit does
// without waiting, so that a test controls the order two pushes of one
// device arrive in.
func queue(e *Engine, r *request) {
	r.done = make(chan struct{})
	e.reqs <- r
}

// checkPushed checks that every change of replica r up to seq is stored
// once: its record with ten fields, and the high-water mark.
func checkPushed(t *testing.T, e *Engine, c Caller, seq uint64) {
	t.Helper()
	for s := uint64(1); s <= seq; s++ {
		ref := api.RecordRef{Team: "wigan", Collection: "crash", ID: fmt.Sprintf("%s-%d", c.Replica, s)}
		rec, err := e.Record(context.Background(), c, ref)
		if err != nil {
			t.Fatalf("change %d of %s: %v", s, c.Replica, err)
		}
		if len(rec.Fields) != 10 {
			t.Fatalf("change %d of %s: %d fields, want 10", s, c.Replica, len(rec.Fields))
		}
	}
	hw, err := e.replicaHighWater(context.Background(), c.Replica)
	if err != nil || hw != seq {
		t.Fatalf("high-water of %s = %d, %v; want %d", c.Replica, hw, err, seq)
	}
}

// TestOverlapPipelinedPushes: one device queues its pushes two at a time
// (a small one, then a large one behind it, as a pipelining device does)
// while another device pushes all along, so groups are built while the
// commit ahead is in flight. The push behind reads the one ahead through
// the overlay (its seqs follow on, or they would be refused as a gap):
// everything is applied once, in order, with one log position per change
// and no gap, and a new device pulls all of it.
func TestOverlapPipelinedPushes(t *testing.T) {
	e := openTest(t, Options{Store: badgerKV(t, t.TempDir()), OverlapCommits: true})
	if !e.overlap {
		t.Fatal("the engine does not overlap commits on Badger")
	}
	a := Caller{User: "a", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	b := Caller{User: "b", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	base := crdt.MakeTimestamp(time.Now().UnixMilli(), 0)
	stop := make(chan struct{})
	var bSeq atomic.Uint64
	var wg gosync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for s := uint64(1); ; s++ {
			select {
			case <-stop:
				return
			default:
			}
			res, err := e.Push(context.Background(), b, overlapChanges(b.Replica, s, s, base))
			if err != nil || res[0].Status != api.ChangeApplied {
				t.Errorf("push %d of b: %+v %v", s, res, err)
				return
			}
			bSeq.Store(s)
		}
	}()
	seq := uint64(0)
	for round := 0; round < 20 || e.overlapped.Load() == 0 && round < 200; round++ {
		small := e.preparePush(a, overlapChanges(a.Replica, seq+1, seq+2, base), false)
		large := e.preparePush(a, overlapChanges(a.Replica, seq+3, seq+30, base), false) // 280 ops: a large push
		queue(e, small)
		queue(e, large)
		<-small.done
		<-large.done
		for _, r := range []*request{small, large} {
			if r.err != nil {
				t.Fatalf("round %d: %v", round, r.err)
			}
			for _, res := range r.results {
				if res.Status != api.ChangeApplied || len(res.Ops) != 0 {
					t.Fatalf("round %d: change %d: %+v", round, res.Seq, res)
				}
			}
		}
		seq += 30
	}
	close(stop)
	wg.Wait()
	if e.overlapped.Load() == 0 {
		t.Fatal("no group was built while a commit was in flight")
	}
	t.Logf("%d changes of a, %d of b, %d groups overlapped", seq, bSeq.Load(), e.overlapped.Load())
	checkPushed(t, e, a, seq)
	checkPushed(t, e, b, bSeq.Load())
	if got, want := logPos(t, e), seq+bSeq.Load(); got != want {
		t.Fatalf("log position %d, want %d (one per change)", got, want)
	}
	d := newDevice("check", time.Now, "wigan")
	d.syncAll(t, e)
	if got, want := len(d.recs), int(seq+bSeq.Load()); got != want {
		t.Fatalf("a new device pulled %d records, want %d", got, want)
	}
}

// TestOverlapFailedCommitRedoes: the commit of a push fails after the push
// behind it was built over its writes. The first push's caller gets the
// error; the second is built again from scratch on what is stored, where
// its seqs now follow nothing (refused: seq gap), and nothing of the
// first is visible. The device pushes both again and they apply.
func TestOverlapFailedCommitRedoes(t *testing.T) {
	kv := badgerKV(t, t.TempDir())
	e := openTest(t, Options{Store: kv, OverlapCommits: true})
	a := Caller{User: "a", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	blocker := Caller{User: "b", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	base := crdt.MakeTimestamp(time.Now().UnixMilli(), 0)

	// Hold the store so that the committer waits with the blocker's push
	// while a's two pushes queue behind it, to be drained as one group
	// (small first, then large, built behind it).
	hold, err := kv.Begin(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	blocked := e.preparePush(blocker, overlapChanges(blocker.Replica, 1, 1, base), false)
	queue(e, blocked)
	for kv.Waiting() == 0 { // the committer waits for the writer token
		time.Sleep(time.Millisecond)
	}
	small := e.preparePush(a, overlapChanges(a.Replica, 1, 2, base), false)
	large := e.preparePush(a, overlapChanges(a.Replica, 3, 32, base), false)
	queue(e, small) // in the queue's buffer once queue returns
	queue(e, large)
	var commits atomic.Int32
	boom := errors.New("injected write failure")
	kv.FailCommits(func() error {
		if commits.Add(1) == 2 { // the blocker's commit, then small's
			return boom
		}
		return nil
	})
	defer kv.FailCommits(nil)
	hold.Discard()
	<-blocked.done
	<-small.done
	<-large.done
	if blocked.err != nil || blocked.results[0].Status != api.ChangeApplied {
		t.Fatalf("blocker: %+v %v", blocked.results, blocked.err)
	}
	if !errors.Is(small.err, boom) {
		t.Fatalf("small push: %v, want the injected failure", small.err)
	}
	if large.err != nil {
		t.Fatal(large.err)
	}
	for _, res := range large.results {
		if res.Status != api.ChangeRefused || res.Code != api.CodeSeqGap || res.Expected != 1 {
			t.Fatalf("large push redone: change %d: %+v, want a seq gap expecting 1", res.Seq, res)
		}
	}
	if o, r := e.overlapped.Load(), e.redone.Load(); o < 2 || r != 1 {
		t.Fatalf("%d groups overlapped, %d redone; want 2 or more and 1", o, r)
	}
	hw, err := e.replicaHighWater(context.Background(), a.Replica)
	if err != nil || hw != 0 {
		t.Fatalf("a's high-water %d, %v after the failed commit, want 0", hw, err)
	}
	if got := logPos(t, e); got != 1 {
		t.Fatalf("log position %d, want 1 (the blocker's change only)", got)
	}
	for s := uint64(1); s <= 32; s++ {
		ref := api.RecordRef{Team: "wigan", Collection: "crash", ID: fmt.Sprintf("%s-%d", a.Replica, s)}
		if _, err := e.Record(context.Background(), a, ref); !errors.Is(err, ErrNotFound) {
			t.Fatalf("record of change %d after the failed commit: %v, want not found", s, err)
		}
	}
	res, err := e.Push(context.Background(), a, overlapChanges(a.Replica, 1, 32, base))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Status != api.ChangeApplied {
			t.Fatalf("pushed again: change %d: %+v", r.Seq, r)
		}
	}
	checkPushed(t, e, a, 32)
}

// TestOverlapOption: commits are serial unless OverlapCommits is set,
// and on a store that cannot overlap them even then.
func TestOverlapOption(t *testing.T) {
	if e := openTest(t, Options{Store: badgerKV(t, t.TempDir())}); e.overlap {
		t.Fatal("the engine overlaps commits without OverlapCommits")
	}
	if e := openTest(t, Options{Store: badgerKV(t, t.TempDir()), OverlapCommits: true}); !e.overlap {
		t.Fatal("OverlapCommits: the engine does not overlap commits on Badger")
	}
	if e := openTest(t, Options{Store: memory.New(memory.Options{}), OverlapCommits: true}); e.overlap {
		t.Fatal("the engine overlaps commits on the memory store")
	}
}

// TestOrderedHighWater: once the committer has taken a push from its
// queue, OrderedHighWater covers its seqs (and PreparedSync.Ordered is
// called) before it commits, without waiting for that commit; once it is
// answered, OrderedHighWater is the stored high-water again: the push's
// last seq if it applied, what was stored before if its commit failed.
func TestOrderedHighWater(t *testing.T) {
	kv := badgerKV(t, t.TempDir())
	e := openTest(t, Options{Store: kv})
	a := Caller{User: "a", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	base := crdt.MakeTimestamp(time.Now().UnixMilli(), 0)
	ctx := context.Background()
	for _, fail := range []bool{false, true} {
		hw, err := e.replicaHighWater(ctx, a.Replica)
		if err != nil {
			t.Fatal(err)
		}
		gate := make(chan struct{})
		kv.FailCommits(func() error {
			<-gate // the push is taken, its commit not yet issued
			if fail {
				return errors.New("injected write failure")
			}
			return nil
		})
		p := e.PrepareSync(a, &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: a.Replica, PushOnly: true,
			Changes: overlapChanges(a.Replica, hw+1, hw+3, base)})
		ordered := make(chan struct{})
		p.Ordered = func() { close(ordered) }
		done := make(chan error, 1)
		go func() { _, err := e.SyncPrepared(ctx, p); done <- err }()
		<-ordered
		if o, err := e.OrderedHighWater(ctx, a.Replica); err != nil || o != hw+3 {
			t.Fatalf("fail=%v: ordered high-water %d, %v while the push is in the committer; want %d", fail, o, err, hw+3)
		}
		close(gate)
		err = <-done
		kv.FailCommits(nil)
		want := hw + 3
		if fail {
			want = hw
			if err == nil {
				t.Fatal("a failed commit was not reported")
			}
		} else if err != nil {
			t.Fatal(err)
		}
		if o, err := e.OrderedHighWater(ctx, a.Replica); err != nil || o != want {
			t.Fatalf("fail=%v: ordered high-water %d, %v once answered; want %d", fail, o, err, want)
		}
	}
}
