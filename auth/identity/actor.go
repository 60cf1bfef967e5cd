package identity

import (
	"context"
	"slices"
)

// Actor is who makes a request: recorded in the audit trail, and for an
// admin the scope of the change (see the admin model in auth's package
// doc). The server puts one in every authenticated request's context with
// WithActor; the command line uses ServiceActor.
type Actor struct {
	UserID string
	Name   string
	Role   string
	Device string
	// Teams are the actor's teams as they stand now (narrowed claims).
	Teams []string
	// Service marks the operator of the data directory (the command
	// line): unscoped.
	Service bool
}

// ServiceActor is the operator acting on the data directory with the
// doorstep command line: a service admin, not scoped to teams.
func ServiceActor(name string) Actor {
	return Actor{Name: name, Role: "service", Service: true}
}

// ID is the actor's ID as the audit trail records it: the user ID,
// "service" for the command line, "system" for an internal call.
func (a Actor) ID() string {
	switch {
	case a.UserID != "":
		return a.UserID
	case a.Service:
		return "service"
	}
	return "system"
}

// Scoped reports whether a's changes are limited to a's teams: a user's
// are; the service admin's and an internal call's (the zero Actor) are
// not.
func (a Actor) Scoped() bool { return a.UserID != "" && !a.Service }

// SeesTeam reports whether team is within a's scope.
func (a Actor) SeesTeam(team string) bool { return !a.Scoped() || slices.Contains(a.Teams, team) }

// Sees reports whether a may see u: u shares one of a's teams.
func (a Actor) Sees(u User) bool {
	ts := u.ScopeTeams()
	return !a.Scoped() || len(ts) == 0 || slices.ContainsFunc(ts, a.SeesTeam)
}

// Covers reports whether a may manage u: every team of u is one of a's.
func (a Actor) Covers(u User) bool {
	if !a.Scoped() {
		return true
	}
	for _, t := range u.ScopeTeams() {
		if !a.SeesTeam(t) {
			return false
		}
	}
	return true
}

type actorKey struct{}

// WithActor returns ctx carrying a.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor ctx carries; without one, the zero Actor
// (recorded as "system" and, for scoping, unscoped like the command line:
// only the server's requests carry scoped actors).
func ActorFrom(ctx context.Context) Actor {
	a, _ := ctx.Value(actorKey{}).(Actor)
	return a
}
