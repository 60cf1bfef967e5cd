package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/doorstep-health/doorstep/crdt"
)

// CurrentVersion is the version of the key layout this package writes.
// Version 2 stores record states (r/ values) in crdt state encoding 2 (a
// causal context per record) instead of encoding 1 (removed-ID lists per
// field); see crdt.StateVersion. Version 3 writes the ops of new log
// entries packed (logops.go) and reads both forms.
const CurrentVersion uint32 = 3

// ErrNewerVersion reports a store written by a newer Doorstep.
var ErrNewerVersion = errors.New("store: written by a newer version")

// Migration upgrades a store from one layout version to the next inside
// one write transaction.
type Migration func(txn Tx) error

// migrations[v] upgrades a store at version v to v+1; a layout change adds
// one here and bumps CurrentVersion. bulkMigrations[v], if set, runs
// first, in as many transactions as it needs: it must be safe to run again
// after a crash (the version is stamped only once both have finished).
var (
	migrations = map[uint32]Migration{
		1: func(Tx) error { return nil }, // the record states: bulkMigrations[1]
		// Log entries written before layout 3 keep their ops whole ("o"):
		// every reader takes both forms, so nothing is rewritten. The
		// stamp keeps an older build, which would read a packed entry as
		// one without ops, from opening the store.
		2: func(Tx) error { return nil },
	}
	bulkMigrations = map[uint32]func(ctx context.Context, kv KV) error{
		1: rewriteRecordStates,
	}
)

// rewriteRecordStates re-encodes every record state in the current crdt
// state encoding, some hundreds per transaction. Both encodings decode, so
// a store half rewritten (a crash mid-way) reads correctly and the
// rewrite resumes on the next open.
func rewriteRecordStates(ctx context.Context, kv KV) error {
	// Ops held in the quarantine that may be reapplied: a layout 1 state
	// does not say it skipped them (crdt.UnmarshalRecordHeld).
	held := map[string][]crdt.OpID{}
	refs := map[string]crdt.Op{} // a held op of each record, for its names
	err := kv.View(ctx, func(txn Tx) error {
		it := txn.Iterate(IterOptions{Prefix: prefixQuarantine})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var q QuarantineEntry
			v, err := it.Value()
			if err == nil {
				err = Decode(v, &q)
			}
			if err != nil {
				return fmt.Errorf("quarantine entry %q: %w", it.Key(), err)
			}
			if q.Reapplicable {
				k := string(RecordKey(q.Op.Team, q.Op.Collection, q.Op.Record))
				held[k] = append(held[k], q.Op.ID)
				refs[k] = q.Op
			}
		}
		return it.Err()
	})
	if err != nil {
		return err
	}
	prefix := prefixRecord
	seek := prefix
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var next []byte
		err := kv.Update(ctx, func(txn Tx) error {
			type pair struct{ k, v []byte }
			var out []pair
			it := txn.Iterate(IterOptions{Prefix: prefix, Batch: 500})
			n := 0
			for it.Seek(seek); it.Valid(); it.Next() {
				if n == 500 {
					next = bytes.Clone(it.Key())
					break
				}
				n++
				k := bytes.Clone(it.Key())
				v, err := it.Value()
				if err != nil {
					it.Close()
					return err
				}
				ms, b, err := DecodeRecordValue(v)
				if err != nil {
					it.Close()
					return fmt.Errorf("record %q: %w", k, err)
				}
				rec, err := crdt.UnmarshalRecordHeld(b, held[string(k)])
				if err != nil {
					it.Close()
					return fmt.Errorf("record %q: %w", k, err)
				}
				nb, err := crdt.MarshalRecord(rec)
				if err != nil {
					it.Close()
					return err
				}
				out = append(out, pair{k, EncodeRecordValue(ms, nb)})
				delete(held, string(k))
			}
			err := it.Err()
			it.Close()
			if err != nil {
				return err
			}
			for _, x := range out {
				if err := txn.Set(x.k, x.v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if next == nil {
			break
		}
		seek = next
	}
	// Held ops of records no op has created yet: a state that says so,
	// owned by the op's team, so that later ops of the same device do not
	// pass them silently.
	return kv.Update(ctx, func(txn Tx) error {
		for k, ids := range held {
			op := refs[k]
			if _, err := txn.Get(TeamIndexKey(op.Collection, op.Record)); err == nil {
				continue // owned under another team: the reapply is refused anyway
			} else if !errors.Is(err, ErrNotFound) {
				return err
			}
			rec := crdt.NewRecord(op.Team, op.Collection, op.Record)
			for _, id := range ids {
				rec.Skip(id)
			}
			b, err := crdt.MarshalRecord(rec)
			if err != nil {
				return err
			}
			if err := txn.Set([]byte(k), EncodeRecordValue(0, b)); err != nil {
				return err
			}
			if err := txn.Set(TeamIndexKey(op.Collection, op.Record), []byte(op.Team)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Migrate checks the layout version of the store in kv and upgrades it
// step by step to CurrentVersion, each step in its own transaction(s); a
// new store is stamped with CurrentVersion. The engine runs it on open,
// whatever the backend. On a shared backend several processes may run it
// at once: every step is idempotent and the version is read and written in
// one serialized write transaction per step.
func Migrate(ctx context.Context, kv KV, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	return migrate(ctx, kv, logger)
}

// migrate stamps a new store with CurrentVersion, or upgrades an older one
// step by step, each step in its own transaction.
func migrate(ctx context.Context, kv KV, logger *slog.Logger) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var v uint32
		var found bool
		err := kv.View(ctx, func(txn Tx) error {
			b, err := txn.Get(KeyVersion)
			if errors.Is(err, ErrNotFound) {
				return nil
			} else if err != nil {
				return err
			}
			if len(b) != 4 {
				return fmt.Errorf("%w: version", ErrBadValue)
			}
			v, found = uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]), true
			return nil
		})
		if err != nil {
			return fmt.Errorf("store: read version: %w", err)
		}
		switch {
		case !found:
			// Stamped only if still unstamped: on a shared store another
			// process may have stamped (or migrated) it meanwhile.
			err := kv.Update(ctx, func(txn Tx) error {
				if _, err := txn.Get(KeyVersion); err == nil {
					return nil
				} else if !errors.Is(err, ErrNotFound) {
					return err
				}
				return txn.Set(KeyVersion, versionBytes(CurrentVersion))
			})
			if err != nil {
				return fmt.Errorf("store: stamp version: %w", err)
			}
			continue
		case v == CurrentVersion:
			return nil
		case v > CurrentVersion:
			return fmt.Errorf("%w: layout %d, this build reads up to %d", ErrNewerVersion, v, CurrentVersion)
		}
		m, ok := migrations[v]
		if !ok {
			return fmt.Errorf("store: no migration from layout %d", v)
		}
		logger.Info("migrating store", "from", v, "to", v+1)
		if bm, ok := bulkMigrations[v]; ok {
			if err := bm(ctx, kv); err != nil {
				return fmt.Errorf("store: migrate %d to %d: %w", v, v+1, err)
			}
		}
		if err := kv.Update(ctx, func(txn Tx) error {
			// Another process may have finished this step meanwhile.
			if b, err := txn.Get(KeyVersion); err != nil {
				return err
			} else if !bytes.Equal(b, versionBytes(v)) {
				return nil
			}
			if err := m(txn); err != nil {
				return err
			}
			return txn.Set(KeyVersion, versionBytes(v+1))
		}); err != nil {
			return fmt.Errorf("store: migrate %d to %d: %w", v, v+1, err)
		}
	}
}

func versionBytes(v uint32) []byte {
	return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

// GetU64Key reads a u64 value, returning 0 when the key is absent.
func GetU64Key(txn Tx, key []byte) (uint64, error) {
	b, err := txn.Get(key)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	return GetU64(b)
}
