package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/doorstep-health/doorstep/store"
)

// DefaultTable is the table Open uses when Options.Table is empty.
const DefaultTable = "doorstep_kv"

// Options configure Open.
type Options struct {
	// Table is the table holding this store's keys (DefaultTable if
	// empty). Two stores in one database (the engine's and the auth
	// service's) use two tables; each has its own migrations and its own
	// write lock. Lower-case letters, digits and underscores.
	Table string
	// Schema is the PostgreSQL schema of Table ("": the connection's
	// search_path, normally public). It must exist.
	Schema string
	// MaxConns caps the connection pool (0: pgxpool's default, the
	// larger of 4 and the number of CPUs). A URL's pool_max_conns
	// parameter works too.
	MaxConns int32
	// ReapInterval is how often expired keys (SetWithTTL) are deleted to
	// reclaim their space (0: hourly; negative: never, expired keys still
	// read as absent).
	ReapInterval time.Duration
	// NoVacuumAfterDrop skips the VACUUM that DropPrefix runs on the table
	// after deleting (see the package documentation on erasure).
	NoVacuumAfterDrop bool
	// MaxTxnBytes caps the key and value bytes one write transaction may
	// write (0: DefaultMaxTxnBytes; negative: no cap); past it Set and
	// Delete return store.ErrTxnTooBig and the caller splits its work.
	// PostgreSQL itself takes far larger transactions; the cap bounds the
	// memory a transaction's buffered writes hold and the time the write
	// lock is held by one transaction.
	MaxTxnBytes int
	// WriteIdleTimeout ends a write transaction whose process stops
	// talking to the database for this long in the middle of it (frozen,
	// partitioned, or stalled in its own code): PostgreSQL terminates the
	// session (idle_in_transaction_session_timeout, set for write
	// transactions only), the transaction rolls back and the write lock
	// passes to the other servers instead of waiting for TCP to notice. 0:
	// DefaultWriteIdleTimeout; negative: never. The engine's write
	// transactions are busy from start to commit, so only a stuck process
	// reaches it.
	WriteIdleTimeout time.Duration
	// Logger receives the reaper's errors (nil: slog.Default()).
	Logger *slog.Logger
}

// DefaultWriteIdleTimeout is the default Options.WriteIdleTimeout.
const DefaultWriteIdleTimeout = 30 * time.Second

// DefaultMaxTxnBytes is the default Options.MaxTxnBytes: 64 MiB.
const DefaultMaxTxnBytes = 64 << 20

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// KV is a store.KV on one PostgreSQL table.
type KV struct {
	pool    *pgxpool.Pool
	table   string // quoted, schema-qualified identifier
	name    string // schema.table as given, for the lock key and messages
	lockKey int64  // pg_advisory_xact_lock key serializing this table's writers
	vacuum  bool
	maxTxn  int // Options.MaxTxnBytes resolved; 0: no cap
	// beginWrite are the statements that start a write transaction (see
	// begin).
	beginWrite []string
	// unbuffered sends every write at once (for the benchmark comparing
	// buffered writes; set by tests only).
	unbuffered bool
	// writer admits one write transaction of this process at a time, so
	// that waiting for the cross-process advisory lock holds one pool
	// connection, not one per waiting goroutine.
	writer chan struct{}
	log    *slog.Logger
	stop   chan struct{}
	wg     sync.WaitGroup
	sql    queries
	stats  struct{ commits, reads, gets, fetches atomic.Int64 }
}

// Stats counts a store's work since Open, for benchmarks and metrics.
type Stats struct {
	// Commits is the write transactions committed (each one durable
	// commit: one WAL flush, shared by whatever the transaction grouped).
	Commits int64
	// Reads is the read-only transactions ended.
	Reads int64
	// Gets is the point reads sent to the database (reads answered from
	// a transaction's own buffered writes are not counted).
	Gets int64
	// Fetches is the iterator batches fetched.
	Fetches int64
}

// Stats returns the store's counters.
func (kv *KV) Stats() Stats {
	return Stats{Commits: kv.stats.commits.Load(), Reads: kv.stats.reads.Load(), Gets: kv.stats.gets.Load(), Fetches: kv.stats.fetches.Load()}
}

// queries are the statements on this store's table.
type queries struct {
	get, upsert, del, reap string
}

var _ store.KV = (*KV)(nil)

// Open connects to the database at url (a libpq URL or key=value string,
// as pgx accepts), runs this store's schema migrations, and returns the
// store. It is safe for several processes to Open the same table at once.
func Open(ctx context.Context, url string, opts Options) (*KV, error) {
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	if !identRE.MatchString(opts.Table) {
		return nil, fmt.Errorf("store/postgres: table name %q: want lower-case letters, digits and underscores", opts.Table)
	}
	if opts.Schema != "" && !identRE.MatchString(opts.Schema) {
		return nil, fmt.Errorf("store/postgres: schema name %q: want lower-case letters, digits and underscores", opts.Schema)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store/postgres: connection URL: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "doorstep"
	}
	ident := pgx.Identifier{opts.Table}
	name := opts.Table
	if opts.Schema != "" {
		ident = pgx.Identifier{opts.Schema, opts.Table}
		name = opts.Schema + "." + opts.Table
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store/postgres: connect: %w", err)
	}
	kv := &KV{
		pool:    pool,
		table:   ident.Sanitize(),
		name:    name,
		lockKey: lockKey("doorstep/kv/" + name),
		vacuum:  !opts.NoVacuumAfterDrop,
		maxTxn:  opts.MaxTxnBytes,
		writer:  make(chan struct{}, 1),
		log:     opts.Logger,
		stop:    make(chan struct{}),
	}
	if kv.log == nil {
		kv.log = slog.Default()
	}
	idle := opts.WriteIdleTimeout
	if idle == 0 {
		idle = DefaultWriteIdleTimeout
	}
	// READ COMMITTED, not REPEATABLE READ: every statement sees what
	// committed before it, and the lock taken here means nothing but
	// this transaction commits until it ends, so its reads are one
	// consistent, current state. (A REPEATABLE READ snapshot would be
	// taken by this very statement, before the lock is granted, and miss
	// the writer it waited for.)
	kv.beginWrite = []string{"BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE", "SET LOCAL synchronous_commit TO on"}
	if idle > 0 {
		kv.beginWrite = append(kv.beginWrite, fmt.Sprintf("SET LOCAL idle_in_transaction_session_timeout TO %d", max(idle.Milliseconds(), 1)))
	}
	kv.beginWrite = append(kv.beginWrite, "SELECT pg_advisory_xact_lock("+strconv.FormatInt(kv.lockKey, 10)+")")
	switch {
	case kv.maxTxn == 0:
		kv.maxTxn = DefaultMaxTxnBytes
	case kv.maxTxn < 0:
		kv.maxTxn = 0
	}
	t := kv.table
	kv.sql = queries{
		get: "SELECT value FROM " + t + " WHERE key = $1 AND " + live,
		upsert: "INSERT INTO " + t + " (key, value, expires_at)" +
			" SELECT k, v, CASE WHEN ttl IS NULL THEN NULL ELSE clock_timestamp() + ttl * interval '1 microsecond' END" +
			" FROM unnest($1::bytea[], $2::bytea[], $3::int8[]) AS w(k, v, ttl)" +
			" ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at",
		del:  "DELETE FROM " + t + " WHERE key = ANY($1::bytea[])",
		reap: "DELETE FROM " + t + " WHERE expires_at <= clock_timestamp()",
	}
	if err := kv.migrate(ctx, ident); err != nil {
		pool.Close()
		return nil, err
	}
	if err := kv.reap(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	every := opts.ReapInterval
	if every == 0 {
		every = time.Hour
	}
	if every > 0 {
		kv.wg.Add(1)
		go kv.reaper(every)
	}
	return kv, nil
}

// live is the condition a row must meet to be read: not expired.
const live = "(expires_at IS NULL OR expires_at > clock_timestamp())"

// lockKey is the advisory lock key for a name: the first 8 bytes of its
// FNV-1a hash.
func lockKey(name string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return int64(h.Sum64())
}

// reaper deletes expired keys every interval until Close.
func (kv *KV) reaper(every time.Duration) {
	defer kv.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-kv.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every)
			if err := kv.reap(ctx); err != nil {
				kv.log.Warn("store/postgres: deleting expired keys", "table", kv.name, "err", err)
			}
			cancel()
		}
	}
}

// reap deletes the expired keys. It takes no lock: an expired row reads as
// absent already, and a writer rewriting one concurrently wins (the DELETE
// re-checks expires_at on the row version it would delete).
func (kv *KV) reap(ctx context.Context) error {
	if _, err := kv.pool.Exec(ctx, kv.sql.reap); err != nil {
		return fmt.Errorf("store/postgres: delete expired keys of %s: %w", kv.name, mapErr(err))
	}
	return nil
}

// Shared reports true: other processes may write the same table.
func (kv *KV) Shared() bool { return true }

// Close stops the reaper and closes the pool. Transactions must have ended.
func (kv *KV) Close() error {
	select {
	case <-kv.stop:
		return nil
	default:
	}
	close(kv.stop)
	kv.wg.Wait()
	kv.pool.Close()
	return nil
}

// View runs fn in a read-only transaction on one snapshot.
func (kv *KV) View(ctx context.Context, fn func(store.Tx) error) error {
	t, err := kv.begin(ctx, false, true)
	if err != nil {
		return err
	}
	defer t.Discard()
	if err := fn(t); err != nil {
		return err
	}
	return t.Commit()
}

// Update runs fn in a write transaction, serialized with every other
// write transaction on the table in any process, and commits it durably.
func (kv *KV) Update(ctx context.Context, fn func(store.Tx) error) error {
	t, err := kv.begin(ctx, true, true)
	if err != nil {
		return err
	}
	defer t.Discard()
	if err := fn(t); err != nil {
		return err
	}
	return t.Commit()
}

// Begin opens a transaction (see store.KV).
func (kv *KV) Begin(ctx context.Context, update bool) (store.Txn, error) {
	return kv.begin(ctx, update, false)
}

// beginRead starts a read-only transaction; an eager begin (Begin) adds
// beginSnapshot to take the snapshot at once, so that it is the store as
// of Begin, not as of the first read.
var beginRead = []string{"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"}

const beginSnapshot = "SELECT 1"

// begin opens a transaction on a pooled connection (a write one after the
// in-process writer gate). With lazy set (View and Update, whose function
// runs at once) the BEGIN statements are not sent now but pipelined in
// front of the transaction's first statement, saving a round trip; a
// transaction that sends nothing costs none. The write lock is then taken
// by that first statement, before anything the transaction reads, so
// serialization is the same.
func (kv *KV) begin(ctx context.Context, update, lazy bool) (*tx, error) {
	if update {
		select {
		case kv.writer <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("store/postgres: waiting to write: %w", ctx.Err())
		}
	}
	conn, err := kv.pool.Acquire(ctx)
	if err != nil {
		if update {
			<-kv.writer
		}
		return nil, fmt.Errorf("store/postgres: acquire connection: %w", mapErr(err))
	}
	stmts := beginRead
	if update {
		stmts = kv.beginWrite
	}
	t := &tx{kv: kv, ctx: ctx, conn: conn, update: update, pendingBegin: stmts}
	if lazy {
		return t, nil
	}
	if !update {
		t.pendingBegin = append(slices.Clip(stmts), beginSnapshot)
	}
	if err := t.ensureBegun(); err != nil {
		t.end()
		return nil, err
	}
	return t, nil
}

// newBatch returns a batch that starts with the transaction's BEGIN
// statements if they have not been sent yet, and how many those are.
func (t *tx) newBatch() (*pgx.Batch, int) {
	b := &pgx.Batch{}
	for _, s := range t.pendingBegin {
		b.Queue(s)
	}
	return b, len(t.pendingBegin)
}

// sendBatch sends b and reads the results of its n BEGIN statements.
func (t *tx) sendBatch(b *pgx.Batch, n int) (pgx.BatchResults, error) {
	br := t.conn.SendBatch(t.ctx, b)
	for i := 0; i < n; i++ {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, fmt.Errorf("store/postgres: begin: %w", mapErr(err))
		}
	}
	t.pendingBegin = nil
	return br, nil
}

// ensureBegun sends the BEGIN statements if they are still pending.
func (t *tx) ensureBegun() error {
	if len(t.pendingBegin) == 0 {
		return nil
	}
	b, n := t.newBatch()
	br, err := t.sendBatch(b, n)
	if err != nil {
		return err
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("store/postgres: begin: %w", mapErr(err))
	}
	return nil
}

// pending is a buffered write: a value (with its TTL, 0 for none) or a
// delete.
type pending struct {
	value   []byte
	ttl     time.Duration
	expires time.Time // ttl's deadline on this machine's clock, for own reads
	del     bool
}

// tx is a transaction on one pooled connection. Writes are buffered in
// writes and sent in one round trip (an unnest upsert and a delete) before
// the next range read and at commit; point reads consult the buffer first,
// so a commit's many small Gets cost one round trip each and its writes
// one in all.
type tx struct {
	kv     *KV
	ctx    context.Context
	conn   *pgxpool.Conn
	update bool
	done   bool
	writes map[string]pending
	bytes  int // key and value bytes written, for MaxTxnBytes
	// pendingBegin are BEGIN statements not sent yet (lazy begin).
	pendingBegin []string
}

var _ store.Txn = (*tx)(nil)

// Get returns key's value, from the transaction's own writes first.
func (t *tx) Get(key []byte) ([]byte, error) {
	if t.done {
		return nil, errEnded
	}
	if w, ok := t.writes[string(key)]; ok {
		if w.del || (w.ttl > 0 && !time.Now().Before(w.expires)) {
			return nil, store.ErrNotFound
		}
		return append([]byte{}, w.value...), nil
	}
	var v []byte
	t.kv.stats.gets.Add(1)
	var err error
	if len(t.pendingBegin) == 0 {
		err = t.conn.QueryRow(t.ctx, t.kv.sql.get, key).Scan(&v)
	} else {
		b, n := t.newBatch()
		b.Queue(t.kv.sql.get, key)
		var br pgx.BatchResults
		if br, err = t.sendBatch(b, n); err != nil {
			return nil, err
		}
		err = br.QueryRow().Scan(&v)
		if cerr := br.Close(); err == nil {
			err = cerr
		}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store/postgres: get: %w", mapErr(err))
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

var errEnded = errors.New("store/postgres: transaction has ended")

func (t *tx) put(key []byte, w pending) error {
	if t.done {
		return errEnded
	}
	if !t.update {
		return store.ErrReadOnly
	}
	t.bytes += len(key) + len(w.value)
	if t.kv.maxTxn > 0 && t.bytes > t.kv.maxTxn {
		return fmt.Errorf("%w: over %d bytes", store.ErrTxnTooBig, t.kv.maxTxn)
	}
	if t.writes == nil {
		t.writes = make(map[string]pending)
	}
	t.writes[string(key)] = w
	if t.kv.unbuffered {
		return t.flush()
	}
	return nil
}

// Set buffers an upsert of key.
func (t *tx) Set(key, value []byte) error {
	if value == nil {
		value = []byte{} // an empty value, not SQL NULL
	}
	return t.put(key, pending{value: value})
}

// SetWithTTL buffers an upsert of key expiring after ttl (by the database
// server's clock, the one clock every process shares).
func (t *tx) SetWithTTL(key, value []byte, ttl time.Duration) error {
	if value == nil {
		value = []byte{}
	}
	if ttl <= 0 {
		ttl = time.Microsecond // already expired: reads as absent
	}
	return t.put(key, pending{value: value, ttl: ttl, expires: time.Now().Add(ttl)})
}

// Delete buffers a delete of key.
func (t *tx) Delete(key []byte) error { return t.put(key, pending{del: true}) }

// flushBatch queues the buffered writes on b and empties the buffer.
func (t *tx) flushBatch(b *pgx.Batch) {
	if len(t.writes) == 0 {
		return
	}
	var keys, vals [][]byte
	var ttls []*int64
	var dels [][]byte
	for k, w := range t.writes {
		if w.del {
			dels = append(dels, []byte(k))
			continue
		}
		keys = append(keys, []byte(k))
		vals = append(vals, w.value)
		if w.ttl > 0 {
			us := w.ttl.Microseconds()
			if us < 1 {
				us = 1
			}
			ttls = append(ttls, &us)
		} else {
			ttls = append(ttls, nil)
		}
	}
	if len(keys) > 0 {
		b.Queue(t.kv.sql.upsert, keys, vals, ttls)
	}
	if len(dels) > 0 {
		b.Queue(t.kv.sql.del, dels)
	}
	t.writes = nil
}

// flush sends the buffered writes.
func (t *tx) flush() error {
	if len(t.writes) == 0 {
		return nil
	}
	b, n := t.newBatch()
	t.flushBatch(b)
	br, err := t.sendBatch(b, n)
	if err != nil {
		return err
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("store/postgres: write: %w", mapErr(err))
	}
	return nil
}

// Commit sends the buffered writes and COMMIT in one round trip; it
// returns once the commit is durable (synchronous_commit on).
func (t *tx) Commit() error {
	if t.done {
		return nil
	}
	defer t.end()
	if len(t.pendingBegin) > 0 && len(t.writes) == 0 {
		// Nothing was sent: there is nothing to end or commit.
		t.done = true
		if !t.update {
			t.kv.stats.reads.Add(1)
		}
		return nil
	}
	if !t.update {
		if _, err := t.conn.Exec(t.ctx, "COMMIT"); err != nil {
			return fmt.Errorf("store/postgres: end read: %w", mapErr(err))
		}
		t.done = true
		t.kv.stats.reads.Add(1)
		return nil
	}
	b, nb := t.newBatch()
	t.flushBatch(b)
	n := b.Len() - nb
	b.Queue("COMMIT")
	br, err := t.sendBatch(b, nb)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return fmt.Errorf("store/postgres: write: %w", mapErr(err))
		}
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store/postgres: commit (outcome unknown if the connection was lost): %w", mapErr(err))
	}
	if tag.String() != "COMMIT" {
		return fmt.Errorf("store/postgres: commit: the server rolled back (%s)", tag)
	}
	t.done = true
	t.kv.stats.commits.Add(1)
	return nil
}

// Discard rolls the transaction back (a no-op once it has ended).
func (t *tx) Discard() {
	if t.done {
		return
	}
	t.end()
}

// end rolls back if still open, returns the connection to the pool and
// lets the next writer in.
func (t *tx) end() {
	if t.conn == nil {
		return
	}
	if !t.done && t.conn.Conn().PgConn().TxStatus() != 'I' {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := t.conn.Exec(ctx, "ROLLBACK"); err != nil {
			// The pool destroys a connection left in a transaction.
			_ = t.conn.Conn().Close(ctx)
		}
		cancel()
	}
	t.done = true
	t.writes = nil
	t.conn.Release()
	t.conn = nil
	if t.update {
		<-t.kv.writer
	}
}

// DropPrefix deletes every key starting with one of prefixes in one write
// transaction (serialized with all writers), then VACUUMs the table so
// that the deleted rows' space is reclaimed (see the package doc: this
// makes the rows unreachable and reusable, it does not scrub every copy).
func (kv *KV) DropPrefix(ctx context.Context, prefixes ...[]byte) error {
	if len(prefixes) == 0 {
		return nil
	}
	t, err := kv.begin(ctx, true, false)
	if err != nil {
		return err
	}
	defer t.Discard()
	var b pgx.Batch
	for _, p := range prefixes {
		lo, hi := prefixRange(p)
		if hi == nil {
			b.Queue("DELETE FROM "+kv.table+" WHERE key >= $1", lo)
		} else {
			b.Queue("DELETE FROM "+kv.table+" WHERE key >= $1 AND key < $2", lo, hi)
		}
	}
	if err := t.conn.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("store/postgres: drop prefixes: %w", mapErr(err))
	}
	if err := t.Commit(); err != nil {
		return err
	}
	if kv.vacuum {
		if _, err := kv.pool.Exec(ctx, "VACUUM "+kv.table); err != nil {
			return fmt.Errorf("store/postgres: vacuum after drop: %w", mapErr(err))
		}
	}
	return nil
}

// prefixRange is the key range [lo, hi) of a prefix; hi is nil when no key
// bounds it above (an empty prefix, or one of only 0xFF bytes).
func prefixRange(prefix []byte) (lo, hi []byte) {
	lo = append([]byte{}, prefix...)
	return lo, successor(prefix)
}

// successor is the smallest key greater than every key starting with
// prefix, or nil if there is none.
func successor(prefix []byte) []byte {
	s := append([]byte{}, prefix...)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] != 0xff {
			s[i]++
			return s[:i+1]
		}
	}
	return nil
}

// mapErr maps PostgreSQL errors callers branch on to store's sentinels.
func mapErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return fmt.Errorf("%w: %w", store.ErrConflict, err)
		case "25006": // read_only_sql_transaction
			return fmt.Errorf("%w: %w", store.ErrReadOnly, err)
		case "54000": // program_limit_exceeded (a value over 1 GB)
			return fmt.Errorf("%w: %w", store.ErrTxnTooBig, err)
		}
	}
	return err
}
