package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
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
func ReadEpochs(txn *badger.Txn) (cur Epoch, past []Epoch, err error) {
	item, err := txn.Get(KeyEpoch)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return cur, nil, err
	default:
		if err := item.Value(func(b []byte) error {
			if len(b) != EpochSize {
				return fmt.Errorf("%w: epoch", ErrBadValue)
			}
			copy(cur[:], b)
			return nil
		}); err != nil {
			return cur, nil, err
		}
	}
	item, err = txn.Get(KeyEpochs)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return cur, nil, nil
	} else if err != nil {
		return cur, nil, err
	}
	err = item.Value(func(b []byte) error {
		if len(b)%EpochSize != 0 {
			return fmt.Errorf("%w: epochs", ErrBadValue)
		}
		for i := 0; i < len(b); i += EpochSize {
			var e Epoch
			copy(e[:], b[i:])
			past = append(past, e)
		}
		return nil
	})
	return cur, past, err
}

// StartEpoch writes a new random current epoch, moving the old one (if
// any) to the list of earlier epochs, and returns it. Engines call it on
// first open; a restore calls it (NewEpoch) so the restored store starts a
// new epoch.
func StartEpoch(txn *badger.Txn) (Epoch, error) {
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

// NewEpoch starts a new epoch in s in its own durable transaction (see
// StartEpoch). doorstep restore calls it after a restore is verified.
func (s *Store) NewEpoch(ctx context.Context) (Epoch, error) {
	if err := ctx.Err(); err != nil {
		return Epoch{}, err
	}
	var e Epoch
	err := s.db.Update(func(txn *badger.Txn) error {
		var err error
		e, err = StartEpoch(txn)
		return err
	})
	if err != nil {
		return Epoch{}, fmt.Errorf("store: new epoch: %w", err)
	}
	return e, nil
}
