package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
)

// EpochSize is the length of an epoch ID.
const EpochSize = 16

// Epoch is a random ID naming one stretch of a store's history between
// restores. A store restored from a backup gets a new one, so devices can
// tell that the server may have lost changes they had seen acknowledged.
type Epoch [EpochSize]byte

// IsZero reports whether e is unset.
func (e Epoch) IsZero() bool { return e == Epoch{} }

// ReadEpochs returns the current epoch (zero if none yet) and the earlier
// ones, oldest first.
func ReadEpochs(txn Tx) (cur Epoch, past []Epoch, err error) {
	b, err := txn.Get(KeyEpoch)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return cur, nil, err
	default:
		if len(b) != EpochSize {
			return cur, nil, fmt.Errorf("%w: epoch", ErrBadValue)
		}
		copy(cur[:], b)
	}
	b, err = txn.Get(KeyEpochs)
	if errors.Is(err, ErrNotFound) {
		return cur, nil, nil
	} else if err != nil {
		return cur, nil, err
	}
	if len(b)%EpochSize != 0 {
		return cur, nil, fmt.Errorf("%w: epochs", ErrBadValue)
	}
	for i := 0; i < len(b); i += EpochSize {
		var e Epoch
		copy(e[:], b[i:])
		past = append(past, e)
	}
	return cur, past, nil
}

// StartEpoch writes a new random current epoch, moving the old one (if
// any) to the list of earlier epochs, and returns it. Engines call it on
// first open; a restore calls it (NewEpoch) so the restored store starts a
// new epoch.
func StartEpoch(txn Tx) (Epoch, error) {
	cur, past, err := ReadEpochs(txn)
	if err != nil {
		return Epoch{}, err
	}
	var e Epoch
	if _, err := rand.Read(e[:]); err != nil {
		return Epoch{}, err
	}
	if !cur.IsZero() {
		b := make([]byte, 0, (len(past)+1)*EpochSize)
		for _, p := range past {
			b = append(b, p[:]...)
		}
		b = append(b, cur[:]...)
		if err := txn.Set(KeyEpochs, b); err != nil {
			return Epoch{}, err
		}
	}
	return e, txn.Set(KeyEpoch, e[:])
}

// NewEpoch starts a new epoch in kv in its own durable transaction (see
// StartEpoch). doorstep restore calls it after a restore is verified.
func NewEpoch(ctx context.Context, kv KV) (Epoch, error) {
	if err := ctx.Err(); err != nil {
		return Epoch{}, err
	}
	var e Epoch
	err := kv.Update(ctx, func(txn Tx) error {
		var err error
		e, err = StartEpoch(txn)
		return err
	})
	if err != nil {
		return Epoch{}, fmt.Errorf("store: new epoch: %w", err)
	}
	return e, nil
}
