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

// The rules are methods of identity.Actor (Scoped, SeesTeam, Sees,
// Covers), so that the console shares them; the checks below turn them
// into this package's errors.

// checkSees returns ErrNotFound, as for an unknown user, when a may not
// see u.
func checkSees(a Actor, u User) error {
	if !a.Sees(u) {
		return fmt.Errorf("%w: user %q", ErrNotFound, u.ID)
	}
	return nil
}

// checkCovers returns ErrNotFound when a may not see u and ErrForbidden
// when a sees but may not manage u.
func checkCovers(a Actor, u User) error {
	if err := checkSees(a, u); err != nil {
		return err
	}
	if !a.Covers(u) {
		return fmt.Errorf("%w: user %q is also in teams outside yours", ErrForbidden, u.ID)
	}
	return nil
}

// checkTeamChange refuses a change of u's teams from old to new that adds
// or removes a team outside a's.
func checkTeamChange(a Actor, old, new []string) error {
	if !a.Scoped() {
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
