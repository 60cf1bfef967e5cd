package sync

import (
	"fmt"
	gosync "sync"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// BackupMeta describes the records snapshot a BackupTxn reads.
type BackupMeta struct {
	ServerID crdt.ReplicaID
	Epoch    store.Epoch
	LogPos   uint64 // last log position in the snapshot
	Layout   uint32 // store.CurrentVersion
	// Size is Badger's estimate of the store's bytes on disk (LSM and
	// value log), for progress.
	Size int64
}

// BackupTxn opens a read-only transaction over the records store for an
// online backup and reads the snapshot's meta in it. Pushes go on while it
// is open; the caller must call release (which discards the transaction)
// when done. Only the committer writes, so the log position read here is
// exactly the last change the transaction sees. While a backup is open,
// erasure scrubs wait (see scrub.go): a scrub drops keys the snapshot must
// still read.
func (e *Engine) BackupTxn() (txn *badger.Txn, meta BackupMeta, release func(), err error) {
	if err := e.enter(); err != nil {
		return nil, BackupMeta{}, nil, err
	}
	defer e.inflight.Done()
	e.scrubMu.RLock() // no scrub is dropping keys while the snapshot opens
	e.backupMu.Lock()
	e.backups++
	e.backupMu.Unlock()
	txn = e.db.NewTransaction(false)
	e.scrubMu.RUnlock()
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
	lsm, vlog := e.db.Size()
	return txn, BackupMeta{ServerID: e.server, Epoch: e.epoch, LogPos: pos, Layout: store.CurrentVersion, Size: lsm + vlog}, release, nil
}

// Epoch returns the store's current epoch ID.
func (e *Engine) Epoch() store.Epoch { return e.epoch }
