package api

import "time"

// AuditEntry is one line of the audit trail: who did what, to what, when.
// Detail holds small strings only (IDs, counts, codes), never clinical
// values or passwords.
type AuditEntry struct {
	// Seq is the entry's position in the trail, assigned when stored: it
	// increases with every entry (gaps are possible after a failed write).
	Seq uint64 `json:"seq"`
	// Time is when the action happened; the clock's now when left zero.
	Time time.Time `json:"time"`
	// ActorID, ActorName and ActorRole identify who acted: a user ID, their
	// display name and role, or for the operator's command line ActorID
	// "service", and "system" for the server itself.
	ActorID   string `json:"actor_id"`
	ActorName string `json:"actor_name,omitempty"`
	ActorRole string `json:"actor_role,omitempty"`
	// Device is the replica ID the actor used, if any.
	Device string `json:"device,omitempty"`
	// Action names what was done, e.g. "user.disable" or "record.read":
	// lower case letters, digits, '.' and '_', up to 64 bytes.
	Action string `json:"action"`
	// Team is the team the action concerns; Teams lists further teams it
	// concerns (a user in two teams). An admin reads an entry when one of
	// them is one of the admin's teams.
	Team  string   `json:"team,omitempty"`
	Teams []string `json:"teams,omitempty"`
	// TargetKind and TargetID name the object acted on: "user" and a user
	// ID, "device" and a replica ID, "record" and collection/id, ...
	TargetKind string `json:"target_kind,omitempty"`
	TargetID   string `json:"target_id,omitempty"`
	// Detail is a small map of further facts: op IDs, counts, codes, a
	// reason. At most 32 keys of up to 64 bytes; values are cut to 1,024
	// bytes.
	Detail map[string]string `json:"detail,omitempty"`
}
