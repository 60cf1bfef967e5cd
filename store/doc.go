// Package store is Doorstep's storage layer: the storage seam (KV, kv.go),
// the key layout, the encoding of every value and the stored layout
// version with its migrations (Migrate, run over any KV), and the upkeep
// of every index (records.go: PutRecord and DeleteRecord keep a record's
// team, changed-since, conflict and search term entries; PutLogEntry
// writes a log entry with its history index; EraseFromLogEntry takes an
// erased record out of one; quarantine.go: PutQuarantineEntry and
// DeleteQuarantineEntry keep the k/ index of held ops), so that no index
// key is written anywhere else. It holds no merge logic; the sync engine decides what to write
// (and which search terms a state carries) and store says how it is laid
// out. The log entry decoders a pull uses without decoding whole entries
// (DecodePulledEntry, LogEntryReplica, logwire.go) live here too, next
// to the encoding they depend on. The backends live below it: store/badger (the embedded
// default), store/memory (tests, simulation), store/postgres (several
// servers on one database); each owns only transactions, order and
// durability.
//
// store imports only crdt (for op and record types). It must not import a
// storage engine, nor sync, api, server or anything above it.
//
// # Durability
//
// A backend's commit returns only once durable. store/badger opens Badger
// with SyncWrites set: every transaction commit fsyncs the
// value log before it returns, so anything the engine acknowledges after a
// commit survives a crash (proved by the engine's SIGKILL test). Conflict
// detection is off: every backend serializes write transactions (see KV),
// store/badger with a writer token.
//
// # Overlapped commits
//
// A backend may let its write transactions overlap one commit's fsync with
// building the next transaction (Overlapper, kv.go; store/badger does,
// store/memory and store/postgres do not, and a Shared store must not).
// The next transaction is opened before the commit is issued, so it never
// waits for it; its snapshot lacks the commit's writes, which it reads
// through an Overlay (overlay.go): for each key, its own writes, then the
// writes of the transaction before it (sets, with their expiry, and
// deletes), then its snapshot, in Get and in merged iteration alike. The
// next transaction commits only after the commit before it has landed
// (ErrPrevFailed if it failed), so write transactions still commit one at
// a time in the order they began, and a reader's snapshot still holds a
// prefix of them. kvtest.RunOverlay and kvtest.RunOverlapped check both
// against a model.
//
// # Strings in keys
//
// Every string inside a key (team, collection, record ID) is written as its
// length in uvarint form followed by its bytes. The encoding is prefix-free,
// so a key prefix ending in an encoded string (for example "r/" + team)
// matches that string's keys and no other's, whatever bytes the strings
// contain. Numbers in keys are 8-byte big-endian so that they sort. Op IDs
// are their 24-byte binary form (crdt.OpID.AppendBinary), which sorts in op
// ID order.
//
// # Key layout
//
// Below, s(x) is an encoded string, u64(x) an 8-byte big-endian number and
// id24 a 24-byte op ID.
//
//	m/version                         u32 version of this layout (CurrentVersion, now 3)
//	m/server-replica                  16 bytes: the server's own replica ID
//	m/server-clock                    u64: the highest HLC time the server stamped an op
//	                                  of its own with (resolve, re-apply); stamps move
//	                                  past it, so processes sharing the store never
//	                                  issue one op ID twice
//	m/logpos                          u64: the last log position assigned
//	m/logfloor                        u64: log entries at or below it may have been
//	                                  dropped (retention); older cursors re-bootstrap
//	m/qseq                            u64: the last quarantine ID assigned
//	m/terms                           empty: the s/ term index covers every record
//	                                  (built once at open for older stores)
//	h/<replica 16 bytes>              u64: the replica's high-water seq (last change applied)
//	o/<replica 16 bytes>              the op results (seq, op index, code, quarantined;
//	                                  no detail, no values) of the replica's last push
//	                                  that had ops not merged, re-reported when a
//	                                  lost reply makes the device resend those seqs;
//	                                  consecutive ops with one code are one run ("n",
//	                                  its length; absent in older values means 1)
//	r/s(team)s(coll)s(id)             RecordValue: updated-at ms + crdt.MarshalRecord bytes
//	                                  (crdt state encoding 2 from layout 2)
//	x/s(coll)s(id)                    team name: which team owns a record (refuses
//	                                  the same collection and ID under another team)
//	l/s(team)u64(pos)                 LogEntry: author, replica, seq, receive time and
//	                                  the ops of one accepted change that touch this
//	                                  team (packed under "O" from layout 3, see
//	                                  logops.go; whole ops under "o" before); a change
//	                                  spanning teams writes one entry per team, same
//	                                  pos. The log is also the history.
//	                                  A restate entry has no ops and States: record
//	                                  states a device re-sent after a restore
//	i/s(team)s(coll)s(id)u64(pos)     empty: the change at pos touched the record
//	                                  (history index: a record's history is these
//	                                  log entries, filtered to its ops)
//	u/s(team)u64(ms)s(coll)s(id)      empty: record last changed at ms (changed-since
//	                                  index; the previous entry is deleted on update)
//	c/s(team)s(coll)s(id)             empty: the record has a field in conflict
//	s/s(team)term 00 s(coll)s(id)     empty: the record carries an index term (people
//	                                  search tokens "n:", "h:", "c:"; "p:" links a record
//	                                  to its person); kept by PutRecord, dropped by DeleteRecord
//	q/u64(qid)                        QuarantineEntry: a quarantined op (whole), or a
//	                                  summary of one change's ops refused with one code
//	                                  (count, value bytes, first op's names; no values)
//	k/id24                            u64(qid): a quarantined op by ID, so later ops may
//	                                  name it in pred
//	qd/<replica 16 bytes>             QuarantineUsage (u64 entries, u64 bytes): the
//	                                  quarantine charged to a pushing device (quota)
//	qt/s(team)                        QuarantineUsage: the reapplicable ops charged to a
//	                                  team (quota)
//	p/s(coll)s(id)                    team name: purge marker of an erased record; ops
//	                                  for it are refused (record_erased) and it is
//	                                  never created again
//	m/ping                            u64 ms: written by the readiness check (a durable
//	                                  write through Badger proves the store writable)
//	m/epoch                           16 bytes: the current epoch ID (new on first open
//	                                  and after every restore, see NewEpoch)
//	m/epochs                          16 bytes × n: earlier epoch IDs, oldest first
//	s/<key>                           a log entry an erasure scrub dropped and has not yet
//	                                  written back; put back on open (crash safety)
//	g/<replica 16 bytes>              16 bytes: the epoch in which the replica re-sent its
//	                                  record states and had its high-water re-based
//
// # Layout versions
//
//   - 1: record states in crdt state encoding 1 (every overwritten or
//     removed op ID listed per field, so a record grew with its edits).
//   - 2: record states in crdt state encoding 2 (crdt.StateVersion): live
//     entries plus one causal context per record (a version vector of the
//     highest op time per writer, ops held back in the quarantine as
//     skipped, a replica table so IDs are an index and a delta-coded
//     time); see the crdt package doc for the format and why it is sound.
//     The migration from 1 rewrites every r/ value, 500 per transaction
//     (both encodings decode, so it resumes after a crash), marking the
//     reapplicable quarantined ops of each record as skipped (a state in
//     encoding 1 does not say it skipped them), and stamps m/version last.
//     Nothing else changes: log entries, history, quarantine and indexes
//     hold ops, whose encoding is unchanged.
//   - 3: the ops of a log entry written from layout 3 are packed under
//     "O" (logops.go: the team, collection and record once per run of ops
//     of one record, names from a table, the ID's replica once and its
//     time as a delta, a pred as a delta from its op, no msgpack keys per
//     op), about a quarter of the
//     whole ops' bytes under "o" that layout 2 wrote: the log entry was
//     70% of the bytes a push wrote to the store (issue 17). Readers
//     (LogEntry's decoder, DecodePulledEntry, LogEntryReplica) take both
//     forms and expand packed ops to exactly the "o" bytes, so pulls and
//     history serve what they served. The migration from 2 rewrites
//     nothing: it only stamps m/version, so that a layout 2 build, which
//     would read a packed entry as one without ops, refuses the store
//     (ErrNewerVersion). Every process sharing a store (PostgreSQL) must
//     run a layout 3 build before any of them writes. Entries without ops
//     (erasure, restate) are written as before.
//
// Package store (issue 13) builds its storage seam on layout 2: a record
// state is one opaque value, crdt.MarshalRecord bytes, read whole and
// written whole.
//
// # Erasure
//
// Erasing a record deletes its r/, x/, u/, c/ and s/ keys (DeleteRecord)
// and its i/ keys, removes its ops from every l/ entry the i/ index names
// (EraseFromLogEntry; an entry left with no ops is deleted; positions are
// never reused, so pull cursors neither skip nor repeat), deletes
// quarantined ops for it (q/ and k/), writes the p/ marker (MarkErased), and appends an erasure entry to the team's log: a LogEntry with
// no ops and Erased naming the records, which pulls deliver as
// SyncResponse.Purged.
//
// # Quarantine quotas and summaries (layout 1, compatible addition)
//
// The qd/ and qt/ counters and the QuarantineEntry fields Count ("n"),
// Bytes ("b") and Charged ("w") were added without changing
// CurrentVersion: an older build ignores the new keys and fields, and a
// newer one reads an old entry (no Count) as one whole op and old entries
// as uncharged (expiring or erasing them never takes a counter below
// zero). Entries are dropped by the engine once older than its quarantine
// TTL; q/ IDs grow with receive time, so the oldest come first.
//
// Every value written by this package is either raw bytes described above or
// msgpack with short field tags (see the types in values.go).
//
// Ops are stored once, in the log; there is no per-op key. Whether an op is
// already merged, or a pred exists, is answered by the record state itself
// (crdt.Record.Has: every applied op is covered by the record's causal
// context).
// This keeps a 100-op change to a handful of keys, which is what lets
// durable ingest approach Badger's raw write rate.
package store
