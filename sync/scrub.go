package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/doorstep-health/doorstep/store"
)

// Erasure that reaches the disk (the embedded store; scrubShared below is
// the shared one's). Deleting or rewriting a key in Badger only
// adds a newer version: the old value stays in the memtable's write-ahead
// log (*.mem) and in older tables (*.sst) until compaction happens to
// rewrite them, which may be never. So once an erasure has committed, the
// committer (the only writer, so no push races it) scrubs the keys it
// touched (record states, log entries, quarantined ops):
//
//  1. copies the current value of each rewritten key (a log entry that kept
//     other records' ops) to a hold key s/<key>, fsynced;
//  2. calls the store's DropPrefix (Badger's) with each touched key as its own prefix
//     (keys are prefix-free, see package store): Badger flushes every
//     memtable to level 0 without them, deletes the flushed write-ahead
//     logs and compacts every table holding them without any version;
//  3. writes the held values back and deletes the holds, fsynced (a crash
//     between 2 and 3 is repaired by store.RecoverScrub on the next open).
//
// Pulls hold scrubMu shared, so none runs while a log entry is briefly
// absent. A backup's snapshot must keep reading every key, so while a
// backup is open the scrub waits (pendingScrub) and runs when the last
// backup ends. Otherwise it runs before the erasure is answered: when
// POST /v1/admin/erasures returns with "scrubbed": true, no version of
// the erased values is in the data directory. Pushes queue behind it
// meanwhile (measured in docs/benchmarks.md). Values of 1 MiB or more
// (Badger's value threshold) would live in Badger's value log, which
// DropPrefix does not rewrite: store/badger keeps every value of 512 KiB
// or more in chunks in its tables instead, and its DropPrefix drops the
// chunks of the dropped keys (sync/scrub_bigvalue_test.go).

// scrubSentinel is written and dropped by every scrub: DropPrefix does
// nothing unless some prefix has a live key, and the sentinel guarantees
// the memtable flush even when every touched key is deleted already.
var scrubSentinel = []byte("m/scrub")

// scrubErased scrubs the keys of one committed erasure, or queues them
// while a backup is open.
func (e *Engine) scrubErased(r *request) {
	e.scrubMu.Lock()
	defer e.scrubMu.Unlock()
	e.backupMu.Lock()
	if e.backups > 0 {
		e.pendingScrub = append(e.pendingScrub, r.scrubKeys...)
		e.backupMu.Unlock()
		r.report.ScrubPending = true
		e.log.Info("erasure scrub waits for the running backup")
		return
	}
	e.backupMu.Unlock()
	if err := e.scrub(r.scrubKeys); err != nil {
		r.report.ScrubError = err.Error()
		return
	}
	r.report.Scrubbed = true
}

// runPendingScrub runs the scrubs that waited for a backup.
func (e *Engine) runPendingScrub() {
	e.scrubMu.Lock()
	defer e.scrubMu.Unlock()
	e.backupMu.Lock()
	keys := e.pendingScrub
	if e.backups > 0 || len(keys) == 0 {
		e.backupMu.Unlock()
		return
	}
	e.pendingScrub = nil
	e.backupMu.Unlock()
	_ = e.scrub(keys)
}

func (e *Engine) scrub(keys [][]byte) error {
	start := time.Now()
	keys = slices.Clone(keys)
	slices.SortFunc(keys, bytes.Compare)
	keys = slices.CompactFunc(keys, bytes.Equal)
	err := e.scrubKeys(keys)
	if err != nil {
		e.log.Error("erasure done but not scrubbed from the data files", "keys", len(keys), "err", err)
		return err
	}
	e.log.Info("erasure scrubbed from the data files", "keys", len(keys), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (e *Engine) scrubKeys(keys [][]byte) error {
	ctx := context.Background() // the committer's; bounded by the keys
	if e.shared {
		return e.scrubShared(ctx, keys)
	}
	keep := map[string][]byte{}
	err := e.kv.Update(ctx, func(txn store.Tx) error {
		for _, k := range keys {
			v, err := txn.Get(k)
			if errors.Is(err, store.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			keep[string(k)] = v
			if err := txn.Set(store.ScrubHoldKey(k), v); err != nil {
				return err
			}
		}
		return txn.Set(scrubSentinel, []byte{1})
	})
	if err != nil {
		return fmt.Errorf("scrub: hold: %w", err)
	}
	if err := e.kv.DropPrefix(ctx, append(keys, scrubSentinel)...); err != nil {
		return fmt.Errorf("scrub: drop: %w", err)
	}
	err = e.kv.Update(ctx, func(txn store.Tx) error {
		for k, v := range keep {
			if err := txn.Set([]byte(k), v); err != nil {
				return err
			}
			if err := txn.Delete(store.ScrubHoldKey([]byte(k))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scrub: write back: %w", err)
	}
	return nil
}

// scrubShared is the scrub of a shared store (several server processes):
// there the hold, drop and write-back would leave a rewritten log entry
// missing for a moment to the pulls of the other processes, which no lock
// of this one covers. So only the keys the erasure deleted are dropped
// (DropPrefix of a key that is gone removes nothing live: keys are
// prefix-free, and erased records, log positions and quarantine IDs are
// never written again), with the scrub sentinel so that the call is never
// empty; reclaiming the older versions of what the erasure deleted or
// rewrote is the backend's DropPrefix (store/postgres vacuums the table,
// which removes the dead row versions of both; see its package doc for
// what stays on disk even then).
func (e *Engine) scrubShared(ctx context.Context, keys [][]byte) error {
	var gone [][]byte
	err := e.kv.View(ctx, func(txn store.Tx) error {
		for _, k := range keys {
			if _, err := txn.Get(k); errors.Is(err, store.ErrNotFound) {
				gone = append(gone, k)
			} else if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scrub: %w", err)
	}
	if err := e.kv.DropPrefix(ctx, append(gone, scrubSentinel)...); err != nil {
		return fmt.Errorf("scrub: drop: %w", err)
	}
	return nil
}
