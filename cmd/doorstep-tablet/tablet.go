package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/crdt"
)

// demoPassword is the demo users' password (demo.DemoPassword; this tool
// talks to the server only as a device would, so it keeps its own copy).
const demoPassword = "doorstep-demo"

const usage = `doorstep-tablet is a simulated tablet: a Doorstep client SDK replica in a
local folder. Every write is stored durably on the "tablet" with no network;
sync pushes the tablet's outbox and pulls what others changed.

usage:
  doorstep-tablet login     --user U --server URL      sign in (password: env DOORSTEP_PASSWORD, else the demo password)
  doorstep-tablet sync      --user U                   push the outbox, pull others' changes
  doorstep-tablet people    --user U                   the team's people on this tablet
  doorstep-tablet set       --user U --collection C --id ID --field F --value V
                                                       write a field offline (no network)
  doorstep-tablet clear     --user U --collection C --id ID --field F
                                                       clear a field offline
  doorstep-tablet show      --user U --collection C --id ID
                                                       a record: winners, conflicts, concurrent values
  doorstep-tablet conflicts --user U                   records with fields in conflict
  doorstep-tablet resolve   --user U --collection C --id ID --field F --value V
                                                       settle a conflict (offline; sync to share it)
  doorstep-tablet status    --user U                   pending ops, last sync, rejected ops

Every command takes --dir DIR (default ./data/tablet-U). V is JSON if it
parses as JSON (6, true, "6"), else a plain string (Bill).

The replica in DIR is encrypted at rest with a key in DIR/replica.key, made
on first use. That is a simulation: a real app keeps the key in the
platform keystore (Android Keystore, iOS Keychain), never beside the data.`

// run is the whole command line, reachable from tests.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command")
	}
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "the tablet's user; names the default --dir")
	dir := fs.String("dir", "", "replica directory (default ./data/tablet-USER)")
	serverURL := fs.String("server", "", "server base URL (login; remembered in DIR)")
	coll := fs.String("collection", "people", "collection")
	id := fs.String("id", "", "record ID")
	field := fs.String("field", "", "field name")
	value := fs.String("value", "", "value: JSON, or else a plain string")
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "login", "sync", "people", "set", "clear", "show", "conflicts", "resolve", "status":
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		if *user == "" {
			return errors.New("--user or --dir is required")
		}
		*dir = filepath.Join("data", "tablet-"+*user)
	}
	t, err := openTablet(ctx, *dir, *serverURL)
	if err != nil {
		return err
	}
	defer t.r.Close()
	ref := client.Ref{Collection: *coll, ID: *id}
	needRef := func(withField bool) error {
		if *id == "" || (withField && *field == "") {
			return fmt.Errorf("%s: --id%s required", cmd, map[bool]string{true: ", --field and --value are", false: " is"}[withField])
		}
		team, err := t.team(ctx)
		if err != nil {
			return err
		}
		ref.Team = team
		return nil
	}
	switch cmd {
	case "login":
		return t.login(ctx, *user, getenv, stdout)
	case "sync":
		return t.sync(ctx, stdout)
	case "people":
		return t.people(ctx, stdout)
	case "set", "resolve":
		if err := needRef(true); err != nil {
			return err
		}
		v, err := parseValue(*value)
		if err != nil {
			return err
		}
		if cmd == "set" {
			err = t.r.Set(ctx, ref, *field, v)
		} else {
			err = t.r.Resolve(ctx, ref, *field, v)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		st := t.r.Status()
		fmt.Fprintf(stdout, "%s/%s %s = %s stored on this tablet (offline); %d op(s) waiting to sync\n", ref.Collection, ref.ID, *field, show(v), st.Pending)
		return nil
	case "clear":
		if *id == "" || *field == "" {
			return errors.New("clear: --id and --field are required")
		}
		if err := needRef(false); err != nil {
			return err
		}
		if err := t.r.Clear(ctx, ref, *field); err != nil {
			return fmt.Errorf("clear: %w", err)
		}
		fmt.Fprintf(stdout, "%s/%s %s cleared on this tablet (offline); %d op(s) waiting to sync\n", ref.Collection, ref.ID, *field, t.r.Status().Pending)
		return nil
	case "show":
		if err := needRef(false); err != nil {
			return err
		}
		return t.show(ctx, ref, stdout)
	case "conflicts":
		return t.conflicts(ctx, stdout)
	case "status":
		return t.status(ctx, stdout)
	}
	return nil
}

// tablet is an open replica and the directory it lives in.
type tablet struct {
	dir string
	r   *client.Replica
}

// openTablet opens (creating if needed) the replica in dir with its key,
// remembering serverURL in dir if one is given.
func openTablet(ctx context.Context, dir, serverURL string) (*tablet, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tablet dir: %w", err)
	}
	key, err := loadKey(filepath.Join(dir, "replica.key"))
	if err != nil {
		return nil, err
	}
	srvFile := filepath.Join(dir, "server")
	if serverURL != "" {
		if err := os.WriteFile(srvFile, []byte(strings.TrimRight(serverURL, "/")+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("remember server: %w", err)
		}
	} else if b, err := os.ReadFile(srvFile); err == nil {
		serverURL = strings.TrimSpace(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read server: %w", err)
	}
	r, err := client.Open(ctx, client.Options{
		Dir:           filepath.Join(dir, "replica"),
		EncryptionKey: key,
		ServerURL:     serverURL,
		DeviceName:    "doorstep-tablet " + filepath.Base(dir),
	})
	if err != nil {
		return nil, fmt.Errorf("open replica in %s: %w", dir, err)
	}
	return &tablet{dir: dir, r: r}, nil
}

// loadKey reads the replica's 32-byte key, creating it on first use.
func loadKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) != 32 {
			return nil, fmt.Errorf("%s: want 32 bytes, found %d", path, len(key))
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read key: %w", err)
	}
	key = make([]byte, 32)
	rand.Read(key)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, fmt.Errorf("write key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync key: %w", err)
	}
	return key, f.Close()
}

// team is the signed-in user's first team: the tablet's working team.
func (t *tablet) team(ctx context.Context) (string, error) {
	u, err := t.r.User(ctx)
	if err != nil {
		return "", fmt.Errorf("not signed in (run login first): %w", err)
	}
	if len(u.Teams) == 0 {
		return "", fmt.Errorf("user %s has no team", u.Name)
	}
	return u.Teams[0], nil
}

func (t *tablet) login(ctx context.Context, user string, getenv func(string) string, stdout io.Writer) error {
	if user == "" {
		return errors.New("login: --user is required")
	}
	pw := getenv("DOORSTEP_PASSWORD")
	if pw == "" {
		pw = demoPassword
	}
	u, err := t.r.Login(ctx, user, pw)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signed in as %s (%s, %s, teams %s) on device %s; replica in %s\n",
		user, u.Name, u.Role, strings.Join(u.Teams, ","), t.r.ID(), t.dir)
	return nil
}

func (t *tablet) sync(ctx context.Context, stdout io.Writer) error {
	res, err := t.r.Sync(ctx)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	fmt.Fprintf(stdout, "synced: pushed %d change(s) (%d ops), pulled %d change(s) and %d snapshot record(s); %d record(s) changed here\n",
		res.Pushed, res.PushedOps, res.Pulled, res.Snapshot, res.Changed)
	if res.Purged > 0 {
		fmt.Fprintf(stdout, "  %d record(s) erased on the server were removed from this tablet\n", res.Purged)
	}
	for _, rj := range res.Rejected {
		fmt.Fprintf(stdout, "  server %s op on %s/%s field %s: %s %s\n", map[bool]string{true: "quarantined", false: "refused"}[rj.Quarantined],
			rj.Op.Collection, rj.Op.Record, rj.Op.Field, rj.Code, rj.Detail)
	}
	return t.printConflicts(ctx, stdout, false)
}

func (t *tablet) people(ctx context.Context, stdout io.Writer) error {
	team, err := t.team(ctx)
	if err != nil {
		return err
	}
	recs, err := t.r.List(ctx, team, "people")
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		fmt.Fprintln(stdout, "no people on this tablet yet (run sync)")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tCONFLICTS")
	for _, rec := range recs {
		if rec.Deleted {
			continue
		}
		name := strings.TrimSpace(fmt.Sprint(str(rec, "given_name"), " ", str(rec, "family_name")))
		fmt.Fprintf(tw, "%s\t%s\t%s\n", rec.Ref.ID, name, strings.Join(rec.Conflicts(), ","))
	}
	return tw.Flush()
}

func str(rec *client.Record, field string) string {
	if f, ok := rec.Fields[field]; ok && f.Value != nil {
		return fmt.Sprint(f.Value)
	}
	return ""
}

func (t *tablet) show(ctx context.Context, ref client.Ref, stdout io.Writer) error {
	rec, err := t.r.Get(ctx, ref)
	if err != nil {
		return fmt.Errorf("show %s/%s: %w", ref.Collection, ref.ID, err)
	}
	fmt.Fprintf(stdout, "%s/%s (team %s)%s\n", ref.Collection, ref.ID, ref.Team, map[bool]string{true: " DELETED", false: ""}[rec.Deleted])
	names := make([]string, 0, len(rec.Fields))
	for n := range rec.Fields {
		if n != crdt.DeletedField {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	for _, n := range names {
		f := rec.Fields[n]
		switch f.Type {
		case crdt.Register:
			line := show(f.Value)
			if f.Conflict {
				var vs []string
				for _, v := range f.Values {
					vs = append(vs, fmt.Sprintf("%s (device %.8s at %s)", show(v.Value), v.ID.Replica, v.ID.Time.Time().Format(time.DateTime)))
				}
				kind := "CONFLICT"
				if f.Clinical {
					kind = "CONFLICT, clinical: never auto-resolved"
				}
				line += fmt.Sprintf("\t%s: %s", kind, strings.Join(vs, " | "))
			}
			fmt.Fprintf(tw, "  %s\t%s\n", n, line)
		case crdt.Set:
			var ms []string
			for _, m := range f.Members {
				ms = append(ms, show(m))
			}
			fmt.Fprintf(tw, "  %s\t{%s}\n", n, strings.Join(ms, ", "))
		case crdt.Log:
			fmt.Fprintf(tw, "  %s\t%d entries\n", n, len(f.Entries))
			for _, e := range f.Entries {
				fmt.Fprintf(tw, "    %s\t%s\n", e.ID.Time.Time().Format(time.DateTime), show(e.Value))
			}
		}
	}
	return tw.Flush()
}

func (t *tablet) conflicts(ctx context.Context, stdout io.Writer) error {
	return t.printConflicts(ctx, stdout, true)
}

// printConflicts lists the team's records with fields in conflict; with
// always it says so when there are none.
func (t *tablet) printConflicts(ctx context.Context, stdout io.Writer, always bool) error {
	team, err := t.team(ctx)
	if err != nil {
		return err
	}
	recs, err := t.r.Conflicts(ctx, team)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		if always {
			fmt.Fprintln(stdout, "no conflicts on this tablet")
		}
		return nil
	}
	fmt.Fprintln(stdout, "in conflict on this tablet:")
	for _, rec := range recs {
		fmt.Fprintf(stdout, "  %s/%s  %s\n", rec.Ref.Collection, rec.Ref.ID, strings.Join(rec.Conflicts(), ","))
	}
	return nil
}

func (t *tablet) status(ctx context.Context, stdout io.Writer) error {
	st := t.r.Status()
	u, err := t.r.User(ctx)
	who := "signed out"
	if err == nil {
		who = "signed in as " + u.Name
	}
	ops, err := t.r.PendingOps(ctx)
	if err != nil {
		return err
	}
	rej, err := t.r.Rejected(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "device %s, %s; %d op(s) waiting to sync; %d op(s) the server quarantined or refused\n", t.r.ID(), who, len(ops), len(rej))
	if !st.LastSuccess.IsZero() {
		fmt.Fprintf(stdout, "last sync %s\n", st.LastSuccess.Format(time.DateTime))
	}
	return nil
}

// parseValue reads a --value: JSON when it parses as one JSON value
// (integers stay integers), else the plain string.
func parseValue(s string) (any, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return s, nil
	}
	if _, err := dec.Token(); err != io.EOF {
		return s, nil
	}
	return fromJSON(v), nil
}

func fromJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = fromJSON(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = fromJSON(x[k])
		}
	}
	return v
}

// show formats a value for a person: strings quoted, others as JSON.
func show(v any) string {
	if v == nil {
		return "(unset)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
