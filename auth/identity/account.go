package identity

import "time"

// Team is a team: the scope of records and of the users who work on them.
type Team struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// User is a user account as callers see it (never the password hash).
type User struct {
	ID       string    `json:"id"`
	Username string    `json:"username"`
	Name     string    `json:"name"`
	Role     string    `json:"role"`
	Teams    []string  `json:"teams"`
	Created  time.Time `json:"created"`
	// FormerTeams are the teams a user removed from every team last had:
	// they decide which admins may still see and manage the user.
	FormerTeams []string `json:"former_teams,omitempty"`
	// Disabled users cannot log in, refresh or use their access tokens.
	Disabled   bool      `json:"disabled"`
	DisabledAt time.Time `json:"disabled_at,omitzero"`
	// Deleted users (leavers) are kept as a tombstone so that the records
	// they wrote stay attributed; their username is free again and their
	// devices are revoked.
	Deleted   bool      `json:"deleted,omitempty"`
	DeletedAt time.Time `json:"deleted_at,omitzero"`
	// Demo users were seeded by --demo and log in only in demo mode.
	Demo bool `json:"demo,omitempty"`
	// PasswordChanged is when the password was last set.
	PasswordChanged time.Time `json:"password_changed,omitzero"`
}

// ScopeTeams are the teams that decide who may see and manage u: its
// teams, or, for a user in none, the teams it last had.
func (u *User) ScopeTeams() []string {
	if len(u.Teams) > 0 {
		return u.Teams
	}
	return u.FormerTeams
}

// Device is a replica registered to a user.
type Device struct {
	ID            string    `json:"id"` // replica ID, 32 hex digits
	Name          string    `json:"name"`
	User          string    `json:"user"`
	Created       time.Time `json:"created"`
	LastSeen      time.Time `json:"last_seen"` // last login or refresh
	Revoked       bool      `json:"revoked"`
	RevokedAt     time.Time `json:"revoked_at,omitzero"`
	RevokedReason string    `json:"revoked_reason,omitempty"` // "admin", "refresh_reuse" or "user_deleted"
	Gen           uint64    `json:"gen"`                      // login generation
	// Remote wipe (see auth's RevokeAndWipe): when it was asked for, and
	// when the device reported it done.
	WipeRequestedAt time.Time `json:"wipe_requested_at,omitzero"`
	WipeConfirmedAt time.Time `json:"wipe_confirmed_at,omitzero"`
}
