package main

import (
	"context"
	"fmt"
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
