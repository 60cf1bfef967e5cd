package server

import (
	"path/filepath"

	"github.com/doorstep-health/doorstep/store"
	storebadger "github.com/doorstep-health/doorstep/store/badger"
)

// openRecords returns the records store: cfg.Records when the caller
// opened one (another backend), else the embedded default, Badger in
// DataDir/records. The engine owns it from then on.
func openRecords(cfg *Config) (store.KV, error) {
	if cfg.Records != nil {
		return cfg.Records, nil
	}
	return storebadger.Open(storebadger.Options{
		Dir:           filepath.Join(cfg.DataDir, "records"),
		Logger:        cfg.Logger,
		SmallMemory:   cfg.SmallMemory,
		EncryptionKey: cfg.EncryptionKey,
	})
}
