package auth

import (
	"fmt"
	"time"

	"github.com/doorstep-health/doorstep/store"

	badger "github.com/dgraph-io/badger/v4"
)

// StoreLayout is the version of the auth store's key layout, recorded in
// backups so a restore can refuse one it does not understand. Layout 2 added
// the userdev/ index and the audit trail; a layout 1 store (or backup) is
// migrated at Open.
const StoreLayout uint32 = layoutVersion

// BackupTxn opens a read-only transaction over the auth store for an online
// backup: everything it sees is as of one read timestamp. The caller must
// Discard it. (Until the backup writer takes a store.Tx, it is the Badger
// transaction of a store opened with Open.)
func (s *Service) BackupTxn() (*badger.Txn, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	k, ok := s.kv.(*badgerKV)
	if !ok {
		return nil, fmt.Errorf("auth backup: %w", store.ErrUnsupported)
	}
	return k.db.NewTransaction(false), nil
}

// BadgerOptions returns the Badger options of the auth store in dir,
// encrypted at rest with key when key is set (see Config.EncryptionKey),
// for Open and for tools such as restore that load the directory directly.
func BadgerOptions(dir string, key []byte) badger.Options {
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(nil).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithBaseTableSize(2 << 20).
		WithValueLogFileSize(16 << 20).
		WithValueThreshold(64 << 10).
		WithBlockCacheSize(4 << 20).
		WithIndexCacheSize(2 << 20).
		WithNumCompactors(2)
	if len(key) > 0 {
		opts = opts.WithEncryptionKey(key).WithEncryptionKeyRotationDuration(7 * 24 * time.Hour)
	}
	return opts
}
