package sync

import (
	"context"
	"fmt"
	gosync "sync"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// BackupMeta describes the records snapshot a BackupTxn reads.
type BackupMeta struct {
	ServerID crdt.ReplicaID
	Epoch    store.Epoch
	LogPos   uint64 // last log position in the snapshot
	Layout   uint32 // store.CurrentVersion
	// Size is the backend's estimate of the store's bytes on disk (for
	// Badger: LSM and value log), for progress; 0 when it has none.
	Size int64
}

// BackupTxn opens a read-only transaction over the records store for an
// online backup and reads the snapshot's meta in it. Pushes go on while it
// is open; the caller must call release (which discards the transaction)
// when done. The log position is read inside the snapshot, so it is
// exactly the last change the transaction sees (a snapshot holds a prefix
// of the commits, on every backend). While a backup is open, this
// engine's erasure scrubs wait (see scrub.go): a scrub drops keys the
// snapshot must still read.
func (e *Engine) BackupTxn(ctx context.Context) (txn store.Txn, meta BackupMeta, release func(), err error) {
	if err := e.enter(); err != nil {
		return nil, BackupMeta{}, nil, err
	}
	defer e.inflight.Done()
	e.scrubMu.RLock() // no scrub is dropping keys while the snapshot opens
	e.backupMu.Lock()
	e.backups++
	e.backupMu.Unlock()
	txn, err = e.kv.Begin(ctx, false)
	e.scrubMu.RUnlock()
	if err != nil {
		e.backupMu.Lock()
		e.backups--
		e.backupMu.Unlock()
		return nil, BackupMeta{}, nil, fmt.Errorf("sync: backup: %w", err)
	}
	var once gosync.Once
	release = func() {
		once.Do(func() {
			txn.Discard()
			e.backupMu.Lock()
			e.backups--
			kick := e.backups == 0 && len(e.pendingScrub) > 0
			e.backupMu.Unlock()
			if kick {
				select {
				case e.scrubKick <- struct{}{}:
				default:
				}
			}
		})
	}
	pos, err := store.GetU64Key(txn, store.KeyLogPos)
	if err != nil {
		release()
		return nil, BackupMeta{}, nil, fmt.Errorf("sync: backup: %w", err)
	}
	var size int64
	if s, ok := e.kv.(interface{ Size() int64 }); ok {
		size = s.Size()
	}
	return txn, BackupMeta{ServerID: e.server, Epoch: e.epoch, LogPos: pos, Layout: store.CurrentVersion, Size: size}, release, nil
}

// Epoch returns the store's current epoch ID.
func (e *Engine) Epoch() store.Epoch { return e.epoch }
