package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/demo"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/server"
)

const usage = `usage:
  doorstep serve --data DIR [--addr HOST:PORT] [--demo] [--log-format json|text] [--log-level debug|info|warn|error] [--trust-proxy] [--schema-extension FILE]
                 [--oidc-issuer URL --oidc-audience ID [--oidc-jwks-url URL]]
                 [--encryption-key-file FILE] [--backup-dir DIR] [--erasure-journal FILE] [limits: see below]
  doorstep backup --out FILE [--server URL] (--username U | --token T)
  doorstep restore --in FILE --data DIR [--encryption-key-file FILE] [--erasures JOURNAL|NEWER.dsbak]
  doorstep team add --data DIR --id ID --name NAME
  doorstep team list --data DIR
  doorstep user add --data DIR --username U [--name N] --role link_worker|coordinator|admin [--teams a,b]
  doorstep user list --data DIR
  doorstep user passwd|disable|enable|delete --data DIR --username U   (the service admin: not scoped to teams)
  doorstep audit list --data DIR [--format text|csv] [--limit N]
  (team, user and audit commands take --encryption-key-file FILE when the stores are encrypted)
  doorstep help
environment: DOORSTEP_DATA, DOORSTEP_PASSWORD (user add, user passwd, backup; else read from stdin),
             DOORSTEP_SERVER, DOORSTEP_USERNAME, DOORSTEP_TOKEN (backup), DOORSTEP_ENCRYPTION_KEY_FILE,
             and one variable per serve flag (listed below)`

// run is the whole command line, reachable from tests: main only wires the
// process's arguments, environment, streams and signals into it.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command")
	}
	switch cmd := strings.Join(args[:min(2, len(args))], " "); {
	case args[0] == "serve":
		return serve(ctx, args[1:], getenv, stderr)
	case args[0] == "backup":
		return backupCmd(ctx, args[1:], getenv, stdin, stdout, stderr)
	case args[0] == "restore":
		return restoreCmd(ctx, args[1:], getenv, stdout, stderr)
	case cmd == "team add", cmd == "team list", cmd == "user add", cmd == "user list",
		cmd == "user passwd", cmd == "user disable", cmd == "user enable", cmd == "user delete", cmd == "audit list":
		return admin(ctx, args[0], args[1], args[2:], getenv, stdin, stdout, stderr)
	case args[0] == "help" || args[0] == "-h" || args[0] == "--help":
		fmt.Fprintln(stdout, usage)
		writeServeHelp(stdout)
		return nil
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func orEnv(v, key string, getenv func(string) string) string {
	if v != "" {
		return v
	}
	return getenv(key)
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be json or text, not %q", format)
}

func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	var cfg server.Config
	o := serveFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := applyEnv(fs, getenv); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if o.data == "" {
		return errors.New("serve: --data (or DOORSTEP_DATA) is required")
	}
	if err := o.stores.check(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	data, addr, demoFlag := &o.data, &o.addr, &o.demo
	logger, err := newLogger(o.logFormat, o.logLevel, stderr)
	if err != nil {
		return err
	}
	sch := schema.Default()
	if o.extension != "" {
		b, err := os.ReadFile(o.extension)
		if err != nil {
			return fmt.Errorf("--schema-extension: %w", err)
		}
		if sch, err = sch.Extend(b); err != nil {
			return fmt.Errorf("--schema-extension %s: %w", o.extension, err)
		}
		logger.Info("schema extended", "file", o.extension, "version", sch.Version())
	}
	key, err := readKeyFile(o.keyFile)
	if err != nil {
		return err
	}
	switch {
	case o.stores.shared():
		logger.Info("record store on PostgreSQL: its encryption at rest is the database's (disk or tablespace encryption); --encryption-key-file covers only what stays under --data")
	case key == nil && !*demoFlag:
		logger.Warn("the record and auth stores are NOT encrypted at rest: personal data is in plaintext on disk; start with --encryption-key-file (see docs/OPERATIONS.md)")
	}
	cfg.DataDir, cfg.Logger, cfg.Schema, cfg.Limits = o.data, logger, sch, o.limitsOf()
	cfg.Demo, cfg.EncryptionKey = *demoFlag, key
	if o.oidcIssuer != "" {
		cfg.External = &auth.ExternalIssuer{Issuer: o.oidcIssuer, Audience: o.oidcAud, JWKSURL: o.oidcJWKS,
			RoleClaim: o.oidcRole, TeamsClaim: o.oidcTeams, RefreshInterval: o.oidcRefresh, MinRefetch: o.oidcMinRefetch}
	}
	if cfg.AuthStore, err = o.stores.open(ctx, pgAuthTable, logger); err != nil {
		return err
	}
	if cfg.Records, err = o.stores.open(ctx, pgRecordsTable, logger); err != nil {
		if cfg.AuthStore != nil {
			cfg.AuthStore.Close()
		}
		return err
	}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		return err
	}
	if !*demoFlag {
		marked, err := markLegacyDemo(ctx, srv.Auth())
		if err != nil {
			srv.Shutdown(context.Background())
			return fmt.Errorf("check demo users: %w", err)
		}
		if len(marked) > 0 {
			logger.Warn("this data directory was seeded with --demo: its demo users still have the published demo password and are refused unless served with --demo",
				"users", strings.Join(marked, " "))
		}
	}
	if *demoFlag {
		n, err := seedDemo(ctx, srv, 1, time.Now())
		if err != nil {
			srv.Shutdown(context.Background())
			return fmt.Errorf("demo: %w", err)
		}
		if n > 0 {
			var names []string
			if us, err := srv.Auth().Users(ctx); err == nil {
				for _, u := range us {
					names = append(names, u.Username+"("+u.Role+")")
				}
			}
			logger.Info("demo data seeded", "changes", n, "users", strings.Join(names, " "),
				"password", demo.DemoPassword+" (demo only: it is in the source)")
		} else {
			logger.Info("demo: data directory already has teams; not seeding")
		}
		g, err := newGuide(ctx, srv, *addr, *data)
		if err != nil {
			srv.Shutdown(context.Background())
			return fmt.Errorf("demo: %w", err)
		}
		g.writeBanner(stderr)
	}
	return srv.Serve(ctx, *addr)
}

func openAuth(ctx context.Context, data string, key []byte, stores storeChoice) (*auth.Service, error) {
	if data == "" {
		return nil, errors.New("--data (or DOORSTEP_DATA) is required")
	}
	if err := stores.check(); err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := auth.Config{KeyDir: filepath.Join(data, "keys"), Logger: logger}
	if stores.shared() {
		// The servers may be running: a shared store takes every writer.
		kv, err := stores.open(ctx, pgAuthTable, logger)
		if err != nil {
			return nil, err
		}
		return auth.New(ctx, kv, cfg)
	}
	kv, err := server.OpenAuthBadger(data, key, logger)
	if err != nil {
		return nil, fmt.Errorf("%w (is the server running? stop it or use the admin HTTP API)", err)
	}
	a, err := auth.New(ctx, kv, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w (is the server running? stop it or use the admin HTTP API)", err)
	}
	return a, nil
}

func admin(ctx context.Context, noun, verb string, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	fs := newFlags(noun+" "+verb, stderr)
	data := fs.String("data", "", "data directory (env DOORSTEP_DATA)")
	id := fs.String("id", "", "team ID (team add)")
	name := fs.String("name", "", "display name")
	username := fs.String("username", "", "username (user add)")
	role := fs.String("role", "", "role (user add): link_worker, coordinator or admin")
	teams := fs.String("teams", "", "comma-separated team IDs (user add)")
	format := fs.String("format", "text", "audit list: text or csv")
	limit := fs.Int("limit", 1000, "audit list: most entries")
	keyFile := fs.String("encryption-key-file", "", "the stores' encryption key, if serve uses one (env DOORSTEP_ENCRYPTION_KEY_FILE)")
	storeKind := fs.String("store", "", "where the auth store lives, as for serve: badger (default) or postgres (env DOORSTEP_STORE)")
	pgURL := fs.String("pg-url", "", "PostgreSQL URL for --store postgres (env DOORSTEP_PG_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stores := storeChoice{kind: orEnv(*storeKind, "DOORSTEP_STORE", getenv), pgURL: orEnv(*pgURL, "DOORSTEP_PG_URL", getenv)}
	if stores.kind == "" {
		stores.kind = storeBadger
	}
	key, err := readKeyFile(orEnv(*keyFile, "DOORSTEP_ENCRYPTION_KEY_FILE", getenv))
	if err != nil {
		return err
	}
	// The command line is the service admin: unscoped, and recorded as
	// such in the audit trail.
	ctx = auth.WithActor(ctx, auth.ServiceActor("doorstep "+noun+" "+verb))
	a, err := openAuth(ctx, orEnv(*data, "DOORSTEP_DATA", getenv), key, stores)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := a.Close(); err == nil {
			err = cerr
		}
	}()
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	defer tw.Flush()
	switch noun + " " + verb {
	case "team add":
		t, err := a.CreateTeam(ctx, *id, *name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "team %s (%s) created\n", t.ID, t.Name)
	case "team list":
		ts, err := a.Teams(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, "ID\tNAME")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\n", t.ID, t.Name)
		}
	case "user add":
		pw, err := readPassword(getenv, stdin)
		if err != nil {
			return err
		}
		var ts []string
		for _, t := range strings.Split(*teams, ",") {
			if t = strings.TrimSpace(t); t != "" {
				ts = append(ts, t)
			}
		}
		u, err := a.CreateUser(ctx, auth.NewUser{Username: *username, Name: *name, Password: pw, Role: *role, Teams: ts})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s created: id %s, role %s, teams %s\n", u.Username, u.ID, u.Role, strings.Join(u.Teams, ","))
	case "user list":
		us, err := a.Users(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, "ID\tUSERNAME\tNAME\tROLE\tTEAMS\tSTATE")
		for _, u := range us {
			state := "active"
			switch {
			case u.Deleted:
				state = "deleted"
			case u.Disabled:
				state = "disabled"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.ID, u.Username, u.Name, u.Role, strings.Join(u.Teams, ","), state)
		}
	case "user passwd", "user disable", "user enable", "user delete":
		return userCommand(ctx, a, verb, *username, getenv, stdin, stdout)
	case "audit list":
		return auditList(ctx, a, *format, *limit, stdout)
	}
	return nil
}

// readPassword reads a password from DOORSTEP_PASSWORD or one line of stdin.
func readPassword(getenv func(string) string, stdin io.Reader) (string, error) {
	if pw := getenv("DOORSTEP_PASSWORD"); pw != "" {
		return pw, nil
	}
	if stdin == nil {
		return "", errors.New("no password: set DOORSTEP_PASSWORD or give it on stdin")
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 1024)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func userCommand(ctx context.Context, a *auth.Service, verb, username string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	us, err := a.Users(ctx)
	if err != nil {
		return err
	}
	var u *auth.User
	for i := range us {
		if strings.EqualFold(us[i].Username, username) && !us[i].Deleted {
			u = &us[i]
		}
	}
	if u == nil {
		return fmt.Errorf("no user %q", username)
	}
	switch verb {
	case "passwd":
		pw, err := readPassword(getenv, stdin)
		if err != nil {
			return err
		}
		if _, err := a.ResetPassword(ctx, u.ID, pw); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password of %s reset; their devices must log in again\n", u.Username)
	case "disable", "enable":
		if _, err := a.SetDisabled(ctx, u.ID, verb == "disable"); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s %sd\n", u.Username, verb)
	case "delete":
		if _, err := a.DeleteUser(ctx, u.ID); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s deleted; their devices are revoked\n", u.Username)
	}
	return nil
}

func auditList(ctx context.Context, a *auth.Service, format string, limit int, stdout io.Writer) error {
	if format != "text" && format != "csv" {
		return fmt.Errorf("--format must be text or csv, not %q", format)
	}
	var cursor uint64
	w := csv.NewWriter(stdout)
	if format == "csv" {
		_ = w.Write([]string{"seq", "time", "actor_id", "actor_name", "action", "team", "target_kind", "target_id", "detail"})
	}
	for n := 0; n < limit; {
		es, next, more, err := a.AuditLog(ctx, auth.AuditQuery{After: cursor, Limit: min(1000, limit-n)})
		if err != nil {
			return err
		}
		for _, e := range es {
			d, _ := json.Marshal(e.Detail)
			if format == "csv" {
				_ = w.Write([]string{strconv.FormatUint(e.Seq, 10), e.Time.Format(time.RFC3339), e.ActorID, e.ActorName, e.Action, e.Team, e.TargetKind, e.TargetID, string(d)})
			} else {
				fmt.Fprintf(stdout, "%d %s %s(%s) %s team=%s %s/%s %s\n", e.Seq, e.Time.Format(time.RFC3339), e.ActorName, e.ActorID, e.Action, e.Team, e.TargetKind, e.TargetID, d)
			}
		}
		n += len(es)
		if !more {
			break
		}
		cursor = next
	}
	w.Flush()
	return w.Error()
}
