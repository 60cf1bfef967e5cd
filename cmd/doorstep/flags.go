package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
)

// serveOptions are the serve flags that are not server.Config fields.
type serveOptions struct {
	data, addr          string
	demo                bool
	logFormat, logLevel string
	extension           string
	oidcIssuer, oidcAud string
	oidcJWKS            string
	oidcRole, oidcTeams string
	oidcRefresh         time.Duration
	oidcMinRefetch      time.Duration
	maxDepth, maxLen    int
	maxItems            int
	keyFile             string
	stores              storeChoice
	// configFlags maps each server.Config field set by a flag to that
	// flag's name (the help test checks every field is covered).
	configFlags map[string]string
}

// envName is the environment variable that stands in for a flag:
// DOORSTEP_ and the flag's name in upper case with '-' as '_'.
func envName(flagName string) string {
	return "DOORSTEP_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// serveFlags registers every serve flag on fs: the Config-backed ones bound
// to cfg's fields (with Config's defaults shown), the rest to the returned
// options. Each flag also reads its environment variable (envName) when it
// is not given on the command line; see applyEnv.
func serveFlags(fs *flag.FlagSet, cfg *server.Config) *serveOptions {
	o := &serveOptions{configFlags: map[string]string{}}
	def := server.Config{}.Defaults()
	*cfg = def
	cfg.Limits, cfg.Logger, cfg.Now, cfg.Schema = nil, nil, nil, nil

	plain := func(name string) string { return name }
	fs.StringVar(&o.data, plain("data"), "", "data directory (required)")
	fs.StringVar(&o.addr, plain("addr"), "127.0.0.1:8080", "listen address HOST:PORT")
	fs.BoolVar(&o.demo, plain("demo"), false, "seed the demo teams, users, devices and history into an empty data directory")
	fs.StringVar(&o.logFormat, plain("log-format"), "json", "log format: json or text")
	fs.StringVar(&o.logLevel, plain("log-level"), "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.extension, plain("schema-extension"), "", "JSON file of collections and fields added to the default home-visit schema")
	fs.StringVar(&o.stores.kind, plain("store"), storeBadger, "where the record and auth stores live: badger (files under --data; one server) or postgres (tables in --pg-url's database; several servers may share it, see docs/SCALING.md)")
	fs.StringVar(&o.stores.pgURL, plain("pg-url"), "", "PostgreSQL connection URL for --store postgres, e.g. postgres://doorstep:PASSWORD@db.internal/doorstep?sslmode=verify-full (prefer DOORSTEP_PG_URL to keep the password off the command line)")
	fs.StringVar(&o.keyFile, plain("encryption-key-file"), "", "encrypt the record and auth stores at rest with this AES key, 64 hex digits")
	fs.StringVar(&o.oidcIssuer, plain("oidc-issuer"), "", "OpenID Connect issuer whose ID tokens POST /v1/auth/exchange accepts")
	fs.StringVar(&o.oidcAud, plain("oidc-audience"), "", "audience (client ID) those ID tokens must carry")
	fs.StringVar(&o.oidcJWKS, plain("oidc-jwks-url"), "", "the issuer's JWKS URL (https, or http on loopback); default: discovered from the issuer's /.well-known/openid-configuration")
	fs.StringVar(&o.oidcRole, plain("oidc-role-claim"), "doorstep_role", "ID token claim holding the Doorstep role")
	fs.StringVar(&o.oidcTeams, plain("oidc-teams-claim"), "doorstep_teams", "ID token claim holding the Doorstep team IDs")
	fs.DurationVar(&o.oidcRefresh, plain("oidc-jwks-refresh"), time.Hour, "how often the issuer's JWKS is refetched in the background")
	fs.DurationVar(&o.oidcMinRefetch, plain("oidc-jwks-min-refetch"), time.Minute, "least time between JWKS refetches prompted by an unknown key ID")

	cf := func(field, name string) string { o.configFlags[field] = name; return name }
	fs.StringVar(&cfg.Issuer, cf("Issuer", "token-issuer"), def.Issuer, "iss of the access tokens this server issues and requires")
	fs.StringVar(&cfg.Audience, cf("Audience", "token-audience"), def.Audience, "aud of the access tokens this server issues and requires")
	fs.DurationVar(&cfg.AccessTTL, cf("AccessTTL", "access-ttl"), def.AccessTTL, "access token lifetime")
	fs.DurationVar(&cfg.RefreshTTL, cf("RefreshTTL", "refresh-ttl"), def.RefreshTTL, "refresh token lifetime")
	fs.DurationVar(&cfg.ReuseGrace, cf("ReuseGrace", "refresh-reuse-grace"), def.ReuseGrace, "how long a spent refresh token may be presented again without revoking the device (negative: no grace)")
	fs.IntVar(&cfg.BcryptCost, cf("BcryptCost", "bcrypt-cost"), def.BcryptCost, "bcrypt cost of new password hashes (0: bcrypt's default, 10)")
	fs.Int64Var(&cfg.MaxSyncBody, cf("MaxSyncBody", "max-sync-body"), def.MaxSyncBody, "largest sync request body as sent, bytes")
	fs.Int64Var(&cfg.MaxSyncDecoded, cf("MaxSyncDecoded", "max-sync-decoded"), def.MaxSyncDecoded, "largest sync request body after gzip decoding, bytes")
	fs.Int64Var(&cfg.MaxJSONBody, cf("MaxJSONBody", "max-json-body"), def.MaxJSONBody, "largest JSON request body, bytes")
	fs.Int64Var(&cfg.MaxBlobSize, cf("MaxBlobSize", "max-attachment-size"), def.MaxBlobSize, "largest attachment file, bytes")
	fs.Int64Var(&cfg.BlobTeamQuota, cf("BlobTeamQuota", "attachment-team-quota"), def.BlobTeamQuota, "bytes of attachments (and unfinished uploads) one team may store")
	fs.DurationVar(&cfg.UploadTTL, cf("UploadTTL", "upload-ttl"), def.UploadTTL, "how long an unfinished attachment upload is kept after its last byte before it is removed")
	fs.IntVar(&cfg.PageBytes, cf("PageBytes", "page-bytes"), def.PageBytes, "bytes of one pulled page (at least one item is always sent)")
	fs.IntVar(&cfg.MaxConcurrentSyncs, cf("MaxConcurrentSyncs", "max-concurrent-syncs"), def.MaxConcurrentSyncs, "sync requests processed at once (bodies already read); others wait")
	fs.IntVar(&cfg.MaxSyncsPerDevice, cf("MaxSyncsPerDevice", "max-syncs-per-device"), def.MaxSyncsPerDevice, "one device's sync requests in flight; more get 429")
	fs.IntVar(&cfg.MinBodyRate, cf("MinBodyRate", "min-body-rate"), def.MinBodyRate, "bytes per second a sync body must keep arriving at, after --body-grace (else 408)")
	fs.DurationVar(&cfg.BodyGrace, cf("BodyGrace", "body-grace"), def.BodyGrace, "time before --min-body-rate applies")
	fs.Int64Var(&cfg.BodyBudget, cf("BodyBudget", "body-budget"), def.BodyBudget, "bytes of sync bodies being received at once, all requests together (else 503)")
	fs.Int64Var(&cfg.SyncMemoryBudget, cf("SyncMemoryBudget", "sync-memory-budget"), def.SyncMemoryBudget, "memory of sync requests being decoded and processed, bytes (docs/SECURITY.md)")
	fs.DurationVar(&cfg.BudgetWait, cf("BudgetWait", "budget-wait"), def.BudgetWait, "how long a sync waits for --sync-memory-budget room before 503")
	fs.Int64Var(&cfg.PipelineHoldBytes, cf("PipelineHoldBytes", "pipeline-hold-bytes"), def.PipelineHoldBytes, "bytes one device's pipelined pushes hold decoded while they wait for the one before; negative: none")
	fs.BoolVar(&cfg.OverlapCommits, cf("OverlapCommits", "overlap-commits"), false, "build the next group of pushes while a commit is fsynced (Badger only; off: measured slower on 2 cores)")
	fs.IntVar(&o.maxDepth, cf("Limits", "max-msgpack-depth"), server.DefaultLimits.MaxDepth, "deepest nesting in a sync body")
	fs.IntVar(&o.maxLen, "max-msgpack-len", server.DefaultLimits.MaxLen, "most elements in one msgpack array or map (or bytes in one string) of a sync body")
	fs.IntVar(&o.maxItems, "max-msgpack-items", server.DefaultLimits.MaxItems, "most msgpack values in a whole sync body")
	fs.Float64Var(&cfg.DeviceRate, cf("DeviceRate", "device-rate"), def.DeviceRate, "requests per second per device on authenticated routes (negative: no limit)")
	fs.IntVar(&cfg.DeviceBurst, cf("DeviceBurst", "device-burst"), def.DeviceBurst, "burst of the per-device limit")
	fs.Float64Var(&cfg.AuthRate, cf("AuthRate", "auth-rate"), def.AuthRate, "login, refresh, exchange and readyz requests per second per client address (negative: no limit)")
	fs.IntVar(&cfg.AuthBurst, cf("AuthBurst", "auth-burst"), def.AuthBurst, "burst of the per-address limit")
	fs.BoolVar(&cfg.TrustProxy, cf("TrustProxy", "trust-proxy"), false, "take client addresses from X-Forwarded-For (only behind a reverse proxy that overwrites it)")
	fs.DurationVar(&cfg.ReadTimeout, cf("ReadTimeout", "read-timeout"), def.ReadTimeout, "time to read a whole request")
	fs.DurationVar(&cfg.WriteTimeout, cf("WriteTimeout", "write-timeout"), def.WriteTimeout, "time to write a whole reply")
	fs.DurationVar(&cfg.IdleTimeout, cf("IdleTimeout", "idle-timeout"), def.IdleTimeout, "keep-alive idle time")
	fs.DurationVar(&cfg.ReadHeaderTimeout, cf("ReadHeaderTimeout", "read-header-timeout"), def.ReadHeaderTimeout, "time to read request headers")
	fs.DurationVar(&cfg.MaxSkew, cf("MaxSkew", "max-clock-skew"), def.MaxSkew, "how far ahead of the server clock an op may be stamped before it is quarantined")
	fs.StringVar(&cfg.BackupDir, cf("BackupDir", "backup-dir"), "", "directory POST /v1/admin/backups writes backup files into")
	fs.StringVar(&cfg.ErasureJournal, cf("ErasureJournal", "erasure-journal"), "", "erasure journal file (default DATA/erasures.jsonl; keep a copy off the data volume)")
	fs.IntVar(&cfg.MaxDevicesPerUser, cf("MaxDevicesPerUser", "max-devices-per-user"), def.MaxDevicesPerUser, "devices one user may have registered (0: the default, 10; negative: no bound)")
	fs.IntVar(&cfg.LockoutThreshold, cf("LockoutThreshold", "lockout-threshold"), def.LockoutThreshold, "failed logins that lock a username (0: the default, 5)")
	fs.DurationVar(&cfg.LockoutBase, cf("LockoutBase", "lockout-base"), def.LockoutBase, "first lockout's length, doubling after (0: the default, 1m)")
	fs.DurationVar(&cfg.LockoutMax, cf("LockoutMax", "lockout-max"), def.LockoutMax, "longest lockout (0: the default, 15m)")
	return o
}

// configFieldsWithoutFlag are the server.Config fields deliberately not
// flags, with where they come from instead.
var configFieldsWithoutFlag = map[string]string{
	"DataDir":       "--data",
	"External":      "--oidc-* flags",
	"Now":           "the system clock",
	"Logger":        "--log-format and --log-level",
	"SmallMemory":   "tests and tools only",
	"Records":       "--store and --pg-url (Badger in --data by default)",
	"Schema":        "the default schema and --schema-extension",
	"NoSchema":      "tests of the transport only",
	"Demo":          "--demo",
	"EncryptionKey": "--encryption-key-file",
	"AuthStore":     "--store and --pg-url (Badger in --data by default)",
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if that is set, through the flag's own parser (so
// DOORSTEP_DEVICE_RATE=abc fails like --device-rate abc would).
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, serr)
			}
		}
	})
	return err
}

// limitsOf is the msgpack limits the three --max-msgpack-* flags set.
func (o *serveOptions) limitsOf() *crdt.Limits {
	return &crdt.Limits{MaxDepth: o.maxDepth, MaxLen: o.maxLen, MaxItems: o.maxItems}
}

// writeServeHelp lists every serve flag with its default and environment
// variable.
func writeServeHelp(w io.Writer) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	serveFlags(fs, &server.Config{})
	fmt.Fprintln(w, "\nserve flags (each may instead be given as the environment variable shown; a flag wins over its variable):")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%-34s %s\n", line, envName(f.Name))
		fmt.Fprintf(w, "        %s", usage)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprintln(w, "\nuser add reads the new user's password from DOORSTEP_PASSWORD, else from the first line of standard input.")
}
