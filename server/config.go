package server

import (
	"log/slog"
	"path/filepath"
	"time"

	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/blob"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/store"
)

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// DataDir holds the record store (DataDir/records), the auth store
	// (DataDir/auth) and the signing keys (DataDir/keys). Required.
	DataDir string
	// Issuer and Audience of access tokens; default "doorstep".
	Issuer, Audience string
	// AccessTTL is the access token lifetime; default 15 minutes.
	AccessTTL time.Duration
	// RefreshTTL is the refresh token lifetime; default 30 days (each
	// refresh starts a new one).
	RefreshTTL time.Duration
	// ReuseGrace is how long a spent refresh token may be presented again
	// without counting as reuse (a device that lost the reply); default
	// 30 s, negative disables.
	ReuseGrace time.Duration
	// BcryptCost of new password hashes; 0 means bcrypt's default.
	BcryptCost int
	// External, if set, enables POST /v1/auth/exchange: ID tokens of an
	// OpenID Connect issuer in place of passwords (see auth.ExternalIssuer).
	External *auth.ExternalIssuer

	// MaxSyncBody caps a sync request body as sent (compressed or not);
	// default 8 MiB.
	MaxSyncBody int64
	// MaxSyncDecoded caps a sync request body after gzip decoding; default
	// 16 MiB.
	MaxSyncDecoded int64
	// MaxJSONBody caps JSON request bodies, sent and decoded; default 64 KiB.
	MaxJSONBody int64
	// PageBytes caps the bytes of one pulled page (at least one item is
	// always returned); 0 means the engine's default, 1 MiB.
	PageBytes int
	// MaxConcurrentSyncs bounds the sync requests processed at once (their
	// bodies already read); others wait their turn (or get 503
	// unavailable if they give up first). Default 32.
	MaxConcurrentSyncs int
	// MaxSyncsPerDevice bounds one device's sync requests in flight,
	// counted from before the body is read; more get 429 rate_limited at
	// once. Default 2.
	MaxSyncsPerDevice int
	// MinBodyRate (bytes/s) and BodyGrace: a sync body must keep arriving
	// at MinBodyRate on average once BodyGrace has passed, or the request
	// fails with 408 request_timeout. Defaults 2 KiB/s and 10 s.
	MinBodyRate int
	BodyGrace   time.Duration
	// BodyBudget bounds the bytes of sync bodies being received at once,
	// across all requests; when full, a request gets 503 unavailable at
	// once. Default 128 MiB.
	BodyBudget int64
	// SyncMemoryBudget bounds the memory of sync requests being decoded
	// and processed, each charged SyncMemoryFactor × its decoded body
	// (bodies of at most SmallSyncBytes draw on SmallSyncBudget instead);
	// requests wait up to BudgetWait for room, then get 503 unavailable.
	// Defaults 384 MiB and 20 s. docs/SECURITY.md gives the RSS ceiling
	// these make.
	SyncMemoryBudget int64
	BudgetWait       time.Duration
	// PipelineHoldBytes bounds the bytes one device's pipelined sync
	// requests hold, read and decoded, while they wait for the request
	// before them (docs/PROTOCOL.md "Pipelined pushes"); one that does not
	// fit waits before its body is read. Default 8 MiB; negative: none is
	// held decoded. All devices' together hold at most SyncMemoryBudget /
	// (2 × SyncMemoryFactor).
	PipelineHoldBytes int64
	// OverlapCommits lets the committer build the next group of pushes
	// while a commit is being fsynced (sync.Options.OverlapCommits; Badger
	// only). Off by default.
	OverlapCommits bool
	// Limits bound the msgpack structure of a sync request, checked before
	// decoding; nil means DefaultLimits.
	Limits *crdt.Limits

	// MaxBlobSize bounds one attachment file in bytes; default
	// blob.DefaultMaxFileSize (32 MiB). BlobTeamQuota bounds a team's
	// stored attachments plus unfinished uploads; default
	// blob.DefaultTeamQuota (20 GiB).
	MaxBlobSize, BlobTeamQuota int64
	// UploadTTL is how long an unfinished attachment upload is kept after
	// its last write before it is removed and its quota released; default
	// blob.DefaultUploadTTL (7 days).
	UploadTTL time.Duration

	// DeviceRate is the sustained requests per second allowed per device on
	// authenticated routes, with bursts of DeviceBurst; default 10/s, burst
	// 40. A negative rate disables the limit.
	DeviceRate  float64
	DeviceBurst int
	// AuthRate and AuthBurst limit login and refresh per client IP; default
	// 5/s, burst 20. A negative rate disables the limit.
	AuthRate  float64
	AuthBurst int
	// TrustProxy takes the client address for the login rate limit from
	// X-Forwarded-For (set it only behind a reverse proxy that overwrites
	// that header); by default the connection's address is used.
	TrustProxy bool

	// HTTP server timeouts used by Serve; defaults 2 min to read a request,
	// 3 min to write a reply, 2 min idle, 10 s for headers. Generous on
	// purpose: a tablet on a 64 kbit/s link needs about 20 s to push a
	// week's 5,000 ops gzipped; a slow-header client is cut off at 10 s.
	ReadTimeout, WriteTimeout, IdleTimeout, ReadHeaderTimeout time.Duration

	// MaxSkew is how far ahead of the server clock an op may be stamped
	// before it is quarantined; 0 means the engine's default (5 minutes).
	MaxSkew time.Duration
	// Now is the clock used by auth and the engine; default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// SmallMemory shrinks the record store's caches (tests, tools).
	SmallMemory bool
	// Records, if set, is the records store, opened by the caller (for
	// example on PostgreSQL, so several servers share it); the server owns
	// it from New on and closes it. Nil opens the embedded default: Badger
	// in DataDir/records, with SmallMemory and EncryptionKey (see
	// openRecords).
	Records store.KV
	// Schema validates pushed ops and marks clinical fields in the review
	// API; nil means schema.Default().
	Schema *schema.Schema
	// EncryptionKey, if set, encrypts the record and auth stores at rest
	// (Badger AES; 16, 24 or 32 bytes), and the attachment files written
	// from then on (blob.Config.EncryptionKey). Stores created with a key
	// must be opened with it.
	EncryptionKey []byte
	// ErasureJournal is the file each erasure is appended to (IDs only), so
	// a restore of an older backup can re-apply it; default
	// DataDir/erasures.jsonl. Keep a copy off the data volume (see
	// docs/OPERATIONS.md).
	ErasureJournal string
	// BackupDir is where POST /v1/admin/backups writes backup files; empty
	// disables that route (GET /v1/admin/backup still streams one).
	BackupDir string
	// NoSchema turns off schema validation of pushed ops (tests of the
	// transport only).
	NoSchema bool

	// Accounts (see auth.Config): Demo lets users seeded by --demo log in
	// (they are refused otherwise); MaxDevicesPerUser bounds the devices
	// of one user (default auth.DefaultMaxDevicesPerUser, negative: no
	// bound); LockoutThreshold failed logins lock a username for
	// LockoutBase, doubling up to LockoutMax (defaults 5, 1 min, 15 min;
	// a negative threshold disables the lockout).
	Demo              bool
	MaxDevicesPerUser int
	LockoutThreshold  int
	LockoutBase       time.Duration
	LockoutMax        time.Duration

	// AuthStore, if set, is the auth store (users, devices, refresh
	// chains, lockouts, audit trail), opened by the caller: for example a
	// table on PostgreSQL, so that several servers share it and a device
	// revoked through one is refused by all (see auth.New; the servers
	// then share the signing keys through it too). The server owns it from
	// New on and closes it. Nil opens the embedded default, Badger in
	// DataDir/auth (see openAuth).
	AuthStore store.KV
}

// DefaultLimits bound the msgpack structure of a sync request: 32 levels of
// nesting, 65,536 elements in one array or map (or bytes in one string or
// binary), 1,048,576 values in all. Tighter than crdt.DefaultLimits on
// lengths because the decoder preallocates a declared array's full length
// of Go structs (an op is ~150 bytes in memory).
var DefaultLimits = crdt.Limits{MaxDepth: 32, MaxLen: 1 << 16, MaxItems: 1 << 20}

// Defaults returns c with every zero field set to its documented default
// (what New uses), e.g. to show the defaults in a command's help.
func (c Config) Defaults() Config {
	c.defaults()
	return c
}

func (c *Config) defaults() {
	if c.MaxBlobSize <= 0 {
		c.MaxBlobSize = blob.DefaultMaxFileSize
	}
	if c.BlobTeamQuota <= 0 {
		c.BlobTeamQuota = blob.DefaultTeamQuota
	}
	if c.UploadTTL <= 0 {
		c.UploadTTL = blob.DefaultUploadTTL
	}
	if c.ErasureJournal == "" {
		c.ErasureJournal = filepath.Join(c.DataDir, "erasures.jsonl")
	}
	if c.MaxSyncBody <= 0 {
		c.MaxSyncBody = 8 << 20
	}
	if c.MaxSyncDecoded <= 0 {
		c.MaxSyncDecoded = 16 << 20
	}
	if c.MaxJSONBody <= 0 {
		c.MaxJSONBody = 64 << 10
	}
	if c.MaxConcurrentSyncs <= 0 {
		c.MaxConcurrentSyncs = 32
	}
	if c.MaxSyncsPerDevice <= 0 {
		c.MaxSyncsPerDevice = 2
	}
	if c.MinBodyRate <= 0 {
		c.MinBodyRate = 2 << 10
	}
	if c.BodyGrace <= 0 {
		c.BodyGrace = 10 * time.Second
	}
	if c.BodyBudget <= 0 {
		c.BodyBudget = 128 << 20
	}
	if c.SyncMemoryBudget <= 0 {
		c.SyncMemoryBudget = 384 << 20
	}
	if c.BudgetWait <= 0 {
		c.BudgetWait = 20 * time.Second
	}
	if c.PipelineHoldBytes == 0 {
		c.PipelineHoldBytes = 8 << 20
	}
	if c.Limits == nil {
		l := DefaultLimits
		c.Limits = &l
	}
	if c.DeviceRate == 0 {
		c.DeviceRate = 10
	}
	if c.DeviceBurst <= 0 {
		c.DeviceBurst = 40
	}
	if c.AuthRate == 0 {
		c.AuthRate = 5
	}
	if c.AuthBurst <= 0 {
		c.AuthBurst = 20
	}
	if c.Issuer == "" {
		c.Issuer = "doorstep"
	}
	if c.Audience == "" {
		c.Audience = "doorstep"
	}
	if c.AccessTTL <= 0 {
		c.AccessTTL = 15 * time.Minute
	}
	if c.RefreshTTL <= 0 {
		c.RefreshTTL = 30 * 24 * time.Hour
	}
	if c.ReuseGrace == 0 {
		c.ReuseGrace = 30 * time.Second
	}
	if c.PageBytes <= 0 {
		c.PageBytes = 1 << 20
	}
	if c.MaxSkew <= 0 {
		c.MaxSkew = 5 * time.Minute
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 2 * time.Minute
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 3 * time.Minute
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.Schema == nil {
		c.Schema = schema.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}
