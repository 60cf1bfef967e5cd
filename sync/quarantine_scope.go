package sync

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/doorstep-health/doorstep/store"
)

// QuarantineScanLimit bounds the entries one QuarantinedIn call reads,
// matching or not; the caller pages on with the returned cursor.
const QuarantineScanLimit = 20_000

// QuarantinedIn lists quarantined ops of the given teams (an admin's
// teams; nil means every team), oldest first, after the entry ID after and
// at most limit of them (0 means DefaultPullLimit). It returns the cursor
// for the next page (the last entry ID read, matching or not) and whether
// there are entries past it.
func (e *Engine) QuarantinedIn(ctx context.Context, teams []string, after uint64, limit int) (ops []QuarantinedOp, next uint64, more bool, err error) {
	if limit <= 0 {
		limit = DefaultPullLimit
	}
	var out []QuarantinedOp
	next = after
	err = e.view(ctx, func(txn store.Tx) error {
		prefix := store.QuarantinePrefix()
		it := txn.Iterate(store.IterOptions{Prefix: prefix, Batch: 100})
		defer it.Close()
		scanned := 0
		for it.Seek(store.QuarantineKey(after + 1)); it.Valid() && len(out) < limit && scanned < QuarantineScanLimit; it.Next() {
			scanned++
			id, err := store.QuarantineID(it.Key())
			if err != nil {
				return err
			}
			next = id
			var q store.QuarantineEntry
			if err := itValue(it, func(v []byte) error { return store.Decode(v, &q) }); err != nil {
				return err
			}
			if teams == nil || slices.Contains(teams, q.Op.Team) {
				out = append(out, quarantinedOp(id, &q, e.bounds.QuarantineTTL))
			}
		}
		more = it.Valid()
		return it.Err()
	})
	if err != nil {
		return nil, after, false, fmt.Errorf("quarantine: %w", err)
	}
	return out, next, more, nil
}

// QuarantinedByID returns one quarantined op, or an error wrapping
// ErrNotFound.
func (e *Engine) QuarantinedByID(ctx context.Context, id uint64) (QuarantinedOp, error) {
	var out QuarantinedOp
	err := e.view(ctx, func(txn store.Tx) error {
		val, err := txn.Get(store.QuarantineKey(id))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: quarantine entry %d", ErrNotFound, id)
		} else if err != nil {
			return err
		}
		var q store.QuarantineEntry
		if err := store.Decode(val, &q); err != nil {
			return err
		}
		out = quarantinedOp(id, &q, e.bounds.QuarantineTTL)
		return nil
	})
	if err != nil {
		return QuarantinedOp{}, fmt.Errorf("quarantine: %w", err)
	}
	return out, nil
}
