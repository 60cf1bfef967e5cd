package sync

import (
	"context"
	"errors"
	"fmt"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/store"
)

// Erased reports whether the record ref of one of the caller's teams was
// erased on this server (its purge marker names ref.Team). The blob
// routes use it to refuse attachments for erased records.
func (e *Engine) Erased(ctx context.Context, c Caller, ref api.RecordRef) (bool, error) {
	if err := scope(c, ref.Team); err != nil {
		return false, err
	}
	var erased bool
	err := e.view(ctx, func(txn store.Tx) error {
		b, err := txn.Get(store.ErasedKey(ref.Collection, ref.ID))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		erased = string(b) == ref.Team
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("erased: %w", err)
	}
	return erased, nil
}
