package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/demo"
	"github.com/doorstep-health/doorstep/server"
	dsync "github.com/doorstep-health/doorstep/sync"
	"github.com/vmihailenco/msgpack/v5"
)

// The banner's "what to try" uses these; main_test.go runs the printed
// lines against a real server, so they must stay true.
const (
	// guideUser is the Wigan coordinator the curl lines log in as.
	guideUser = "diane"
	// guideDevice is the device ID the curl lines log in with: any 32 hex
	// digits not all zero; this one is easy to spot in the admin's device
	// list.
	guideDevice = "d1a4e000000000000000000000000001"
	// guideTablet is the link worker the tablet example signs in as.
	guideTablet = "amara"
)

// guide is what the demo banner shows.
type guide struct {
	URL   string      // base URL reachable from this machine
	Data  string      // data directory
	Users []auth.User // every user, for the table
	Team  string      // the coordinator's team
	// Conflict is a record of the team with a field in conflict, Field
	// that field and Value one of its concurrent values as JSON; Conflict
	// is nil when nothing is waiting (say, after the demo conflict was
	// resolved).
	Conflict *api.RecordRef
	Field    string
	Value    string
}

// roleOrder lists the banner's users within a team: workers first.
var roleOrder = map[string]int{api.RoleLinkWorker: 0, api.RoleCoordinator: 1, api.RoleAdmin: 2}

// baseURL turns a listen address into a URL a local curl can reach.
func baseURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// newGuide gathers the banner's facts from a running server's stores: the
// users as they are stored, and the conflict the coordinator would see now.
func newGuide(ctx context.Context, srv *server.Server, addr, data string) (*guide, error) {
	users, err := srv.Auth().Users(ctx)
	if err != nil {
		return nil, fmt.Errorf("banner: users: %w", err)
	}
	users = slices.Clone(users)
	slices.SortFunc(users, func(a, b auth.User) int {
		return cmp.Or(cmp.Compare(strings.Join(a.Teams, ","), strings.Join(b.Teams, ",")),
			cmp.Compare(roleOrder[a.Role], roleOrder[b.Role]), cmp.Compare(a.Username, b.Username))
	})
	g := &guide{URL: baseURL(addr), Data: data, Users: users, Team: demo.TeamWigan}
	var coord *auth.User
	for i := range users {
		if users[i].Username == guideUser {
			coord = &users[i]
		}
	}
	if coord == nil {
		return g, nil
	}
	if len(coord.Teams) > 0 {
		g.Team = coord.Teams[0]
	}
	caller := dsync.Caller{User: coord.ID, Teams: coord.Teams}
	refs, err := srv.Engine().Conflicts(ctx, caller, g.Team)
	if err != nil {
		return nil, fmt.Errorf("banner: conflicts: %w", err)
	}
	for _, ref := range refs {
		if ref.Collection != "people" {
			continue
		}
		rec, err := srv.Engine().Record(ctx, caller, ref)
		if err != nil {
			return nil, fmt.Errorf("banner: record %s: %w", ref.ID, err)
		}
		for _, name := range rec.Conflicts() {
			f := rec.Field(name)
			if f == nil || len(f.Entries) == 0 {
				continue
			}
			var v any
			if err := msgpack.Unmarshal(f.Entries[0].Value, &v); err != nil {
				continue
			}
			js, err := json.Marshal(v)
			if err != nil {
				continue
			}
			ref := ref
			g.Conflict, g.Field, g.Value = &ref, name, string(js)
			return g, nil
		}
	}
	return g, nil
}

// curlLines are the copy-pasteable shell lines of "what to try": set U,
// log in and keep the access token in TOKEN (sed, no jq), list the team's
// conflicts, show the conflicted record, resolve it.
func (g *guide) curlLines() []string {
	login, _ := json.Marshal(api.LoginRequest{Username: guideUser, Password: demo.DemoPassword, DeviceID: guideDevice, DeviceName: "curl"})
	auth := `-H "Authorization: Bearer $TOKEN"`
	lines := []string{
		"U=" + g.URL,
		`TOKEN=$(curl -s -X POST $U/v1/auth/login -H 'Content-Type: application/json' -d '` + string(login) + `' | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')`,
		"curl -s $U/v1/teams/" + g.Team + "/conflicts " + auth,
	}
	if g.Conflict != nil {
		rec := "$U/v1/teams/" + g.Team + "/records/" + g.Conflict.Collection + "/" + g.Conflict.ID
		lines = append(lines,
			"curl -s "+rec+" "+auth,
			"curl -s -X POST "+rec+"/resolve "+auth+` -H 'Content-Type: application/json' -d '{"field":"`+g.Field+`","value":`+g.Value+`}'`,
		)
	}
	return lines
}

// tabletLines are the simulated-tablet example (cmd/doorstep-tablet, built
// on the client SDK).
func (g *guide) tabletLines() []string {
	t := "go run ./cmd/doorstep-tablet "
	return []string{
		t + "login --server " + g.URL + " --user " + guideTablet,
		t + "sync --user " + guideTablet,
		t + "people --user " + guideTablet,
		t + "set --user " + guideTablet + " --collection people --id ID --field preferred_name --value Bill",
		t + "sync --user " + guideTablet,
	}
}

// writeBanner prints the demo's welcome block for a person, not a log
// parser: address, users, password and what to try.
func (g *guide) writeBanner(w io.Writer) {
	fmt.Fprintf(w, "\nDoorstep demo: serving on %s (data in %s)\n\n", g.URL, g.Data)
	fmt.Fprintf(w, "Demo users, all with password %q (demo only: it is in the source):\n", demo.DemoPassword)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, u := range g.Users {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", u.Username, u.Role, strings.Join(u.Teams, ","), u.Name)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nWhat to try, as the %s coordinator %s (another terminal):\n", g.Team, guideUser)
	for _, l := range g.curlLines() {
		fmt.Fprintln(w, "  "+l)
	}
	if g.Conflict == nil {
		fmt.Fprintln(w, "  (no conflict is waiting in "+g.Team+" right now)")
	}
	fmt.Fprintf(w, "\nOr in a browser: the coordinator console at %s/console/ (sign in as %s)\n", g.URL, guideUser)
	fmt.Fprintln(w, "\nA simulated tablet on the client SDK (edit offline, then sync; see README.md for the two-tablet tour):")
	for _, l := range g.tabletLines() {
		fmt.Fprintln(w, "  "+l)
	}
	fmt.Fprintln(w, "\nStop with Ctrl-C. Start again from scratch: rm -rf "+g.Data)
	fmt.Fprintln(w)
}
