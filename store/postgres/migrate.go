package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// VersionTable records each store table's schema version: one row per
// table this package manages (a database may hold several, the engine's
// and the auth service's).
const VersionTable = "doorstep_schema_version"

// migrationLock is the advisory lock key every process takes (for the
// length of the migrating transaction) before it reads or changes
// VersionTable, so two servers starting at once migrate one after the
// other and the second finds nothing to do.
var migrationLock = lockKey("doorstep/schema-migrations")

// ErrNewerSchema: the database's schema is newer than this binary knows
// (a newer doorstep migrated it); Open refuses rather than misread it.
var ErrNewerSchema = errors.New("store/postgres: the database schema is newer than this doorstep")

// migrations are the schema steps of a store table, in order; step i
// brings the table from version i to i+1. Each runs in the one migrating
// transaction, so a failure leaves the previous version intact
// (PostgreSQL's DDL is transactional). Never edit a released step; append
// a new one. %[1]s is the quoted table name, %[2]s a name prefix for its
// indexes.
var migrations = []string{
	// 1: the key-value table. bytea compares as unsigned bytes (memcmp,
	// then length), the order store.KV iterates in, whatever the
	// database's collation.
	`CREATE TABLE %[1]s (
		key bytea PRIMARY KEY,
		value bytea NOT NULL,
		expires_at timestamptz NULL
	);
	CREATE INDEX %[2]s_expires ON %[1]s (expires_at) WHERE expires_at IS NOT NULL`,
}

// SchemaVersion is the version this binary migrates a table to.
var SchemaVersion = len(migrations)

// migrate brings the table to SchemaVersion, idempotently.
func (kv *KV) migrate(ctx context.Context, ident pgx.Identifier) error {
	versions := pgx.Identifier{VersionTable}
	if len(ident) == 2 {
		versions = pgx.Identifier{ident[0], VersionTable}
	}
	vt := versions.Sanitize()
	indexPrefix := ident[len(ident)-1]
	err := pgx.BeginFunc(ctx, kv.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+vt+
			" (table_name text PRIMARY KEY, version int NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())"); err != nil {
			return err
		}
		var have int
		err := tx.QueryRow(ctx, "SELECT version FROM "+vt+" WHERE table_name = $1", kv.name).Scan(&have)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if have > SchemaVersion {
			return fmt.Errorf("%w: table %s is at version %d, this binary knows %d", ErrNewerSchema, kv.name, have, SchemaVersion)
		}
		for v := have; v < SchemaVersion; v++ {
			if _, err := tx.Exec(ctx, fmt.Sprintf(migrations[v], kv.table, indexPrefix)); err != nil {
				return fmt.Errorf("migration %d: %w", v+1, err)
			}
		}
		if have == SchemaVersion {
			return nil
		}
		_, err = tx.Exec(ctx, "INSERT INTO "+vt+" (table_name, version) VALUES ($1, $2)"+
			" ON CONFLICT (table_name) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()", kv.name, SchemaVersion)
		return err
	})
	if err != nil {
		return fmt.Errorf("store/postgres: migrate %s: %w", kv.name, err)
	}
	return nil
}
