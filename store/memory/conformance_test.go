package memory

import (
	"testing"

	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/kvtest"
)

func TestConformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) (store.KV, kvtest.Reopen) { return New(Options{}), nil })
}

// TestOverlay checks store.Overlay's reads over this backend's
// transactions (the layering a backend that overlaps commits uses).
func TestOverlay(t *testing.T) {
	kvtest.RunOverlay(t, func(t *testing.T) (store.KV, kvtest.Reopen) { return New(Options{}), nil }, 200)
}
