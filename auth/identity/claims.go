package identity

import (
	"slices"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/golang-jwt/jwt/v5"
)

// Claims are the claims of a Doorstep access token. Subject is the user ID.
type Claims struct {
	// Role is the user's role when the token was issued (api.Role*).
	Role string `json:"role"`
	// Teams are the teams the user belonged to when the token was issued.
	Teams []string `json:"teams"`
	// Device is the replica ID of the device the token is bound to, as 32
	// hex digits.
	Device string `json:"device"`
	// Gen is the device's login generation; a later login supersedes tokens
	// of earlier generations.
	Gen uint64 `json:"gen"`
	jwt.RegisteredClaims
}

// Replica returns the device replica ID the token is bound to (Device,
// parsed). Verified claims always carry a valid one; for others it is the
// zero ID when Device does not parse.
func (c *Claims) Replica() crdt.ReplicaID {
	r, err := crdt.ParseReplicaID(c.Device)
	if err != nil {
		return crdt.ReplicaID{}
	}
	return r
}

// UserID returns the token's subject, the user ID.
func (c *Claims) UserID() string { return c.Subject }

// InTeam reports whether team is one of the token's teams.
func (c *Claims) InTeam(team string) bool { return slices.Contains(c.Teams, team) }

// ValidRole reports whether role is one of the roles Doorstep knows.
func ValidRole(role string) bool {
	switch role {
	case api.RoleLinkWorker, api.RoleCoordinator, api.RoleAdmin:
		return true
	}
	return false
}

// RoleAtLeast reports whether role has the rights of min: admin ⊇
// coordinator ⊇ link_worker.
func RoleAtLeast(role, min string) bool {
	rank := func(r string) int {
		switch r {
		case api.RoleLinkWorker:
			return 1
		case api.RoleCoordinator:
			return 2
		case api.RoleAdmin:
			return 3
		}
		return 0
	}
	return rank(role) > 0 && rank(role) >= rank(min)
}
