package sync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// Overlapped commits: on a store whose write transactions implement
// store.Overlapper (Badger), the committer builds a group of pushes in
// the transaction opened to follow the commit in flight, while that
// commit is written and fsynced, instead of after it. See the package
// doc, "Overlapped commits", for the rules.

// inflight is a group whose commit was issued and may not be durable yet.
// next is the write transaction opened to follow it (nil once a group is
// built in it). The store's callback sets err and closes done, having
// answered the group's callers if the commit succeeded.
type inflight struct {
	reqs []*request
	next store.Txn
	done chan struct{}
	err  error
}

// overlapSafe reports whether a group may be built while the commit
// before it is in flight, or be followed by one: pushes and quarantine
// sweeps, which change nothing of the engine's past their transaction.
// An erase scrubs after its commit (DropPrefix, which needs the writer
// token the follower holds), and restates, resolves, re-applies and
// dismissals stay on the serial path, which they always took.
func overlapSafe(reqs []*request) bool {
	for _, r := range reqs {
		if r.kind != reqPush && r.kind != reqExpire {
			return false
		}
	}
	return true
}

// commitNext commits a group from the committer loop and reports whether
// its commit is still in flight (its callers are then answered when it is
// durable, or by land if it fails). A group that can overlap is built in
// the transaction following the commit in flight, if there is one, and
// its own commit is issued with a next transaction opened to follow it;
// any other group waits for the commit in flight and commits serially
// (commitGroup, with its splitting).
func (e *Engine) commitNext(reqs []*request) bool {
	w := writeWeight(reqs)
	if !e.overlap || !overlapSafe(reqs) || e.splitAt > 0 && w >= e.splitAt {
		e.land()
		e.commitGroup(reqs)
		return false
	}
	var txn store.Txn
	following := e.fly != nil && e.fly.next != nil
	if following {
		txn, e.fly.next = e.fly.next, nil
	} else {
		e.land()
		var err error
		if txn, err = e.kv.Begin(context.Background(), true); err != nil {
			e.commitFailed(reqs, w, err)
			return false
		}
	}
	err := e.buildGroup(txn, reqs)
	if following {
		e.overlapped.Add(1)
		if !e.land() {
			// Built over writes that never landed: again, from scratch,
			// on a snapshot of what did.
			txn.Discard()
			e.redone.Add(1)
			return e.commitNext(reqs)
		}
	}
	if err != nil {
		txn.Discard()
		e.commitFailed(reqs, w, err)
		return false
	}
	// No commit is in flight now.
	if ov, ok := txn.(store.Overlapper); ok {
		f := &inflight{reqs: reqs, done: make(chan struct{})}
		next, err := ov.CommitOverlapped(func(err error) {
			f.err = err
			if err == nil {
				for _, r := range f.reqs {
					e.unorder(r)
					close(r.done)
				}
			}
			close(f.done)
		})
		if err == nil {
			f.next, e.fly = next, f
			return true
		}
		if !errors.Is(err, store.ErrUnsupported) {
			e.commitFailed(reqs, w, err)
			return false
		}
	}
	err = e.commitTxn(txn)
	txn.Discard()
	e.commitFailed(reqs, w, err)
	return false
}

// land waits for the commit in flight, if any, and discards the
// transaction opened to follow it unless a group was built in it. It
// answers the callers of a commit that failed (those of one that
// succeeded were answered when it was durable) and reports whether it
// succeeded (true with none in flight).
func (e *Engine) land() bool {
	f := e.fly
	if f == nil {
		return true
	}
	e.fly = nil
	if f.next != nil {
		f.next.Discard()
		f.next = nil
	}
	select {
	case <-f.done:
	default:
		start := time.Now()
		<-f.done
		e.commitWait.Add(int64(time.Since(start)))
	}
	if f.err == nil {
		return true
	}
	if errors.Is(f.err, store.ErrTxnTooBig) {
		// The next attempt splits it (commitGroup).
		if w := writeWeight(f.reqs); e.splitAt == 0 || w < e.splitAt {
			e.splitAt = w
		}
	}
	e.log.Error("commit failed", "requests", len(f.reqs), "err", f.err)
	for _, r := range f.reqs {
		r.results, r.rec, r.err = nil, nil, fmt.Errorf("commit: %w", f.err)
		e.unorder(r)
		close(r.done)
	}
	return false
}

// Ordered pushes. A device pipelining its pushes has the server hold its
// next one until the one before is decided (package server, pipeline.go).
// Decided used to mean durable, so the next push reached the queue only
// after the commit before it, and there was nothing to overlap. It is
// enough that the committer has taken the push before from its queue:
// whatever is queued later is applied after it (a later group, built in
// the transaction that follows its commit or after that commit), and
// reads its writes. If that commit then fails, the later push is built
// again on what is stored, where its seqs follow nothing: it is refused
// with seq_gap, as when the push before never arrived.

// order records, for every push of a group just taken from the queue, its
// last seq as ordered (OrderedHighWater), and calls its ordered callback.
func (e *Engine) order(group []*request) {
	e.orderedMu.Lock()
	for _, r := range group {
		if r.kind != reqPush || len(r.changes) == 0 {
			continue
		}
		if e.ordered == nil {
			e.ordered = map[crdt.ReplicaID]uint64{}
		}
		if s := r.changes[len(r.changes)-1].Seq; s > e.ordered[r.caller.Replica] {
			e.ordered[r.caller.Replica] = s
		}
	}
	e.orderedMu.Unlock()
	for _, r := range group {
		if r.ordered != nil {
			r.ordered()
		}
	}
}

// unorder forgets r's seqs as ordered once r is answered: applied, they
// are in the stored high-water; failed, they are not ordered any more.
func (e *Engine) unorder(r *request) {
	if r.kind != reqPush || len(r.changes) == 0 {
		return
	}
	e.orderedMu.Lock()
	if s := r.changes[len(r.changes)-1].Seq; e.ordered[r.caller.Replica] == s {
		delete(e.ordered, r.caller.Replica)
	}
	e.orderedMu.Unlock()
}

// OrderedHighWater is, while the committer holds a push of replica r
// (taken from its queue, not yet answered), the last seq of that push:
// a push of r queued from now on is applied after every seq up to it
// (see "Ordered pushes" above), which is what the server needs to let a
// pipelined push through, and it is known without reading the store,
// whose read would wait for the commit in flight. Otherwise it is
// HighWater. It is not a promise that those seqs will apply.
func (e *Engine) OrderedHighWater(ctx context.Context, r crdt.ReplicaID) (uint64, error) {
	e.orderedMu.Lock()
	o, ok := e.ordered[r]
	e.orderedMu.Unlock()
	if ok {
		return o, nil
	}
	return e.replicaHighWater(ctx, r)
}
