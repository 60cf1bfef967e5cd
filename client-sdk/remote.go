package client

import (
	"context"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/crdt"
)

// ApplyRemote merges ops made by other replicas and received other than by
// Sync (tools, tests, a peer). They are applied like pulled ops, are not
// added to the outbox and do not move the cursor.
func (r *Replica) ApplyRemote(ctx context.Context, ops []crdt.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.closed() {
		return ErrClosed
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed() {
		return ErrClosed
	}
	touched := map[Ref]*crdt.Record{}
	err := r.db.Update(func(txn *badger.Txn) error {
		for i := range ops {
			op := &ops[i]
			ref := Ref{Team: op.Team, Collection: op.Collection, ID: op.Record}
			rec, ok := touched[ref]
			if !ok {
				var err error
				if rec, err = loadRecord(txn, ref); err != nil {
					return err
				}
				if rec == nil {
					rec = crdt.NewRecord(ref.Team, ref.Collection, ref.ID)
				}
				touched[ref] = rec
			}
			if err := rec.Apply(op); err != nil {
				return fmt.Errorf("op %d: %w", i, err)
			}
			if op.ID.Time > 0 {
				_ = r.clock.Update(op.ID.Time)
			}
		}
		for _, rec := range touched {
			if err := putRecord(txn, rec); err != nil {
				return err
			}
		}
		return txn.Set(keyClock, u64Bytes(uint64(r.clock.Last())))
	})
	if err != nil {
		return fmt.Errorf("client: apply remote ops: %w", err)
	}
	refs := make([]Ref, 0, len(touched))
	for ref := range touched {
		refs = append(refs, ref)
	}
	r.notify(refs)
	return nil
}
