package memory

import (
	"testing"

	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/kvtest"
)

func TestConformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) (store.KV, kvtest.Reopen) { return New(Options{}), nil })
}
