package auth

import (
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
func (s *Service) BackupTxn(ctx context.Context) (store.Txn, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	txn, err := s.kv.Begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("auth backup: %w", err)
	}
	return txn, nil
}
