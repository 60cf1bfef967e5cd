// Package postgres is a store.KV on PostgreSQL (through
// github.com/jackc/pgx/v5 and its pool), so that several doorstep server
// processes can share one database. It owns transactions, ordering and
// durability on one table; package store keeps owning the key layout and
// the value encodings, and this package knows nothing of either. It
// imports only store and pgx.
//
// # Table and migrations
//
// Each store is one table (Options.Table; the engine's and the auth
// service's are two tables in one database):
//
//	key        bytea PRIMARY KEY
//	value      bytea NOT NULL
//	expires_at timestamptz NULL      -- SetWithTTL; NULL: never
//
// Open runs the table's schema migrations: versioned steps recorded per
// table in doorstep_schema_version, applied in one transaction under a
// transaction-level advisory lock, so that two servers starting at once
// migrate one after the other and a re-run does nothing. A database whose
// recorded version is newer than the binary is refused (ErrNewerSchema).
//
// # Transactions
//
// Write transactions (Update, Begin(true)) start with
//
//	BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE;
//	SET LOCAL synchronous_commit TO on;
//	SET LOCAL idle_in_transaction_session_timeout TO 30000;
//	SELECT pg_advisory_xact_lock(<key of the table>)
//
// so at most one write transaction per table is open at a time across
// every process; the lock is released only after the commit is durable
// and visible. This is what makes the engine's log positions commit in
// position order across servers: a writer reads the last position, takes
// the next one and commits before the next writer can even read it, so a
// reader's snapshot never holds position n+1 without n (the sequence-gap
// hazard of a plain SQL sequence, whose values are taken before commit and
// may commit out of order; TestLogPositionsCommitInOrder). READ COMMITTED
// is deliberate: a REPEATABLE READ snapshot would be taken by the
// statement waiting for the lock, before the previous writer's commit, and
// lose its updates. Under the lock nothing else commits to the table
// while the writer runs, so its reads are consistent. Within a process a
// gate admits one writer at a time before a connection is taken, so
// waiting writers do not tie up the pool. A process that stops talking in
// the middle of a write transaction (frozen, partitioned) would hold the
// lock until TCP noticed; the idle-in-transaction timeout
// (Options.WriteIdleTimeout, 30 s) has PostgreSQL end its session
// instead, so the other servers' writes stall for at most that long
// (TestStuckWriterLosesTheLock).
//
// Read-only transactions (View, Begin(false)) are
//
//	BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1
//
// the SELECT taking the snapshot at Begin rather than at the first read.
// They never wait for writers.
//
// View and Update do not send their BEGIN statements on their own: they
// go in one pipelined batch with the transaction's first statement (a
// Get, a write flush, or the commit), saving a round trip per
// transaction, and a transaction that sends nothing costs none. A
// write-only Update is thus a single round trip: BEGIN, the lock, the
// writes and COMMIT. The lock still precedes everything the transaction
// reads, and a View's snapshot is taken by its first read. Begin (an
// explicit Txn) begins at once, as described above.
//
// A transaction's writes are buffered in memory and sent in one round
// trip (INSERT … SELECT FROM unnest($1::bytea[], …) ON CONFLICT (key) DO
// UPDATE, and DELETE … WHERE key = ANY($1)) before the next range read and
// together with COMMIT; Gets read the buffer first. An engine commit that
// makes many small Gets and Sets thus costs one round trip per Get that
// misses the buffer, plus one for all the writes and the commit.
//
// A write transaction holds at most Options.MaxTxnBytes (64 MiB by
// default) of keys and values; past it Set returns store.ErrTxnTooBig and
// the engine splits its work, as on Badger. KV.Stats counts commits, read
// transactions, point reads and iterator fetches.
//
// Commit returns once PostgreSQL has flushed the commit record
// (synchronous_commit on, forced per transaction whatever the server's
// default). If the connection drops during COMMIT the outcome is unknown
// and Commit returns an error; the engine's per-replica exactly-once makes
// the device's retry harmless either way.
//
// # Iteration
//
// A prefix is the range key >= prefix AND key < successor(prefix), where
// the successor drops trailing 0xFF bytes and increments the last other
// byte; a prefix of only 0xFF bytes, or nil, has no upper bound. An
// iterator pages through the range by key (key > last ORDER BY key LIMIT
// n; DESC and key < last in reverse), the first batch Options.Batch (or
// 128) rows and each next one twice the last, up to 2048, each page on the
// transaction's snapshot. KeysOnly selects no values (Value then reads
// the one key). Expired keys are filtered by expires_at >
// clock_timestamp(), the database server's clock, which every process
// shares; a reaper deletes them hourly to reclaim space. Iterators also
// report each key's expiry (ExpiresAt, Unix seconds as Badger reports
// it), so a backup streamed from this store keeps TTLs.
//
// # Erasure (DropPrefix)
//
// DropPrefix deletes the ranges in one write transaction and then runs
// VACUUM on the table, which removes the dead row versions from the table
// and its index (unless a long-running snapshot elsewhere still sees
// them). PostgreSQL never overwrites data in place, so even then the
// bytes of erased rows may remain, until reused, in the freed page space,
// in write-ahead log segments not yet recycled, on physical replicas and
// WAL archives, and in base backups. An operator who must guarantee
// erasure from disk runs VACUUM FULL on the table (it rewrites the table
// and index into new files, taking an exclusive lock meanwhile) followed
// by CHECKPOINT, and applies the backup and archive retention the
// organisation's erasure policy requires. docs/SCALING.md repeats this.
//
// # SQL features relied on
//
// A PostgreSQL-compatible engine can be judged against this list:
//
//   - bytea columns, compared as unsigned bytes (memcmp, shorter first on
//     a tie), in a B-tree primary key usable for range scans in both
//     directions (ORDER BY key, ORDER BY key DESC, with LIMIT);
//   - transactional DDL (CREATE TABLE, CREATE INDEX … WHERE inside
//     BEGIN … COMMIT), CREATE TABLE IF NOT EXISTS, and partial indexes;
//   - transaction-level advisory locks, pg_advisory_xact_lock(bigint),
//     held until the transaction ends and released only after the commit
//     is visible to other transactions;
//   - READ COMMITTED with per-statement snapshots, and REPEATABLE READ
//     READ ONLY transactions giving one consistent snapshot, never
//     blocked by writers (MVCC);
//   - SET LOCAL synchronous_commit, with "on" meaning the commit record is
//     durable (flushed) before COMMIT returns, and SET LOCAL
//     idle_in_transaction_session_timeout ending a stalled session and
//     releasing its locks;
//   - INSERT … ON CONFLICT (key) DO UPDATE SET … = EXCLUDED.…;
//   - unnest() of several arrays in parallel, array parameters
//     (bytea[], int8[]) and = ANY(array);
//   - timestamptz, clock_timestamp(), interval arithmetic;
//   - multi-statement simple queries (BEGIN …; SELECT …) and pipelined
//     extended-protocol batches (pgx.Batch);
//   - VACUUM on one table, and pg_stat_user_tables in a test.
//
// Not relied on: SERIALIZABLE, LISTEN/NOTIFY, sequences, triggers, stored
// procedures, extensions, or any collation.
package postgres
