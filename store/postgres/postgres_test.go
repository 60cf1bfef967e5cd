package postgres_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/doorstep-health/doorstep/internal/pgtest"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/kvtest"
	"github.com/doorstep-health/doorstep/store/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func open(t *testing.T, url string, opts postgres.Options) *postgres.KV {
	t.Helper()
	kv, err := postgres.Open(context.Background(), url, opts)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func TestConformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) (store.KV, kvtest.Reopen) {
		url := pgtest.NewDB(t)
		reopen := func() (store.KV, error) { return postgres.Open(context.Background(), url, postgres.Options{}) }
		return open(t, url, postgres.Options{}), reopen
	})
}

// Two KV instances (two pools: two server processes, as far as PostgreSQL
// can tell) increment one counter: the advisory lock serializes their
// write transactions, so no increment is lost. Each instance's in-process
// writer gate cannot help here; only the database can.
func TestTwoInstancesSerializeWriters(t *testing.T) {
	url := pgtest.NewDB(t)
	a := open(t, url, postgres.Options{})
	defer a.Close()
	b := open(t, url, postgres.Options{})
	defer b.Close()
	const n = 150
	errs := make(chan error, 4)
	for _, kv := range []*postgres.KV{a, b, a, b} {
		go func() {
			for i := 0; i < n; i++ {
				if err := kvtest.Increment(context.Background(), kv, []byte("counter")); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var got []byte
	err := b.View(context.Background(), func(tx store.Tx) error {
		var err error
		got, err = tx.Get([]byte("counter"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(4 * n); string(got) != want {
		t.Fatalf("counter = %s after 4×%d increments over two instances, want %s", got, n, want)
	}
}

// The sequence-gap hazard: writers in two instances each take the next
// position from a counter and append a log entry under it, taking their
// time before committing; a reader polling the log must never see a
// position while a smaller one is still missing (it would skip that
// commit for good). Writes serialized by the lock commit in position
// order, so every snapshot holds positions 1..max with no hole.
func TestLogPositionsCommitInOrder(t *testing.T) {
	url := pgtest.NewDB(t)
	a := open(t, url, postgres.Options{})
	defer a.Close()
	b := open(t, url, postgres.Options{})
	defer b.Close()
	ctx := context.Background()
	const perWriter = 40
	appendEntry := func(kv store.KV) error {
		return kv.Update(ctx, func(tx store.Tx) error {
			var pos uint64
			v, err := tx.Get([]byte("m/logpos"))
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				return err
			default:
				pos = binary.BigEndian.Uint64(v)
			}
			pos++
			if err := tx.Set([]byte("m/logpos"), binary.BigEndian.AppendUint64(nil, pos)); err != nil {
				return err
			}
			if err := tx.Set(binary.BigEndian.AppendUint64([]byte("l/"), pos), []byte("entry")); err != nil {
				return err
			}
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // commit late
			return nil
		})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, kv := range []*postgres.KV{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				if err := appendEntry(kv); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		polls := 0
		for {
			select {
			case <-stop:
				if polls == 0 {
					readerDone <- errors.New("reader never polled")
				} else {
					readerDone <- nil
				}
				return
			default:
			}
			kv := []*postgres.KV{a, b}[polls%2]
			polls++
			err := kv.View(ctx, func(tx store.Tx) error {
				it := tx.Iterate(store.IterOptions{Prefix: []byte("l/"), KeysOnly: true})
				defer it.Close()
				want := uint64(1)
				for it.Rewind(); it.Valid(); it.Next() {
					got := binary.BigEndian.Uint64(it.Key()[2:])
					if got != want {
						return fmt.Errorf("snapshot holds log position %d while %d is missing", got, want)
					}
					want++
				}
				return it.Err()
			})
			if err != nil {
				readerDone <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := <-readerDone; err != nil {
		t.Fatal(err)
	}
}

// Several processes starting at once on an empty database: the migration
// lock lets one create the schema, the others find it done.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	url := pgtest.NewDB(t)
	const n = 6
	kvs := make(chan *postgres.KV, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			kv, err := postgres.Open(context.Background(), url, postgres.Options{Table: "racy"})
			errs <- err
			kvs <- kv
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
		kv := <-kvs
		defer kv.Close()
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var v int
	if err := conn.QueryRow(context.Background(), "SELECT version FROM "+postgres.VersionTable+" WHERE table_name = 'racy'").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != postgres.SchemaVersion {
		t.Fatalf("stored version %d, want %d", v, postgres.SchemaVersion)
	}
	// A version newer than this binary knows is refused.
	if _, err := conn.Exec(context.Background(), "UPDATE "+postgres.VersionTable+" SET version = 99 WHERE table_name = 'racy'"); err != nil {
		t.Fatal(err)
	}
	if kv, err := postgres.Open(context.Background(), url, postgres.Options{Table: "racy"}); !errors.Is(err, postgres.ErrNewerSchema) {
		if kv != nil {
			kv.Close()
		}
		t.Fatalf("Open of a newer schema: %v, want ErrNewerSchema", err)
	}
}

// Two tables in one database are two independent stores: separate keys,
// and separate write locks (an open write transaction on one does not
// hold up the other).
func TestTwoTablesIndependent(t *testing.T) {
	url := pgtest.NewDB(t)
	ctx := context.Background()
	sync1 := open(t, url, postgres.Options{Table: "doorstep_kv"})
	defer sync1.Close()
	auth := open(t, url, postgres.Options{Table: "doorstep_auth"})
	defer auth.Close()
	txn, err := sync1.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Discard()
	if err := txn.Set([]byte("k"), []byte("sync")); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := auth.Update(cctx, func(tx store.Tx) error { return tx.Set([]byte("k"), []byte("auth")) }); err != nil {
		t.Fatalf("auth write while the sync table's writer is open: %v", err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	for kv, want := range map[*postgres.KV]string{sync1: "sync", auth: "auth"} {
		err := kv.View(ctx, func(tx store.Tx) error {
			v, err := tx.Get([]byte("k"))
			if err == nil && string(v) != want {
				err = fmt.Errorf("k = %q, want %q", v, want)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// An acknowledged commit survives the database server crashing (immediate
// shutdown, WAL replay at start), and the pool reconnects by itself.
func TestCommitSurvivesServerCrash(t *testing.T) {
	c := pgtest.Own(t)
	name, err := c.CreateDB("crash")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv := open(t, c.URL(name), postgres.Options{})
	defer kv.Close()
	for i := range 20 {
		if err := kvtest.Increment(ctx, kv, []byte("n")); err != nil {
			t.Fatalf("increment %d: %v", i, err)
		}
	}
	if err := c.Restart(true); err != nil {
		t.Fatal(err)
	}
	var got []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = kv.View(ctx, func(tx store.Tx) error {
			var err error
			got, err = tx.Get([]byte("n"))
			return err
		})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // connections cut by the crash are replaced
	}
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "20" {
		t.Fatalf("after a crash n = %s, want the 20 acknowledged increments", got)
	}
}

// DropPrefix vacuums the table afterwards, so the deleted rows' tuples are
// removed from the heap and index, not only marked dead.
func TestDropPrefixVacuums(t *testing.T) {
	url := pgtest.NewDB(t)
	ctx := context.Background()
	kv := open(t, url, postgres.Options{})
	defer kv.Close()
	err := kv.Update(ctx, func(tx store.Tx) error {
		for i := range 200 {
			if err := tx.Set([]byte(fmt.Sprintf("erase/%03d", i)), []byte("secret")); err != nil {
				return err
			}
		}
		return tx.Set([]byte("keep"), []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.DropPrefix(ctx, []byte("erase/")); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var vacuumed bool
	if err := conn.QueryRow(ctx, "SELECT vacuum_count > 0 FROM pg_stat_user_tables WHERE relname = $1", postgres.DefaultTable).Scan(&vacuumed); err != nil {
		t.Fatal(err)
	}
	if !vacuumed {
		t.Fatal("DropPrefix did not VACUUM the table")
	}
}

// A write transaction past MaxTxnBytes gets ErrTxnTooBig and, discarded,
// leaves nothing behind.
func TestMaxTxnBytes(t *testing.T) {
	url := pgtest.NewDB(t)
	kv := open(t, url, postgres.Options{MaxTxnBytes: 10 << 10})
	defer kv.Close()
	err := kv.Update(context.Background(), func(tx store.Tx) error {
		for i := range 100 {
			if err := tx.Set([]byte(fmt.Sprintf("k%03d", i)), make([]byte, 200)); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, store.ErrTxnTooBig) {
		t.Fatalf("20 KB in a 10 KB transaction: %v, want ErrTxnTooBig", err)
	}
	err = kv.View(context.Background(), func(tx store.Tx) error {
		_, err := tx.Get([]byte("k000"))
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a write of the refused transaction is there: %v", err)
	}
}

// An iterator reports each key's expiry as Badger does (Unix seconds, 0
// for none), so a backup of a PostgreSQL store keeps TTLs.
func TestIteratorExpiresAt(t *testing.T) {
	url := pgtest.NewDB(t)
	kv := open(t, url, postgres.Options{})
	defer kv.Close()
	ctx := context.Background()
	before := time.Now()
	err := kv.Update(ctx, func(tx store.Tx) error {
		if err := tx.SetWithTTL([]byte("a"), []byte("1"), time.Hour); err != nil {
			return err
		}
		return tx.Set([]byte("b"), []byte("2"))
	})
	if err != nil {
		t.Fatal(err)
	}
	err = kv.View(ctx, func(tx store.Tx) error {
		it := tx.Iterate(store.IterOptions{})
		defer it.Close()
		exp := it.(interface{ ExpiresAt() uint64 })
		it.Rewind()
		if got := int64(exp.ExpiresAt()); got < before.Add(time.Hour).Unix() || got > time.Now().Add(time.Hour).Unix()+1 {
			return fmt.Errorf("a expires at %d, want about %d", got, before.Add(time.Hour).Unix())
		}
		it.Next()
		if got := exp.ExpiresAt(); got != 0 {
			return fmt.Errorf("b expires at %d, want 0", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A writer waiting for another process's write lock gives up when its
// context ends, and leaves nothing held: once the other commits, the next
// write goes through at once.
func TestWriterWaitingForLockHonoursContext(t *testing.T) {
	url := pgtest.NewDB(t)
	a := open(t, url, postgres.Options{})
	defer a.Close()
	b := open(t, url, postgres.Options{})
	defer b.Close()
	ctx := context.Background()
	txn, err := a.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Set([]byte("k"), []byte("a")); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = b.Update(short, func(tx store.Tx) error { return tx.Set([]byte("k"), []byte("b")) })
	if err == nil || !errors.Is(err, context.DeadlineExceeded) && short.Err() == nil {
		t.Fatalf("Update while another instance holds the write lock: %v, want the context's error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Update gave up after %v", d)
	}
	t.Logf("gave up after %v", time.Since(start))
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	done, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	t.Logf("committed at %v", time.Since(start))
	for i := 0; i < 3; i++ { // the gate and the pool are free again
		if err := b.Update(done, func(tx store.Tx) error { return tx.Set([]byte("k"), []byte("b")) }); err != nil {
			t.Fatalf("Update %d after the holder committed: %v", i, err)
		}
	}
	err = a.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get([]byte("k"))
		if err == nil && string(v) != "b" {
			err = fmt.Errorf("k = %q, want b", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A process that stops in the middle of a write transaction (frozen,
// partitioned) does not hold the write lock for ever: after
// WriteIdleTimeout PostgreSQL ends its session, the other instance's write
// goes through, and the stuck one's commit fails rather than landing late.
func TestStuckWriterLosesTheLock(t *testing.T) {
	url := pgtest.NewDB(t)
	ctx := context.Background()
	a := open(t, url, postgres.Options{WriteIdleTimeout: 500 * time.Millisecond})
	defer a.Close()
	b := open(t, url, postgres.Options{})
	defer b.Close()
	txn, err := a.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Discard()
	if err := txn.Set([]byte("k"), []byte("stuck")); err != nil {
		t.Fatal(err)
	}
	// a now says nothing for longer than its timeout.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := b.Update(wctx, func(tx store.Tx) error { return tx.Set([]byte("k"), []byte("live")) }); err != nil {
		t.Fatalf("the live instance's write: %v", err)
	}
	t.Logf("the live write waited %v", time.Since(start))
	if err := txn.Commit(); err == nil {
		t.Fatal("the stuck transaction committed after losing its session")
	}
	err = b.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get([]byte("k"))
		if err == nil && string(v) != "live" {
			err = fmt.Errorf("k = %q, want live", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// a itself carries on with a fresh connection.
	if err := a.Update(wctx, func(tx store.Tx) error { return tx.Set([]byte("k2"), []byte("a")) }); err != nil {
		t.Fatalf("a's next write: %v", err)
	}
}

// View and Update send their BEGIN with their first statement: one that
// sends nothing costs nothing and still ends cleanly (the writer gate is
// free again), and one whose only statement is its commit still takes
// the write lock first.
func TestLazyBegin(t *testing.T) {
	url := pgtest.NewDB(t)
	ctx := context.Background()
	kv := open(t, url, postgres.Options{})
	defer kv.Close()
	for i := 0; i < 3; i++ {
		if err := kv.Update(ctx, func(store.Tx) error { return nil }); err != nil {
			t.Fatalf("empty Update %d: %v", i, err)
		}
		if err := kv.View(ctx, func(store.Tx) error { return nil }); err != nil {
			t.Fatalf("empty View %d: %v", i, err)
		}
	}
	if st := kv.Stats(); st.Commits != 0 || st.Gets != 0 {
		t.Fatalf("empty transactions reached the database: %+v", st)
	}
	// A write-only Update from a second instance waits for the first's
	// lock: its single round trip takes the lock before writing.
	other := open(t, url, postgres.Options{})
	defer other.Close()
	txn, err := kv.Begin(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Set([]byte("k"), []byte("first")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- other.Update(ctx, func(tx store.Tx) error { return tx.Set([]byte("k"), []byte("second")) })
	}()
	select {
	case err := <-done:
		t.Fatalf("a write-only Update committed (%v) while another instance held the write lock", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	err = kv.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get([]byte("k"))
		if err == nil && string(v) != "second" {
			err = fmt.Errorf("k = %q, want second", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
