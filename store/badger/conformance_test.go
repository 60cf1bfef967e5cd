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
