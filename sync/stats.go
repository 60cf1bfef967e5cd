package sync

import (
	"context"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/store"
)

// Stats are aggregate gauges of the engine's store, for metrics: counts and
// sizes only, never a record, user or device.
type Stats struct {
	// Conflicts is the number of records with an open conflict, per team
	// asked for.
	Conflicts map[string]int
	// Quarantined is the number of ops in the quarantine.
	Quarantined int
	// LSMBytes and VlogBytes are Badger's on-disk sizes (its own estimate,
	// refreshed by Badger about once a minute).
	LSMBytes, VlogBytes int64
}

// Stats counts the open conflicts of each of teams and the quarantine, by
// key-only iteration over their indexes (no values are read), and reports
// the store's size.
func (e *Engine) Stats(ctx context.Context, teams []string) (Stats, error) {
	st := Stats{Conflicts: make(map[string]int, len(teams))}
	count := func(txn *badger.Txn, prefix []byte) (int, error) {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		n := 0
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			if n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return n, err
				}
			}
			n++
		}
		return n, nil
	}
	err := e.view(ctx, func(txn *badger.Txn) error {
		for _, team := range teams {
			n, err := count(txn, store.ConflictPrefix(team))
			if err != nil {
				return err
			}
			st.Conflicts[team] = n
		}
		n, err := count(txn, store.QuarantinePrefix())
		st.Quarantined = n
		return err
	})
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	st.LSMBytes, st.VlogBytes = e.db.Size()
	return st, nil
}
