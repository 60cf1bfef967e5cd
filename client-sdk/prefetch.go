package client

// Preparing the next push while the server commits this one. A long push
// takes many round trips, and between them the device used to seal its
// next changes (one durable transaction or more), read and decode them,
// all while the server sat idle; and the server committed while the device
// sat idle. prefetch runs the device's part of the next round during the
// current request instead. Nothing goes on the wire early and the protocol
// is unchanged: the prefetched changes are used only if, after the reply
// is stored, they are exactly what loadChanges would return, and thrown
// away otherwise.

import (
	"github.com/dgraph-io/badger/v4"
)

// prefetched is the next round's changes, sealed and loaded while a
// request was in flight.
type prefetched struct {
	from    uint64 // the first seq after the request in flight
	changes []pushChange
	err     error
	done    chan struct{}
}

// prefetch starts sealing and loading the changes after sent (the changes
// of the request about to go) in a goroutine; wait for it with
// prefetched.wait before touching the outbox again. It returns nil when
// there is nothing to overlap (no changes are being sent).
func (r *Replica) prefetch(sent []pushChange, maxChanges int) *prefetched {
	if len(sent) == 0 {
		return nil
	}
	p := &prefetched{from: sent[len(sent)-1].Seq + 1, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		if p.err = r.sealFrom(p.from); p.err != nil {
			return
		}
		p.changes, p.err = r.loadChanges(p.from, maxChanges)
	}()
	return p
}

// wait waits for the prefetch to finish; p may be nil.
func (p *prefetched) wait() {
	if p != nil {
		<-p.done
	}
}

// usable returns the prefetched changes if they are what the next round
// would load: the prefetch succeeded, found changes, the reply to the
// request in flight acknowledged every change it sent and rewrote no
// outbox entry, and the outbox's first sealed change is the first
// prefetched one. The caller waited for p.
func (r *Replica) usable(p *prefetched, sent []pushChange, out *replyWrites, maxChanges int) ([]pushChange, bool) {
	if p == nil || p.err != nil || len(p.changes) == 0 || out == nil ||
		len(out.Acked) != len(sent) || len(out.SetAside) > 0 || out.Gap != 0 || out.Refused != nil ||
		len(out.Outbox) > 0 || out.DroppedOps > 0 || p.changes[0].Seq != p.from {
		return nil, false
	}
	first, err := r.firstSealed()
	if err != nil || first != p.from {
		return nil, false
	}
	return p.changes[:min(len(p.changes), maxChanges)], true
}

// firstSealed returns the lowest sealed seq in the outbox, 0 if none.
func (r *Replica) firstSealed() (uint64, error) {
	var seq uint64
	err := r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefChange})
		defer it.Close()
		it.Rewind()
		if it.Valid() {
			seq = u64(it.Item().Key()[len(prefChange):])
		}
		return nil
	})
	return seq, err
}
