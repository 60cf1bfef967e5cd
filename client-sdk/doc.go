// Package client is Doorstep's client SDK: a device replica that works fully
// offline and syncs with a Doorstep server when a network appears.
//
// A Replica keeps the device's copy of its teams' records in a local Badger
// store, encrypted at rest with a key the app supplies (Options.EncryptionKey)
// and written with SyncWrites, so a write the app saw return survives a
// crash. Writes (Create, Set, Add, Remove, Append, Delete, Restore, Resolve)
// build ops with the crdt builders and the replica's hybrid logical clock,
// validate them (Options.Validator, normally schema.Default()), apply them
// to the local record and, in one transaction, store the record and append
// the ops to the outbox. Batch groups many writes (a whole visit form) into
// one transaction and one fsync, and writes made concurrently share one
// commit (group commit). Reads (Get, List, Conflicts) return per
// field the winning value, whether it is in conflict, the concurrent
// values, set members and log entries; fields this device's schema does not
// know (written by a newer app version) are kept and shown as they are.
//
// Sync pushes the outbox and pulls others' changes over POST /v1/sync (see
// package api and docs/PROTOCOL.md). Background runs it in a goroutine with
// backoff; Status and Subscribe tell the UI what is happening.
//
// The package owns the device side only. It must not import the server,
// store or sync packages, nor echo: it talks to the server only through the
// HTTP contract in package api.
//
// # Writing and reading values
//
// Create takes a Ref naming the team and collection (and optionally the
// ID) and returns the new record's Ref, so the two names cannot be swapped
// unnoticed. Set refuses a nil value; Clear clears a register, and a
// cleared register not in conflict is left out of Record.Fields. Reads
// decode integers as int64 whatever width they were stored in (uint64 only
// above math.MaxInt64) and floats as float64, so a value written as 4
// reads back as int64(4).
//
// ServerURL and the request sizes can be changed after Open with
// SetServerURL and SetRequestSizes.
//
// # Conflicts
//
// Set overwrites the value the user saw. On a field already in conflict it
// overwrites only values this replica wrote itself: other authors'
// concurrent values survive until Resolve, which overwrites all of them.
// On a field the schema marks clinical and in conflict, Set is refused
// with ErrInConflict and nothing is stored: the app must offer the
// conflict to someone allowed to settle it. Resolve of a clinical conflict
// checks the signed-in user's role (from Login) against the field's
// settled_by (ErrResolveForbidden; MaySettle asks beforehand). The server
// applies the same rules (docs/PROTOCOL.md §11.1) and, when it refuses a
// write this replica already applied (a conflict that had not reached the
// tablet yet, a demotion since login), says so per op (Rejected) and
// restates the record: the replica replaces its copy with the server's and
// re-applies its own unacknowledged ops, so it shows the conflict again.
//
// # Scope, erasure and remote wipe
//
// Every reply states the device's scope (its user's teams now). Records of
// other teams are deleted, with their rejections, except forbidden_team
// rejections: the device's unsynced work for a team it has left, pushed
// and refused, kept until DismissRejected. A record erased on the server
// leaves nothing: record, outbox ops and rejections go; rejections the
// reply reports for it reach the app without values; so does one a restate
// reply after a server restore names (epoch.go). A reply ordering a
// remote wipe (an admin revoked the device with wipe) makes the replica
// drop all its data (Badger DropAll), report back, and return ErrWiped;
// the app should then delete Dir and forget the key.
//
// # Outbox and changes
//
// Each write appends its ops as one group to the outbox. At sync time groups
// are sealed, oldest first, into changes numbered 1, 2, 3 … (at most
// Options.MaxOpsPerChange ops each; one write's ops are not split); a write
// whose ops fill a change, with nothing unsealed before it, is stored as
// that sealed change as it is written (sealAtWrite). A
// sealed change is written once and not modified, because the server
// dedupes by seq: a retried seq must carry the same ops. The one exception
// is a change the server refused as too large, below. An acknowledged
// change (applied or duplicate) leaves the outbox in the same transaction
// that stores the reply's pulled page and new cursor, so a request that
// fails at any byte leaves nothing lost or doubled. Ops the server
// quarantined or refused inside an acknowledged change are kept and listed
// by Rejected; they stay applied locally.
//
// A change the server can never accept must not block the ones after it.
// Writes are checked against the server's limits when the app makes them
// (Options.MaxValueBytes, MaxWriteOps, MaxWriteBytes; a *LimitError matching
// ErrTooLarge). If the server still refuses a request as too large
// (body_too_large), Sync sends fewer changes, then splits a single change in
// two (renumbering the later ones; content only ever moves to a higher seq,
// so nothing the server holds is contradicted), and a single op still too
// large is set aside: its change is replaced by an empty one under the same
// seq and the op is listed by Rejected with the server's reason. A change
// refused as a whole with a code that can never succeed (bad_request,
// malformed_body, invalid_op, body_too_large) is set aside the same way;
// other refusals fail the Sync with ErrRefused and keep the change.
//
// On the wire, pulled log entries come in the packed encoding when the
// server offers it (docs/PROTOCOL.md "Packed pull encoding"; about a
// quarter of the bytes after gzip), and pushes go packed once a reply has
// said the server reads them (stored with each reply; a server that
// stops reading them applies nothing of a packed push and its reply turns
// packing off, so the changes go plain in the next request).
// Options.PlainPull and PlainPush turn either off.
//
// Requests are bounded: at most Options.MaxChangesPerRequest changes (and
// about 4 MiB and 20,000 ops) pushed and Options.PullLimit items asked for per round trip.
// After a failure that points at size they are halved for the next attempt
// and doubled back after each success, so a page too big to cross the link
// in time cannot stall sync for good: a timeout halves both, body_too_large
// the changes pushed, a reply over MaxResponseBytes the page. Other failures
// (a refused, reset or cut connection, a server error) leave the sizes
// alone, so random losses do not shrink every request to a crawl.
//
// # Rate limits
//
// When the server answers rate_limited (or unavailable with a wait), Sync
// waits what the server asked (the problem's retry_after_ms, else the
// Retry-After header, else 1 s), capped by Options.MaxRetryWait and
// jittered, and goes on; at most 10 waits in a row, and never past the
// context. SyncResult.RateLimited counts them. A long bootstrap therefore
// runs at the server's pace instead of failing at the end of the burst.
//
// # Clock
//
// Op IDs come from a crdt.Clock reading a corrected wall clock: the device's
// wall clock plus an offset. After every sync reply the replica compares the
// server's HLC with its own wall clock; if they differ by more than
// Options.ClockTolerance (2 s by default) the difference becomes the offset,
// otherwise the offset is zero. The offset is stored, so it holds offline
// and across restarts. A tablet whose clock is hours fast therefore stamps
// its ops with server time and cannot win every conflict; one whose clock is
// hours slow does not lose every one. The server's HLC is then merged with
// crdt.Clock.Update. The clock never reads earlier than the last timestamp
// stored before a restart, so op IDs stay unique even if the device's clock
// is set back. A sync request carries the clock's reading without advancing
// it. Before its first sync a device has no offset; ops it writes with a
// clock far ahead are quarantined by the server (code clock_skew, listed by
// Rejected), and because an HLC never runs backwards its later ops stay
// stamped after them until real time catches up.
//
// # Auth
//
// Login stores access and refresh tokens inside the encrypted replica; the
// device ID is the replica ID in hex. Sync refreshes the access token when
// the server says it expired. When refresh is impossible (device revoked,
// refresh token reused, credentials invalid) the tokens are dropped, Sync
// returns an error wrapping ErrSignedOut and the server's *api.Problem, and
// the background loop stops; the outbox is untouched and syncs after the
// next Login. Refresh tokens are single-use on the server: if a refresh
// reply is lost after the server rotated the token, the server accepts the
// same token again for a short grace period; after that the retry is seen
// as reuse and signs the device out. A device offline longer than the
// refresh token's lifetime (30 days by default) is signed out on its next
// sync; nothing in the outbox is lost, and it syncs after Login. A device
// revoked by an admin can never sync again under its replica ID; its
// unsynced ops remain readable through PendingOps.
//
// # Errors
//
// Writes refused before storing return a *ValidationError (ErrInvalid);
// a write over the server's size limits also matches ErrTooLarge (a
// *LimitError says which limit). A failure to reach the server (no
// network, refused, reset or cut connection, timeout, 502/503/504) matches
// ErrUnavailable, so an app can tell "offline" from "refused".
// Server errors arrive as an *api.Problem, decoded from problem+json or
// problem+msgpack, wrapped with context: branch with errors.As on its Code,
// or with errors.Is on ErrSignedOut, ErrRefused, ErrNotFound, ErrDeleted,
// ErrClosed. Status().LastErrorCode holds the code of the last failed sync.
//
// # Notifications
//
// Subscribe delivers Events naming the records changed by local writes and
// by pulls. Delivery never blocks writes or sync: each subscriber has a
// pending set and one goroutine; while the subscriber has not taken its last
// event, further changes coalesce into the next one.
//
// # Code layout
//
// The sync machinery is split by job: outbox.go (write groups, sealing,
// picking the changes for a request, rejections), outboxentry.go (how an
// outbox entry is stored: packed blocks from layout 3), pushchange.go (a
// loaded change's stored blocks pushed as they are, its ops decoded only
// where needed), reply.go (a pure step,
// planReply, that turns a reply and what it reads of local state into a
// replyWrites value, and a thin step, storeReply, that writes that value in
// one transaction), transport.go (one HTTP round trip, problem details,
// token refresh), clock.go (the corrected wall clock) and sync.go (the loop
// tying them together and the request sizes). New reply rules belong in the
// pure step, where they are tested without a store or a server.
//
// # STORAGE
//
// Keys in the local Badger store (all values encrypted at rest):
//
//	m/layout             layout version, uint32 BE (CurrentLayout, now 3; Open migrates older ones)
//	m/replica            16-byte replica ID, written once
//	m/nextseq            last change seq assigned (uint64 big-endian)
//	m/nextop             last outbox group index assigned (uint64 BE)
//	m/cursor             opaque pull cursor from the last stored reply
//	m/tokens             msgpack {access, refresh, user}
//	m/clock              last HLC timestamp issued or adopted (uint64 BE)
//	m/offset             clock offset in nanoseconds (int64 BE)
//	m/lastsuccess        wall time of the last stored reply (Unix ms)
//	m/packedpush         1 if the last stored reply said the server reads packed pushes (7p), else 0
//	m/zstdpush           1 if the last stored reply's Accept-Encoding named zstd, else 0; absent
//	                     (a replica whose last reply an older build stored) reads as 0
//	m/pipelines          1 if the last stored reply said the server orders pipelined pushes (7o),
//	                     else 0; absent: nothing known of the server (the first request of a big
//	                     push is then small, pipeline.go)
//	r/<team>\x00<collection>\x00<id>   crdt.MarshalRecord of the record (crdt state
//	                     encoding 2 from layout 2; layouts 0 and 1 held encoding 1,
//	                     rewritten by Open's migration)
//	o/<index uint64 BE>  one write's ops not yet sealed (seq 0)
//	c/<seq uint64 BE>    a sealed change awaiting acknowledgement
//	                     (both: a packed outbox entry from layout 3, see
//	                     outboxentry.go; layouts 2 and older wrote msgpack
//	                     api.Change, still read)
//	q/<seq BE><index uint32 BE>  a Rejection (msgpack)
//	m/scope              last scope applied (msgpack api.Scope)
//	m/wiped              present once the replica has wiped itself
//	m/wipereport         access token to report the wipe with, until reported
//	b/m/<team>\x00<sha256>            an attached file held here (msgpack: size, type,
//	                     records, uploaded, acknowledged offset); present once its bytes are all stored
//	b/d/<team>\x00<sha256>\x00<u32 BE>  chunk i of the file's bytes, ChunkSize (256 KiB) each
//
// # Attachments
//
// Attach stores a file (JPEG, PNG, HEIC or PDF, sniffed) in the replica and
// writes its metadata (schema.Attachment) to the record, which syncs at
// once. UploadAttachments, also run by the background loop after each
// successful sync, sends the bytes resumably (docs/PROTOCOL.md §20):
// after a cut it asks the server what it holds and continues from there.
// Status counts uploads and bytes pending. FetchAttachment downloads a file
// on demand, under a size cap, keeping it only if its size and SHA-256
// match; AttachmentStatus says pending upload, local or not downloaded.
// Files whose records leave the replica (erased, purged, out of scope) are
// deleted after each sync (PurgeAttachments).
package client
