package api

import "github.com/doorstep-health/doorstep/crdt"

// ProtocolVersion is the sync protocol version this package describes. A
// request carrying another version is refused with CodeUnsupportedProtocol.
const ProtocolVersion = 1

// ContentType is the media type of sync request and response bodies.
const ContentType = "application/msgpack"

// SyncRequest is the body of POST /v1/sync: in one round trip a device
// pushes its pending changes and asks for what it has not yet pulled.
type SyncRequest struct {
	// Protocol must equal ProtocolVersion.
	Protocol int `msgpack:"v"`
	// Replica is the device's replica ID; it must match the access token's.
	Replica crdt.ReplicaID `msgpack:"d"`
	// Clock is the device's current HLC reading.
	Clock crdt.Timestamp `msgpack:"h"`
	// Schema is the schema version the device validates with.
	Schema int `msgpack:"s,omitempty"`
	// Changes are the device's unacknowledged changes, in seq order.
	Changes []Change `msgpack:"c,omitempty"`
	// Cursor is the opaque cursor from the last response; empty on a new
	// device, which then bootstraps from a snapshot.
	Cursor []byte `msgpack:"k,omitempty"`
	// PullLimit caps the items in the pulled page; 0 means the server's
	// default. The server also caps pages by bytes.
	PullLimit int `msgpack:"l,omitempty"`
	// Wiped reports that the device has carried out a remote wipe the
	// server ordered (SyncResponse.Wipe): its records, outbox and
	// rejections are gone. Sent once, by a revoked device, so that the
	// admin sees the wipe confirmed.
	Wiped bool `msgpack:"w,omitempty"`
	// Epoch is the server epoch the device last synced in (from
	// SyncResponse.Epoch); empty on a device that never synced or an SDK
	// that predates epochs. When it differs from the server's, the server
	// applies no Changes and pulls nothing: the device must first re-send
	// its record states (Restate), see docs/PROTOCOL.md "Epochs".
	Epoch []byte `msgpack:"e,omitempty"`
	// Restate carries the device's record states (crdt.MarshalRecord
	// form) after it learnt of a new epoch, in pages. The server merges
	// them (idempotently) and forwards what it lacked to other devices.
	Restate []crdt.RecordBytes `msgpack:"2r,omitempty"`
	// RestateDone marks the last Restate request: the server then raises
	// the replica's high-water seq to Rebase and the device adopts the new
	// epoch.
	RestateDone bool `msgpack:"2f,omitempty"`
	// Rebase is the highest seq the server had acknowledged to this
	// device (its lowest unacknowledged seq minus one); sent with
	// RestateDone.
	Rebase uint64 `msgpack:"2h,omitempty"`
	// PullEncoding asks for a pull encoding other than the default
	// (SyncResponse.Changes): PullEncodingPacked asks for
	// SyncResponse.Packed. A server that does not know the value, or
	// predates the field, answers in the default encoding, so a device
	// must read both; see docs/PROTOCOL.md "Packed pull encoding".
	PullEncoding int `msgpack:"7e,omitempty"`
	// Packed holds the changes in the packed form in place of Changes:
	// blocks (PackPush) of consecutive changes, in seq order, each within
	// the server's bound on one bin (64 KiB by default; MaxPackedBlock).
	// Consecutive entries of one seq are one change whose ops continue
	// from one block to the next.
	// Send it only to a server that said it reads it
	// (SyncResponse.ReadsPacked): an older one would ignore it and apply
	// nothing.
	Packed [][]byte `msgpack:"7q,omitempty"`
	// PushOnly asks the server to push Changes and pull nothing: the
	// reply carries no page, its Cursor is the request's and its More is
	// false, and the device stores no cursor from it. A device sends it
	// only in a pipelined request (one sent with the HeaderAfterSeq
	// header while an earlier request is still in flight) to a server
	// that said it orders pipelined pushes (SyncResponse.Pipelines); see
	// docs/PROTOCOL.md "Pipelined pushes".
	PushOnly bool `msgpack:"7j,omitempty"`

	// unpacked is Changes as UnpackPacked set it, every op validated
	// (see OpsValidated); not on the wire.
	unpacked []Change
}

// HeaderAfterSeq is the HTTP header of a pipelined sync request: the last
// seq the device pushed in the request it sent before this one, still in
// flight. A server that orders pipelined pushes (SyncResponse.Pipelines)
// waits, bounded in time and before reading the body, until that seq is
// decided (applied, or its request answered or gone) before it pushes
// this request's changes, so that the two are applied in the order sent
// rather than the second refused with CodeSeqGap. A server that predates
// it ignores the header: the request is then handled as any other. See
// docs/PROTOCOL.md "Pipelined pushes".
const HeaderAfterSeq = "Doorstep-After-Seq"

// Change is a group of ops a replica made, numbered 1, 2, 3 … per replica.
// The server applies each change exactly once and atomically.
type Change struct {
	Seq uint64    `msgpack:"s"`
	Ops []crdt.Op `msgpack:"o"`
}

// SyncResponse is the reply to a SyncRequest.
type SyncResponse struct {
	Protocol int `msgpack:"v"`
	// Clock is the server's HLC; the device updates its clock from it.
	Clock crdt.Timestamp `msgpack:"h"`
	// Results has one entry per pushed change, in request order.
	Results []ChangeResult `msgpack:"r,omitempty"`
	// Snapshot holds current record states while the device bootstraps,
	// each in the canonical form crdt.MarshalRecord writes (a server copies
	// stored states as they are). Decode each with its Record method, which
	// bounds and validates the bytes.
	Snapshot []crdt.RecordBytes `msgpack:"b,omitempty"`
	// Changes holds log entries after the request's cursor.
	Changes []PulledChange `msgpack:"c,omitempty"`
	// Purged names records erased on the server; the device must delete
	// its copies.
	Purged []RecordRef `msgpack:"x,omitempty"`
	// Cursor is the cursor to send next time.
	Cursor []byte `msgpack:"k"`
	// More reports that another pull would return more right away.
	More bool `msgpack:"m,omitempty"`
	// Scope is the device's scope as the server sees it at this sync: the
	// teams of its user, looked up now. The device drops every record (and
	// its rejections) of a team outside it. Always set by this server; nil
	// only from an older server, which says nothing about scope.
	Scope *Scope `msgpack:"s,omitempty"`
	// Wipe orders the device to wipe itself: an admin revoked it and asked
	// for a remote wipe. Such a reply carries nothing else but the clock;
	// the device deletes every record, outbox entry, rejection and token,
	// then confirms with SyncRequest.Wiped.
	Wipe bool `msgpack:"w,omitempty"`
	// Replace holds the current states of records for which an op of this
	// push was refused by a clinical-conflict rule (CodeResolveForbidden,
	// CodeConflictInReview). The device applied that op locally when it
	// was written; it must replace (not merge) its copy of each record with
	// the state here and re-apply its own ops still in its outbox, so that
	// it shows the conflict the server kept rather than its refused write.
	// Encoded as Snapshot is.
	Replace []crdt.RecordBytes `msgpack:"1a,omitempty"`
	// Epoch is the server's current epoch ID (16 bytes). It changes when
	// the server is restored from a backup; see docs/PROTOCOL.md "Epochs".
	Epoch []byte `msgpack:"e,omitempty"`
	// Restated counts the record states of a Restate request that added
	// something the server lacked.
	Restated int `msgpack:"2n,omitempty"`
	// HighWater is the highest seq of the requesting replica the server
	// has applied, after this request's push (0 if none, and from a server
	// that predates it). A device whose earlier request got no reply learns
	// from it which of its changes the server already holds, and sends
	// those again only as empty stubs (seq, no ops), which the server
	// acknowledges as duplicates; see docs/PROTOCOL.md "High-water".
	HighWater uint64 `msgpack:"7h,omitempty"`
	// Packed holds the log entries after the request's cursor in the
	// packed pull encoding (PackChanges), in place of Changes, when the
	// request asked for it (SyncRequest.PullEncoding) and there were any.
	// Decode with UnpackChanges, which bounds and validates.
	Packed []byte `msgpack:"7c,omitempty"`
	// ReadsPacked says that this server reads pushes in the packed form
	// (SyncRequest.Packed). Sent in every reply by a server that does.
	ReadsPacked bool `msgpack:"7p,omitempty"`
	// Pipelines says that this server orders pipelined pushes: it honours
	// the HeaderAfterSeq header and SyncRequest.PushOnly. Sent in every
	// reply by a server that does; a device pipelines only after it has
	// seen it. See docs/PROTOCOL.md "Pipelined pushes".
	Pipelines bool `msgpack:"7o,omitempty"`
}

// Scope is the set of teams a device may hold records of.
type Scope struct {
	// Teams are the team IDs, sorted; empty when the user belongs to none.
	Teams []string `msgpack:"t"`
}

// ChangeStatus is the outcome of one pushed change.
type ChangeStatus uint8

// Change outcomes.
const (
	// ChangeApplied: the change is durable on the server. Ops listed in
	// ChangeResult.Ops were quarantined or refused rather than merged; the
	// device must still treat the change as acknowledged.
	ChangeApplied ChangeStatus = 1
	// ChangeDuplicate: the server had already applied this seq; the device
	// treats it as acknowledged.
	ChangeDuplicate ChangeStatus = 2
	// ChangeRefused: nothing of the change was applied; Code says why (for
	// CodeSeqGap, Expected says which seq the server needs next). The device
	// keeps the change.
	ChangeRefused ChangeStatus = 3
)

// ChangeResult reports what the server did with one pushed change.
type ChangeResult struct {
	Seq      uint64       `msgpack:"s"`
	Status   ChangeStatus `msgpack:"t"`
	Code     Code         `msgpack:"e,omitempty"`
	Expected uint64       `msgpack:"x,omitempty"`
	// Ops lists only the ops that were not merged, by index in the change.
	Ops []OpResult `msgpack:"o,omitempty"`
}

// OpResult reports one op that was not merged: kept in the server's
// quarantine (schema or clock problems, for an admin to review) or refused
// (scope, unknown pred, erased record).
type OpResult struct {
	Index       int    `msgpack:"i"`
	Code        Code   `msgpack:"e"`
	Detail      string `msgpack:"d,omitempty"`
	Quarantined bool   `msgpack:"q,omitempty"`
}

// PulledChange is one accepted change as other devices receive it. Author
// is the user ID the server took from the pusher's token. Ops is the
// change's ops as one encoded msgpack array, on the wire exactly as a
// []crdt.Op; devices decode it with Ops.Ops, which bounds and validates.
type PulledChange struct {
	Author string        `msgpack:"a"`
	Ops    crdt.OpsBytes `msgpack:"o"`
}

// RecordRef names one record.
type RecordRef struct {
	Team       string `msgpack:"t" json:"team"`
	Collection string `msgpack:"c" json:"collection"`
	ID         string `msgpack:"r" json:"id"`
}
