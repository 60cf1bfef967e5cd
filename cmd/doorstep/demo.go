package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/demo"
	"github.com/doorstep-health/doorstep/server"
	dsync "github.com/doorstep-health/doorstep/sync"
)

// seedDemo loads the demo dataset into a server whose auth store has no
// teams yet: teams, users (password demo.DemoPassword), their devices, and
// every push through the sync engine as the pushing user. It returns the
// number of changes pushed, or 0 if the store already had teams.
func seedDemo(ctx context.Context, srv *server.Server, seed int64, now time.Time) (int, error) {
	a, eng := srv.Auth(), srv.Engine()
	existing, err := a.Teams(ctx)
	if err != nil {
		return 0, err
	}
	if len(existing) > 0 {
		return 0, nil
	}
	ds := demo.Build(seed, now)
	for _, t := range ds.Teams {
		if _, err := a.CreateTeam(ctx, t.ID, t.Name); err != nil {
			return 0, err
		}
	}
	callers := map[string]dsync.Caller{}
	ids := map[string]string{}
	for _, u := range ds.Users {
		nu, err := a.CreateUser(ctx, auth.NewUser{Username: u.Username, Name: u.Name, Password: u.Password, Role: u.Role, Teams: u.Teams})
		if err != nil {
			return 0, err
		}
		ids[u.Username] = nu.ID
	}
	for _, d := range ds.Devices {
		// A login registers the device to its user, as the tablet's first
		// login would.
		if _, err := a.Login(ctx, d.Username, demo.DemoPassword, d.Replica.String(), d.Name); err != nil {
			return 0, fmt.Errorf("register device of %s: %w", d.Username, err)
		}
		u, err := a.User(ctx, ids[d.Username])
		if err != nil {
			return 0, err
		}
		callers[d.Replica.String()] = dsync.Caller{User: u.ID, Replica: d.Replica, Teams: u.Teams, Role: u.Role}
	}
	// Marked as demo users, so that their published password is refused
	// by a server run without --demo.
	var demoIDs []string
	for _, id := range ids {
		demoIDs = append(demoIDs, id)
	}
	if err := a.MarkDemo(ctx, demoIDs...); err != nil {
		return 0, err
	}
	for i, p := range ds.Pushes {
		c, ok := callers[p.Device.String()]
		if !ok {
			return i, fmt.Errorf("push %d: unknown device %s", i, p.Device)
		}
		res, err := eng.Push(ctx, c, []api.Change{p.Change})
		if err != nil {
			return i, fmt.Errorf("push %d: %w", i, err)
		}
		if len(res) != 1 || res[0].Status == api.ChangeRefused || len(res[0].Ops) > 0 {
			return i, fmt.Errorf("push %d (%s seq %d) not applied cleanly: %+v", i, p.Username, p.Change.Seq, res)
		}
	}
	return len(ds.Pushes), nil
}

// markLegacyDemo marks, on a server run without --demo, the demo users of
// a data directory seeded before demo users were marked, if their password
// is still the published demo password; it returns their usernames.
func markLegacyDemo(ctx context.Context, a *auth.Service) ([]string, error) {
	users, err := a.Users(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]auth.User{}
	for _, u := range users {
		byName[strings.ToLower(u.Username)] = u
	}
	var marked []string
	for _, name := range demo.Usernames() {
		u, ok := byName[name]
		if !ok || u.Demo || u.Deleted {
			continue
		}
		_, same, err := a.CheckPasswordOf(ctx, name, demo.DemoPassword)
		if err != nil {
			return nil, err
		}
		if same {
			if err := a.MarkDemo(ctx, u.ID); err != nil {
				return nil, err
			}
			marked = append(marked, name)
		}
	}
	return marked, nil
}
