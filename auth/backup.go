package auth

import (
	"bytes"
	"context"
	"fmt"

	"github.com/doorstep-health/doorstep/store"
)

// StoreLayout is the version of the auth store's key layout, recorded in
// backups so a restore can refuse one it does not understand. Layout 2 added
// the userdev/ index and the audit trail; a layout 1 store (or backup) is
// migrated at New.
const StoreLayout uint32 = layoutVersion

// BackupTxn opens a read-only transaction over the auth store for an online
// backup: everything it sees is one snapshot. The caller must Discard it.
// Its iterators leave out the console sessions and visit times
// (consolesession.go): they are not backed up, and after a restore
// coordinators sign in to the console again.
func (s *Service) BackupTxn(ctx context.Context) (store.Txn, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	txn, err := s.kv.Begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("auth backup: %w", err)
	}
	return backupTxn{txn}, nil
}

// notBackedUp are the key prefixes a backup leaves out.
var notBackedUp = [][]byte{[]byte(pConsoleSession), []byte(pConsoleUser), []byte(pConsoleVisit)}

func backedUp(key []byte) bool {
	for _, p := range notBackedUp {
		if bytes.HasPrefix(key, p) {
			return false
		}
	}
	return true
}

// backupTxn is a read-only store.Txn whose iterators skip the keys that
// are not backed up.
type backupTxn struct{ store.Txn }

func (t backupTxn) Iterate(opts store.IterOptions) store.Iterator {
	return &backupIter{Iterator: t.Txn.Iterate(opts)}
}

// backupIter skips the keys that are not backed up, and passes on the
// expiry and user meta a backup copies (see backup.EachIter).
type backupIter struct{ store.Iterator }

func (it *backupIter) skip() {
	for it.Iterator.Valid() && !backedUp(it.Iterator.Key()) {
		it.Iterator.Next()
	}
}

func (it *backupIter) Rewind()         { it.Iterator.Rewind(); it.skip() }
func (it *backupIter) Seek(key []byte) { it.Iterator.Seek(key); it.skip() }
func (it *backupIter) Next()           { it.Iterator.Next(); it.skip() }

// ExpiresAt is the underlying iterator's, or 0 if it has none.
func (it *backupIter) ExpiresAt() uint64 {
	if e, ok := it.Iterator.(interface{ ExpiresAt() uint64 }); ok {
		return e.ExpiresAt()
	}
	return 0
}

// UserMeta is the underlying iterator's, or 0 if it has none.
func (it *backupIter) UserMeta() byte {
	if m, ok := it.Iterator.(interface{ UserMeta() byte }); ok {
		return m.UserMeta()
	}
	return 0
}
