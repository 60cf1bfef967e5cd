package auth

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"testing"

	"github.com/doorstep-health/doorstep/internal/pgtest"
	"github.com/doorstep-health/doorstep/store"
	storebadger "github.com/doorstep-health/doorstep/store/badger"
	"github.com/doorstep-health/doorstep/store/memory"
	"github.com/doorstep-health/doorstep/store/postgres"
)

// sharedBackends are the stores several Services (server processes) may
// write at once, each opener returning two handles on one new store: two
// pools on one PostgreSQL database (two processes, as far as PostgreSQL
// can tell), or one memory store twice (it serializes every writer).
// store/badger has one writer per process, so it is not one.
func sharedBackends() map[string]func(t testing.TB) (store.KV, store.KV) {
	return map[string]func(t testing.TB) (store.KV, store.KV){
		"memory": func(t testing.TB) (store.KV, store.KV) {
			kv := kvBackends()["memory"](t)
			return kv, kv
		},
		"postgres": func(t testing.TB) (store.KV, store.KV) {
			url := pgtest.NewDB(t)
			return openPostgres(t, url), openPostgres(t, url)
		},
	}
}

func openPostgres(t testing.TB, url string) store.KV {
	t.Helper()
	kv, err := postgres.Open(context.Background(), url, postgres.Options{Table: "doorstep_auth", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	return kv
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// kvBackends are the stores the auth tests run over, each opened empty in
// a temp dir and closed at the end of the test.
func kvBackends() map[string]func(t testing.TB) store.KV {
	return map[string]func(t testing.TB) store.KV{
		"badger": func(t testing.TB) store.KV {
			kv, err := storebadger.Open(storebadger.Options{Dir: filepath.Join(t.TempDir(), "auth"), SmallMemory: true, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { kv.Close() })
			return kv
		},
		"memory": func(t testing.TB) store.KV {
			kv := memory.New(memory.Options{})
			t.Cleanup(func() { kv.Close() })
			return kv
		},
		"postgres": func(t testing.TB) store.KV { return openPostgres(t, pgtest.NewDB(t)) },
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// keepKV hands a Service a KV that its Close leaves open, so that a test
// can open another Service over the same store (reopenTest); the test's
// cleanup closes the store.
type keepKV struct{ store.KV }

func (keepKV) Close() error { return nil }

// testBackend is the backend openTest opens: the name of the subtest
// eachBackend runs, else "badger".
func testBackend(t testing.TB) string {
	if _, ok := kvBackends()[path.Base(t.Name())]; ok {
		return path.Base(t.Name())
	}
	return "badger"
}

// eachBackend runs f as a subtest per backend of kvBackends.
func eachBackend(t *testing.T, f func(t *testing.T)) {
	names := slices.Sorted(maps.Keys(kvBackends()))
	for _, name := range names {
		t.Run(name, f)
	}
}

// openWith opens a Service with cfg over a new store of the test's
// backend (see testBackend); KeyDir defaults to a temp dir.
func openWith(t testing.TB, cfg Config) (*Service, error) {
	t.Helper()
	if cfg.KeyDir == "" {
		cfg.KeyDir = filepath.Join(t.TempDir(), "keys")
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	kv := kvBackends()[testBackend(t)](t)
	return New(context.Background(), keepKV{kv}, cfg)
}

// reopenTest closes s and opens a Service with the same configuration
// over the same store, as a restart does: what s knew only in memory is
// gone.
func reopenTest(t testing.TB, s *Service) *Service {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := New(context.Background(), s.kv, s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

// The tests that run over every backend.
func TestLockoutBackoff(t *testing.T)             { eachBackend(t, testLockoutBackoff) }
func TestAuditOrderUnderConcurrency(t *testing.T) { eachBackend(t, testAuditOrderUnderConcurrency) }
func TestMigrateDeviceIndex(t *testing.T)         { eachBackend(t, testMigrateDeviceIndex) }
func TestAuditReuseRevocation(t *testing.T)       { eachBackend(t, testAuditReuseRevocation) }
func TestAuditLargeEntriesConcurrently(t *testing.T) {
	eachBackend(t, testAuditLargeEntriesConcurrently)
}
func TestLoginVerify(t *testing.T)              { eachBackend(t, testLoginVerify) }
func TestValidation(t *testing.T)               { eachBackend(t, testValidation) }
func TestRefreshRotationAndReuse(t *testing.T)  { eachBackend(t, testRefreshRotationAndReuse) }
func TestConcurrentRefreshOneWins(t *testing.T) { eachBackend(t, testConcurrentRefreshOneWins) }
func TestNarrow(t *testing.T)                   { eachBackend(t, testNarrow) }
func TestRevokeAndWipe(t *testing.T)            { eachBackend(t, testRevokeAndWipe) }
func TestRevokeDevicePersists(t *testing.T)     { eachBackend(t, testRevokeDevicePersists) }
