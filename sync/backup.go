package sync

import (
	"fmt"

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
// is open; the caller must Discard it when done. Only the committer writes,
// so the log position read here is exactly the last change the
// transaction sees.
func (e *Engine) BackupTxn() (*badger.Txn, BackupMeta, error) {
	if err := e.enter(); err != nil {
		return nil, BackupMeta{}, err
	}
	defer e.inflight.Done()
	txn := e.db.NewTransaction(false)
	pos, err := store.GetU64Key(txn, store.KeyLogPos)
	if err != nil {
		txn.Discard()
		return nil, BackupMeta{}, fmt.Errorf("sync: backup: %w", err)
	}
	lsm, vlog := e.db.Size()
	return txn, BackupMeta{ServerID: e.server, Epoch: e.epoch, LogPos: pos, Layout: store.CurrentVersion, Size: lsm + vlog}, nil
}

// Epoch returns the store's current epoch ID.
func (e *Engine) Epoch() store.Epoch { return e.epoch }
