package review

import (
	"errors"
	"slices"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// Sentinel errors of the review queries (package sync re-exports each
// under the same name). Errors the engine returns wrap one of them where a
// caller may branch on it (with errors.Is).
var (
	// ErrNotFound: no such record or quarantine entry.
	ErrNotFound = errors.New("sync: not found")
	// ErrForbidden: the record or team is outside the caller's teams.
	ErrForbidden = errors.New("sync: forbidden")
	// ErrBadCursor: a pull or changed-since cursor that this server did
	// not issue.
	ErrBadCursor = errors.New("sync: malformed cursor")
	// ErrInvalid: a resolve or re-apply whose op is not valid (wrong field
	// type, schema violation, still too far in the future).
	ErrInvalid = errors.New("sync: invalid op")
)

// MaxSearchResults bounds one search.
const MaxSearchResults = 50

// MaxReasonLen bounds a resolution's reason, in bytes.
const MaxReasonLen = 500

// Caller is who is pushing or pulling, as the server authenticated it.
type Caller struct {
	User    string         // user ID from the access token; becomes the author of every op pushed
	Replica crdt.ReplicaID // device replica ID from the token; pushed op IDs must name it
	Teams   []string       // teams the user belongs to: the scope of every read and write
	// Role is the user's current role (api.Role*): who may settle a
	// clinical conflict depends on it (see sync.ClinicalRules). Empty
	// settles no clinical conflict.
	Role string
}

// InTeam reports whether team is one of the caller's teams (never the
// empty team).
func (c *Caller) InTeam(team string) bool { return team != "" && slices.Contains(c.Teams, team) }

// ChangedFilter selects a page of changed-since entries (sync's
// Engine.Changes).
type ChangedFilter struct {
	Since      time.Time // server receive time; ignored when Cursor is set
	Cursor     string    // the Next of the previous page
	Collection string    // only this collection, if set
	Author     string    // only records whose last change is by this user ID, if set
	Limit      int       // 0 means 50; at most sync.MaxPullLimit
}

// ChangedEntry is one record of a changed-since page at its last change:
// who made it, from which device, the device's time for it (the latest op
// of that change on this record) and when the server received it.
type ChangedEntry struct {
	Ref        api.RecordRef
	Author     string
	Device     crdt.ReplicaID
	DeviceTime time.Time
	Received   time.Time
	Reason     string // a resolution's reason
}

// HistoryEntry is one merged op of a record with who pushed it and when the
// server received it. The op's ID names the device (replica) and its HLC.
type HistoryEntry struct {
	Op       crdt.Op
	Author   string    // user ID
	Received time.Time // server receive time
	Reason   string    // a resolution's reason, if its author gave one
}

// ConflictValue is one concurrent value of a field in conflict, with who
// wrote it and what they had seen.
type ConflictValue struct {
	Entry    crdt.Entry // op ID (device, HLC time) and value
	Author   string     // user ID
	Received time.Time  // server receive time
	// Offline reports whether the op reached the server more than
	// sync.OfflineAfter after its device time.
	Offline bool
	// Base is what the author had seen: the entries the op overwrote (its
	// pred), as far as the history still has them.
	Base []BaseValue
}

// BaseValue is a value a concurrent write overwrote.
type BaseValue struct {
	Entry  crdt.Entry
	Author string
}

// FieldConflict is one register field of a record with its concurrent
// values; Values is empty when the field is not in conflict (any more).
type FieldConflict struct {
	Record *crdt.Record
	Field  string
	Values []ConflictValue
}

// QuarantinedOp is an op the engine did not merge. Reapplicable ops failed
// the schema or the clock-skew check and may be re-applied by an admin;
// the others were refused (scope, unknown pred, malformed) and are kept so
// that nothing a device sent vanishes.
type QuarantinedOp struct {
	ID           uint64
	Op           crdt.Op
	Author       string
	Replica      crdt.ReplicaID // pushing device
	Seq          uint64         // seq of the change that carried it
	Code         api.Code
	Reason       string
	Received     time.Time
	Reapplicable bool
	// Count is how many ops the entry stands for: 1 for a reapplicable op
	// (stored whole), and for a summary of refused ops (Op carrying the
	// first one's ID and names, no value) how many of the change's ops
	// were refused with Code; Bytes is the value bytes they carried.
	Count int
	Bytes int
	// Expires is when the entry is dropped (sync.Bounds.QuarantineTTL after
	// it was received).
	Expires time.Time
}
