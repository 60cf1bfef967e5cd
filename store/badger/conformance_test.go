package badger

import (
	"testing"

	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/kvtest"
)

func TestConformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) (store.KV, kvtest.Reopen) {
		opts := Options{Dir: t.TempDir(), Logger: quiet(), SmallMemory: true}
		kv, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		return kv, func() (store.KV, error) { return Open(opts) }
	})
}

// TestOverlay checks store.Overlay's reads over plain Badger
// transactions.
func TestOverlay(t *testing.T) {
	kvtest.RunOverlay(t, func(t *testing.T) (store.KV, kvtest.Reopen) {
		kv, err := Open(Options{Dir: t.TempDir(), Logger: quiet(), SmallMemory: true})
		if err != nil {
			t.Fatal(err)
		}
		return kv, nil
	}, 20)
}

// TestOverlapped checks CommitOverlapped: chains of transactions, each
// built while the commit before it is in flight, read and commit as the
// model says, and the store holds it after reopening.
func TestOverlapped(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Logger: quiet(), SmallMemory: true}
	kvtest.RunOverlapped(t, func(t *testing.T) (store.KV, kvtest.Reopen) {
		kv, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		return kv, func() (store.KV, error) { return Open(opts) }
	}, 20)
}
