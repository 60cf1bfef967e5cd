package web

import (
	"context"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth/identity"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/sync/review"
)

// Engine is what the console asks of the sync engine: the review queries,
// resolve, and the admin quarantine. *sync.Engine satisfies it (the server
// wires it in); the console imports only the engine's vocabulary (package
// review), so it never reaches the store.
type Engine interface {
	// Record is one of the caller's records (review.ErrNotFound when it
	// does not exist or is outside the caller's teams).
	Record(ctx context.Context, c review.Caller, ref api.RecordRef) (*crdt.Record, error)
	// History is a record's merged ops, attributed.
	History(ctx context.Context, c review.Caller, ref api.RecordRef) ([]review.HistoryEntry, error)
	// Linked are the team's records whose person_id is the person ref
	// names (contacts, assessments, needs...).
	Linked(ctx context.Context, c review.Caller, ref api.RecordRef) ([]api.RecordRef, error)
	// Conflicts are the team's records with a field in conflict.
	Conflicts(ctx context.Context, c review.Caller, team string) ([]api.RecordRef, error)
	// FieldConflict is a register field's concurrent values, attributed.
	FieldConflict(ctx context.Context, c review.Caller, ref api.RecordRef, field string) (*review.FieldConflict, error)
	// ResolveWithReason settles a field with value, overwriting every
	// concurrent value, and records the reason (at most
	// review.MaxReasonLen bytes).
	ResolveWithReason(ctx context.Context, c review.Caller, ref api.RecordRef, field string, value msgpack.RawMessage, reason string) (*crdt.Record, error)
	// Changes is a page of the team's records changed since f.Since, and
	// the next page's cursor ("" at the end).
	Changes(ctx context.Context, c review.Caller, team string, f review.ChangedFilter) ([]review.ChangedEntry, string, error)
	// CountChangedSince counts the team's records changed since since, up
	// to upTo (more reports that there are more).
	CountChangedSince(ctx context.Context, c review.Caller, team string, since time.Time, upTo int) (n int, more bool, err error)
	// Search finds people of the team by name, NHS number or postcode, at
	// most limit (review.MaxSearchResults).
	Search(ctx context.Context, c review.Caller, team, q string, limit int) ([]*crdt.Record, error)
	// CollectionRecords are the team's records of one collection, deleted
	// ones included, at most limit (the input of outcomes).
	CollectionRecords(ctx context.Context, c review.Caller, team, collection string, limit int) ([]*crdt.Record, error)
	// TeamVersion is the team's last log position: it moves with every
	// change accepted for the team, so a view of its records may be cached
	// until it does.
	TeamVersion(ctx context.Context, c review.Caller, team string) (uint64, error)
	// TouchedSince are the records of one collection of the team that log
	// entries after position after (a TeamVersion) touched or erased;
	// rebuild, with refs nil, when there are more than max: the view is
	// then rebuilt from scratch.
	TouchedSince(ctx context.Context, c review.Caller, team string, after uint64, collection string, max int) (refs []api.RecordRef, rebuild bool, err error)
	// TeamQuarantine is the quarantine of these teams, at most limit.
	TeamQuarantine(ctx context.Context, teams []string, limit int) ([]review.QuarantinedOp, error)
	// QuarantinedByID is one quarantine entry.
	QuarantinedByID(ctx context.Context, id uint64) (review.QuarantinedOp, error)
	// Reapply merges a reapplicable quarantined op and drops the entry.
	Reapply(ctx context.Context, id uint64) error
	// Dismiss drops a quarantine entry.
	Dismiss(ctx context.Context, id uint64) (review.QuarantinedOp, error)
	// ServerReplica is the server's own replica ID, which authors the
	// console's resolutions.
	ServerReplica() crdt.ReplicaID
}

// Auth is what the console asks of the auth service: sign-in as a device,
// token checks, the accounts and devices admins see, revocation and the
// audit trail. *auth.Service satisfies it (the server wires it in); the
// console imports only auth's vocabulary (package identity), so it never
// reaches the store.
type Auth interface {
	// Login signs a user in as a device and returns its tokens.
	Login(ctx context.Context, username, password, deviceID, deviceName string) (*api.TokenResponse, error)
	// Verify checks an access token's signature and claims.
	Verify(token string) (*identity.Claims, error)
	// CheckDevice refuses the claims of a revoked or superseded device or
	// a disabled account.
	CheckDevice(ctx context.Context, c *identity.Claims) error
	// Narrow is the user's role and teams as they stand now, within the
	// token's.
	Narrow(ctx context.Context, c *identity.Claims) (role string, teams []string, err error)
	// User is one account; Users lists the accounts, by ID.
	User(ctx context.Context, id string) (identity.User, error)
	Users(ctx context.Context) ([]identity.User, error)
	// Teams lists the teams, by ID.
	Teams(ctx context.Context) ([]identity.Team, error)
	// Device is one device; Devices a user's devices.
	Device(ctx context.Context, replica crdt.ReplicaID) (identity.Device, error)
	Devices(ctx context.Context, userID string) ([]identity.Device, error)
	// RevokeDevice revokes a device.
	RevokeDevice(ctx context.Context, replica crdt.ReplicaID) (identity.Device, error)
	// Audit appends an entry to the audit trail, durably; the actor is
	// taken from the context (identity.WithActor) when the entry names
	// none.
	Audit(ctx context.Context, e api.AuditEntry) error
}
