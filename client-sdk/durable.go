package client

// Which local writes are synced to disk, and why the others need not be.
//
// The replica's Badger is opened with SyncWrites off, and this file syncs
// explicitly: every write transaction is durable (committed, then
// db.Sync) unless it goes through commitLazy, which only the storing of a
// sync reply uses, and only for a reply whose writes a power loss may
// lose at the cost of a redo that changes nothing
// (replyWrites.redoable, reply.go).
//
// What Badger v4 (v4.9.6, read in its source) does, that this relies on:
//
//   - A commit writes the transaction's entries to the active memtable's
//     write-ahead log (memtable.go: memTable.Put → logFile.writeEntry), a
//     file Badger maps MAP_SHARED (ristretto z.OpenMmapFile) and writes
//     through the mapping; values of ValueThreshold and over go to the
//     value log, also mapped. With SyncWrites on, every commit msyncs the
//     log (db.go writeToLSM → memTable.SyncWAL) and, whether or not a
//     value went there, the current value-log file (value.go
//     valueLog.write's deferred curlf.Sync): the two msyncs per local
//     write strace shows (docs/benchmarks.md, issue 17 fifth pass).
//     DB.Sync does the same two (db.go DB.Sync: db.mt.SyncWAL, then
//     vlog.sync, which syncs only when SyncWrites is off).
//   - A commit that is not synced is in the page cache the moment Commit
//     returns: it survives kill -9 of the process (the kernel writes a
//     shared mapping's dirty pages back whether or not the process
//     lives), and is lost only if the machine goes down (a power cut, a
//     kernel crash) before they reach the disk. Close flushes the
//     memtables to tables, synced: after Close every commit is on disk.
//   - On open, Badger replays each memtable log from its start and stops
//     at the first entry that does not check (memtable.go logFile.iterate:
//     a bad checksum or zeroes end it), and applies a transaction's entries
//     only once its commit mark is read: a power loss keeps a prefix of
//     each log's transactions, each whole or not at all.
//   - DB.Sync syncs only the ACTIVE memtable's log. When a commit finds
//     the memtable full, Badger starts a new one (db.go ensureRoomForWrite)
//     without syncing the old log, which stays until its memtable is
//     flushed to a table (msynced, table.CreateTable) and then deleted.
//     So a commit followed by DB.Sync is durable only if no other commit
//     started a new memtable between the two: syncedDB holds mu from
//     every commit to its sync (and over every lazy commit), so none can.
//
// What that gives: a durable transaction is on disk when its call
// returns; an unsynced one after it can be lost by a power loss; an
// unsynced one before it is on disk too when both went to the same
// memtable log (msync writes the whole file), and may be lost while the
// durable one is kept when a new memtable started between them. So a
// lazy write must be one whose loss, alone and in any combination with
// other lazy writes, leaves a state the replica recovers from by redoing
// work the server makes a no-op. replyWrites.redoable says which replies
// qualify.

import (
	"fmt"
	gosync "sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// syncedDB is the replica's Badger, opened with SyncWrites off, whose
// Update is durable: see the comment at the top of this file. Reads go to
// the embedded DB as they are.
type syncedDB struct {
	*badger.DB
	// mu is held from a commit to its sync, and over every commit,
	// so that no commit between them starts a new memtable whose log
	// DB.Sync would sync instead of the one holding the commit.
	mu gosync.Mutex
	// syncs counts the DB.Sync calls, for tests of which writes sync.
	syncs atomic.Int64
}

// Update runs fn in a write transaction and commits it durably: when it
// returns nil, the transaction is on disk. It shadows badger.DB.Update, so
// that no write goes unsynced by accident.
func (d *syncedDB) Update(fn func(txn *badger.Txn) error) error {
	txn := d.NewTransaction(true)
	defer txn.Discard()
	if err := fn(txn); err != nil {
		return err
	}
	return d.commit(txn)
}

// commitLazy commits txn, a write transaction of d, without a sync: it
// survives kill -9 but may be lost by a power loss, with any other lazy
// transaction, while a durable one after it is kept. Only for writes
// whose loss causes a redo the server makes a no-op
// (replyWrites.redoable).
func (d *syncedDB) commitLazy(txn *badger.Txn) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return txn.Commit()
}

// commit commits txn, a write transaction of d, and syncs it to disk.
// A transaction that wrote nothing is not synced: Badger commits it
// without a write (txn.go Commit returns early on no pending writes),
// which the read timestamp not moving shows (a commit moves it; no other
// commit runs meanwhile, under mu). Such transactions are common: a
// reply's epoch check (epoch.go afterSync) runs one every round.
func (d *syncedDB) commit(txn *badger.Txn) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	before := d.readTs()
	if err := txn.Commit(); err != nil {
		return err
	}
	if d.readTs() == before {
		return nil
	}
	d.syncs.Add(1)
	if err := d.DB.Sync(); err != nil {
		return fmt.Errorf("sync replica to disk: %w", err)
	}
	return nil
}

// sync syncs every commit so far to disk (for writes made through the
// embedded DB directly, such as Open's migrations).
func (d *syncedDB) sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.syncs.Add(1)
	if err := d.DB.Sync(); err != nil {
		return fmt.Errorf("sync replica to disk: %w", err)
	}
	return nil
}

// readTs is the timestamp a read transaction started now reads at: the
// last commit's.
func (d *syncedDB) readTs() uint64 {
	txn := d.NewTransaction(false)
	defer txn.Discard()
	return txn.ReadTs()
}
