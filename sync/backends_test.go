package sync

import (
	"context"
	gosync "sync"
	"testing"

	"github.com/doorstep-health/doorstep/internal/pgtest"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/postgres"
)

// engineBackends are the store backends the engine's main tests run on
// (TestEngineOnEveryBackend). The whole suite also runs on the one -backend
// names (badger by default).
var engineBackends = []string{"badger", "memory", "postgres"}

// TestEngineOnEveryBackend runs the engine's main tests as one table over
// every backend: exactly-once, refusals and scope, quarantine, review,
// reopen, transaction splitting, paging under concurrent writers,
// snapshot + follow = replay, cursors, erasure, the simulation, and two
// engines sharing one store. The backend -backend already ran is skipped.
// PostgreSQL runs on a private cluster (internal/pgtest); it skips only
// with DOORSTEP_SKIP_POSTGRES=1.
func TestEngineOnEveryBackend(t *testing.T) {
	tests := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"PushPullRoundTrip", TestPushPullRoundTrip},
		{"ExactlyOnce", TestExactlyOnceDuplicatedAndReordered},
		{"OpRefusals", TestOpRefusals},
		{"QuarantineAndReapply", TestQuarantineAndReapply},
		{"QuarantineQuotaAndExpiry", TestQuarantineQuotaAndExpiry},
		{"Review", TestReviewConflictsResolveHistory},
		{"ReopenKeepsState", TestReopenKeepsState},
		{"TxnTooBigSplits", TestTxnTooBigSplits},
		{"PullPagesUnderConcurrentWriters", TestPullPagesNeverSkipOrRepeat},
		{"PullLogOrder", TestPullLogOrderAndCursorBoundaries},
		{"SnapshotFollowEqualsReplay", TestSnapshotFollowEqualsReplay},
		{"CursorForOtherTeams", TestCursorForOtherTeamsBootstraps},
		{"ExpiredOrForeignCursor", TestExpiredOrForeignCursorBootstraps},
		{"Erase", TestErase},
		{"EraseOrderedWithPushes", TestEraseOrderedWithPushes},
		{"RestateAfterRestore", TestRestateAfterRestore},
		{"Simulation", TestSimulation},
		{"SharedStore", TestSharedStoreTwoEngines},
	}
	for _, b := range engineBackends {
		if b == *backendFlag {
			continue
		}
		t.Run(b, func(t *testing.T) {
			setBackend(t, b)
			for _, tc := range tests {
				t.Run(tc.name, tc.fn)
			}
		})
	}
}

// setBackend makes testKV open backend b until t ends.
func setBackend(t *testing.T, b string) {
	testBackendMu.Lock()
	prev := testBackend
	testBackend = b
	testBackendMu.Unlock()
	t.Cleanup(func() {
		testBackendMu.Lock()
		testBackend = prev
		testBackendMu.Unlock()
	})
}

// pgDBs maps a test's store name (testKV's dir) to its database, so that
// an engine reopened on the same dir finds its data.
var (
	pgDBsMu gosync.Mutex
	pgDBs   = map[string]string{}
)

// postgresKV opens the PostgreSQL store for dir: a fresh database on the
// package's private cluster on first use, the same one after.
func postgresKV(t testing.TB, dir string) store.KV {
	t.Helper()
	pgDBsMu.Lock()
	url, ok := pgDBs[dir]
	pgDBsMu.Unlock()
	if !ok {
		url = pgtest.NewDB(t)
		pgDBsMu.Lock()
		pgDBs[dir] = url
		pgDBsMu.Unlock()
		t.Cleanup(func() {
			pgDBsMu.Lock()
			delete(pgDBs, dir)
			pgDBsMu.Unlock()
		})
	}
	kv, err := postgres.Open(context.Background(), url, postgres.Options{MaxTxnBytes: 2 << 20, Logger: quietLogger()}) // small transactions, as for memory, so the split paths run
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	return kv
}
