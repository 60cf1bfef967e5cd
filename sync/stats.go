package sync

import (
	"context"
	"fmt"

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
	// refreshed by Badger about once a minute); 0 on a backend that does
	// not report them (see sizer).
	LSMBytes, VlogBytes int64
}

// Stats counts the open conflicts of each of teams and the quarantine, by
// key-only iteration over their indexes (no values are read), and reports
// the store's size.
func (e *Engine) Stats(ctx context.Context, teams []string) (Stats, error) {
	st := Stats{Conflicts: make(map[string]int, len(teams))}
	count := func(txn store.Tx, prefix []byte) (int, error) {
		it := txn.Iterate(store.IterOptions{Prefix: prefix, KeysOnly: true})
		defer it.Close()
		n := 0
		for it.Seek(prefix); it.Valid(); it.Next() {
			if n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return n, err
				}
			}
			n++
		}
		return n, it.Err()
	}
	err := e.view(ctx, func(txn store.Tx) error {
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
	if s, ok := e.kv.(sizer); ok {
		st.LSMBytes, st.VlogBytes = s.Sizes()
	}
	return st, nil
}

// sizer is the optional size report of a store backend (store/badger's
// LSM and value-log bytes).
type sizer interface{ Sizes() (lsm, vlog int64) }
