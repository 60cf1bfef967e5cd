package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/postgres"
)

// Store backends --store accepts.
const (
	storeBadger   = "badger"
	storePostgres = "postgres"
)

// PostgreSQL tables of the two stores (docs/SCALING.md).
const (
	pgRecordsTable = "doorstep_kv"
	pgAuthTable    = "doorstep_auth"
)

// storeChoice is the --store and --pg-url pair.
type storeChoice struct {
	kind, pgURL string
}

// check validates the pair.
func (s storeChoice) check() error {
	switch s.kind {
	case storeBadger:
		if s.pgURL != "" {
			return errors.New("--pg-url is given but --store is badger: add --store postgres")
		}
		return nil
	case storePostgres:
		if s.pgURL == "" {
			return errors.New("--store postgres needs --pg-url (or DOORSTEP_PG_URL)")
		}
		return nil
	}
	return fmt.Errorf("--store must be %s or %s, not %q", storeBadger, storePostgres, s.kind)
}

// shared reports whether the stores live outside --data (PostgreSQL).
func (s storeChoice) shared() bool { return s.kind == storePostgres }

// open opens one PostgreSQL table of the choice: nil for badger, whose
// stores the server opens under --data itself.
func (s storeChoice) open(ctx context.Context, table string, logger *slog.Logger) (store.KV, error) {
	if s.kind != storePostgres {
		return nil, nil
	}
	kv, err := postgres.Open(ctx, s.pgURL, postgres.Options{Table: table, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("--store postgres: %w", err)
	}
	return kv, nil
}
