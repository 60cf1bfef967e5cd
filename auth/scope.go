package auth

import (
	"fmt"
	"slices"
)

// The admin model: every admin is a team admin. An admin's rights cover
// the teams on their account (as narrowed on each request), never others:
//
//   - An admin sees a user (lists them, their devices) who shares one of
//     the admin's teams. A user with no teams is seen through the teams
//     they last had (User.FormerTeams); one that never had a team by
//     every admin.
//   - An admin manages a user (role, name, password, disable, enable,
//     delete) only when every team of the user is one of the admin's: a
//     wigan admin cannot take over an account that also reaches ashton.
//   - An admin adds users to, and removes them from, the admin's own teams
//     only; the user's other teams stay as they are.
//   - An admin revokes a device of a user the admin sees.
//   - An admin creates users only in the admin's teams (at least one), and
//     becomes a member of a team the admin creates.
//
// The service admin is the operator of the data directory: the doorstep
// command line (ServiceActor) is unscoped. A call whose context carries no
// actor is internal and unscoped too; the server gives every
// authenticated request an actor.

// scoped reports whether a's changes are limited to a's teams.
func (a Actor) scoped() bool { return a.UserID != "" && !a.Service }

// scopeTeams are the teams that decide who may see and manage u.
func (u *User) scopeTeams() []string {
	if len(u.Teams) > 0 {
		return u.Teams
	}
	return u.FormerTeams
}

// SeesTeam reports whether team is within a's scope.
func (a Actor) SeesTeam(team string) bool { return !a.scoped() || slices.Contains(a.Teams, team) }

// Sees reports whether a may see u: u shares one of a's teams.
func (a Actor) Sees(u User) bool {
	ts := u.scopeTeams()
	return !a.scoped() || len(ts) == 0 || slices.ContainsFunc(ts, a.SeesTeam)
}

// Covers reports whether a may manage u: every team of u is one of a's.
func (a Actor) Covers(u User) bool {
	if !a.scoped() {
		return true
	}
	for _, t := range u.scopeTeams() {
		if !a.SeesTeam(t) {
			return false
		}
	}
	return true
}

// checkSees returns ErrNotFound, as for an unknown user, when a may not
// see u.
func (a Actor) checkSees(u User) error {
	if !a.Sees(u) {
		return fmt.Errorf("%w: user %q", ErrNotFound, u.ID)
	}
	return nil
}

// checkCovers returns ErrNotFound when a may not see u and ErrForbidden
// when a sees but may not manage u.
func (a Actor) checkCovers(u User) error {
	if err := a.checkSees(u); err != nil {
		return err
	}
	if !a.Covers(u) {
		return fmt.Errorf("%w: user %q is also in teams outside yours", ErrForbidden, u.ID)
	}
	return nil
}

// checkTeamChange refuses a change of u's teams from old to new that adds
// or removes a team outside a's.
func (a Actor) checkTeamChange(old, new []string) error {
	if !a.scoped() {
		return nil
	}
	for _, t := range old {
		if !slices.Contains(new, t) && !a.SeesTeam(t) {
			return fmt.Errorf("%w: cannot remove a user from team %q, which is not yours", ErrForbidden, t)
		}
	}
	for _, t := range new {
		if !slices.Contains(old, t) && !a.SeesTeam(t) {
			return fmt.Errorf("%w: cannot add a user to team %q, which is not yours", ErrForbidden, t)
		}
	}
	return nil
}
