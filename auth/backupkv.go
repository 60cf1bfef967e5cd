package auth

import (
	"context"
	"fmt"

	"github.com/doorstep-health/doorstep/store"
)

// BackupView opens a read-only transaction over the auth store, whatever
// its backend, for an online backup: everything it sees is as of one
// snapshot. The caller iterates it (backup.EachIter) and must Discard it.
func (s *Service) BackupView(ctx context.Context) (store.Txn, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	txn, err := s.kv.Begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("auth backup: %w", err)
	}
	return txn, nil
}
