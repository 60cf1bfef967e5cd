package sync

import (
	"context"
	"fmt"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// replicaHighWater returns the highest seq of replica r applied so far, for
// api.SyncResponse.HighWater: read after the request's push has committed,
// so it covers that push. A device whose earlier reply was lost uses it to
// resend only what the server lacks.
func (e *Engine) replicaHighWater(ctx context.Context, r crdt.ReplicaID) (uint64, error) {
	var hwm uint64
	err := e.view(ctx, func(txn store.Tx) error {
		var err error
		hwm, err = store.GetU64Key(txn, store.HWMKey(r))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read high-water mark: %w", err)
	}
	return hwm, nil
}
