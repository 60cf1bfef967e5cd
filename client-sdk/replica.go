package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/internal/badgeropen"
	"github.com/doorstep-health/doorstep/internal/layout"
	"github.com/doorstep-health/doorstep/schema"
)

// Ref names one record: its team, collection and ID.
type Ref = api.RecordRef

// Validator checks an op against the schema before the replica stores it.
// schema.Default() satisfies it.
type Validator interface {
	ValidateOp(op *crdt.Op) error
}

// CreateChecker is optionally implemented by a Validator to say which fields
// a collection requires when a record is created. schema.Default()
// satisfies it.
type CreateChecker interface {
	MissingOnCreate(collection string, fields []string) []string
}

// Options configure Open.
type Options struct {
	// Dir is the directory holding the replica's Badger files. Required.
	Dir string
	// EncryptionKey encrypts the replica at rest (AES, Badger's encryption):
	// 16, 24 or 32 bytes. Required unless InsecureNoEncryption is set. The
	// app keeps it, e.g. in the platform keystore; a replica opened with a
	// different key fails to open.
	EncryptionKey []byte
	// InsecureNoEncryption opens the replica without encryption. For tests.
	InsecureNoEncryption bool

	// ServerURL is the server's base URL, e.g. "https://doorstep.example".
	// Empty for a replica that only works offline.
	ServerURL string
	// HTTPClient sends requests; nil means a client with a 60 s timeout.
	HTTPClient *http.Client
	// DeviceName is sent on Login so admins can tell devices apart.
	DeviceName string

	// Validator checks every local write before it is stored; nil means
	// schema.Default(), the home-visit schema the server also validates
	// with. Its CRDT field types also let Create turn slices into set adds
	// or log appends.
	Validator Validator
	// NoValidation skips schema validation (the op's own shape is still
	// checked by crdt.Op.Validate): for tests and tools with free-form
	// collections.
	NoValidation bool
	// SchemaVersion is sent with every sync request; 0 means the version of
	// the Validator when it is a *schema.Schema.
	SchemaVersion int

	// Wall returns the device's wall-clock time; nil means time.Now.
	Wall func() time.Time
	// MaxClockSkew bounds how far ahead of the corrected local clock a
	// server timestamp may be and still be adopted; 0 means 5 minutes.
	MaxClockSkew time.Duration
	// ClockTolerance is the largest disagreement between the device's wall
	// clock and the server's that is left uncorrected; beyond it the
	// replica keeps an offset (see the package doc). 0 means 2 seconds.
	ClockTolerance time.Duration

	// MaxOpsPerChange caps the ops sealed into one change; 0 means 500.
	MaxOpsPerChange int
	// MaxChangesPerRequest caps the changes pushed in one request; 0 means 8.
	MaxChangesPerRequest int
	// PullLimit is the page size asked of the server; 0 means 500.
	PullLimit int
	// MaxValueBytes caps the encoded size of one value a write stores;
	// 0 means 60 KiB, under the server's default limit of 64 KiB for one
	// string or binary. A larger value fails with ErrTooLarge.
	MaxValueBytes int
	// MaxWriteOps and MaxWriteBytes cap one write (a Batch): its ops and
	// their estimated encoded size. 0 means 10,000 ops and 4 MiB, so that a
	// write always fits one request under the server's body limit. A
	// larger write fails with ErrTooLarge.
	MaxWriteOps, MaxWriteBytes int
	// MaxResponseBytes bounds a reply body; 0 means 64 MiB.
	MaxResponseBytes int64
	// PlainPush sends pushes in the plain msgpack form even to a server
	// that reads the packed one. For comparing the two.
	PlainPush bool
	// PlainPull asks the server for pulled changes in the default msgpack
	// form rather than the packed pull encoding (docs/PROTOCOL.md
	// "Packed pull encoding"), which is about half the bytes after gzip.
	// For comparing the two; a replica reads either.
	PlainPull bool
	// Serial sends one sync request at a time, as SDKs before pipelined
	// pushes did (docs/PROTOCOL.md "Pipelined pushes"); by default Sync
	// sends the next request while the server commits the one before, to a
	// server that orders them. For comparing the two.
	Serial bool

	// MaxRetryWait caps how long Sync waits when the server answers
	// rate_limited (or unavailable with a Retry-After) before it tries
	// again; it waits what the server asks, up to this, at most 10 times in
	// a row. 0 means 30 seconds.
	MaxRetryWait time.Duration

	// AttachmentRequestTime is how long one attachment upload or download
	// request should take at the link's measured rate: requests start at
	// 64 KiB and grow or shrink to it, never past 30 s of transfer nor
	// UploadChunk (4 MiB), so a slow link never runs into a timeout.
	// 0 means 10 seconds.
	AttachmentRequestTime time.Duration

	// PollInterval is how often the background loop syncs when nothing
	// triggers it, to pull others' changes; 0 means 1 minute.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the background loop's exponential
	// backoff after a failed sync; 0 means 1 s and 5 min.
	MinBackoff, MaxBackoff time.Duration

	// OnProgress, if set, is called after each pulled page is stored, with
	// the running totals of this Sync call. It runs on the syncing
	// goroutine: keep it short, and do not call Sync from it.
	OnProgress func(Progress)

	// Logger receives the replica's logs; nil discards them.
	Logger *slog.Logger
}

// Replica is a device's local copy of its teams' records, with an outbox of
// changes not yet acknowledged by the server. Its methods are safe for
// concurrent use.
type Replica struct {
	opts  Options
	db    *badger.DB
	id    crdt.ReplicaID
	clock *crdt.Clock
	log   *slog.Logger
	http  *http.Client

	serverMu gosync.Mutex
	server   string // base URL; see SetServerURL

	// wmu serializes every read-modify-write of local state: record writes,
	// sealing changes, applying sync results.
	wmu gosync.Mutex
	// lastBatchOps is the number of ops the last batch built, guarded by
	// wmu: room reserved for the next one's (write.go).
	lastBatchOps int
	// spareOps is a committed batch's op list, room for the next batch's
	// (write.go), guarded by wmu.
	spareOps []crdt.Op
	// lastNames are the last create's field names, sorted, lastVals its
	// values in that order, and lastPlan what it looked up in the schema,
	// guarded by wmu (write.go).
	lastNames []string
	lastVals  []any
	lastPlan  *createPlan
	// batchMu guards batches, the Batch calls waiting to be committed
	// (write.go: whoever takes wmu next commits all of them together).
	batchMu gosync.Mutex
	batches []*batchReq
	// rmu lets reads finish before Close closes the store.
	rmu gosync.RWMutex
	// syncMu makes Sync calls run one at a time.
	syncMu gosync.Mutex
	// hw is what the replica knows of the server's high-water seq
	// (highwater.go); guarded by syncMu.
	hw highWater
	// readsPacked: the last reply said the server reads packed pushes
	// (api.SyncResponse.ReadsPacked); stored with each reply (m/packedpush)
	// and loaded by Open. A server that stops reading them (replaced by an
	// older one) ignores a packed push and applies nothing; its reply,
	// without the flag, turns packing off, and the changes go plain in the
	// next request.
	readsPacked atomic.Bool
	// zstdRequests: the last sync reply's Accept-Encoding said the server
	// reads zstd requests (coding.go); stored with each reply (m/zstdpush)
	// and loaded by Open, so a restarted device's first push goes in zstd.
	// A server that stops reading zstd (replaced by an older one) refuses
	// a zstd body with 415, and the request is sent again gzipped
	// (transport.go).
	zstdRequests atomic.Bool
	// pipelines: what the last reply said of pipelining (capKnown,
	// capOrders: api.SyncResponse.Pipelines; pipeline.go); stored with
	// each reply (m/pipelines) and loaded by Open, so a restarted device
	// pipelines its first push. A server that stops ordering them says so
	// in its first reply, and the device stops.
	pipelines atomic.Uint32
	// authMu guards token refresh.
	authMu gosync.Mutex
	// blobMu serializes read-modify-writes of attachment metadata.
	blobMu gosync.Mutex
	// upLink and downLink size attachment requests to the link (linkrate.go).
	upLink, downLink chunkSizer
	fetchMu          gosync.Mutex // one attachment download at a time (download.go)

	sizeMu     gosync.Mutex
	sizes      RequestSizes // configured (Options, SetRequestSizes)
	pullLimit  int          // current pull page size (see requestSize)
	maxChanges int          // current changes per request

	offsetMu gosync.Mutex
	offset   time.Duration // added to the device wall clock (see package doc)
	floor    time.Time     // the clock never reads earlier than this

	statusMu gosync.Mutex
	status   Status

	subsMu gosync.Mutex
	subs   map[*subscriber]struct{}

	kick  chan struct{} // background trigger after a write, capacity 1
	netUp chan struct{} // NetworkUp, capacity 1

	closeCtx  context.Context
	closeFn   context.CancelFunc
	bgMu      gosync.Mutex
	bgRunning bool
	wg        gosync.WaitGroup // background loop and subscriber pumps
	closeOnce gosync.Once
	closeErr  error
}

// CurrentLayout is the version of the replica's local key layout this
// build writes (the m/layout key). A layout change bumps it and adds a
// migration to layoutMigrations; Open runs them and refuses a replica
// written by a newer build.
const CurrentLayout uint32 = 3

// layoutMigrations[v] upgrades a replica from layout v to v+1. Layout 0 is
// a replica written before it had a version key: the same keys as layout 1.
// Layout 2 holds record states in crdt state encoding 2; Open rewrites
// them before these run (rewriteStatesForLayout2, in layout.go). Layout 3
// writes outbox entries packed (outboxentry.go) and reads both forms, so
// the entries of an older layout stay as they are: nothing to rewrite,
// but an older build, which cannot read the packed form, must not open
// the replica again.
var layoutMigrations = map[uint32]layout.Migration{
	0: func(*badger.Txn) error { return nil },
	1: func(*badger.Txn) error { return nil },
	2: func(*badger.Txn) error { return nil },
}

// Local key layout; see STORAGE in the package doc.
var (
	keyLayout   = []byte("m/layout")
	keyReplica  = []byte("m/replica")
	keyNextSeq  = []byte("m/nextseq")
	keyNextOp   = []byte("m/nextop")
	keyCursor   = []byte("m/cursor")
	keyTokens   = []byte("m/tokens")
	keyClock    = []byte("m/clock")
	keyOffset   = []byte("m/offset")
	keySuccess  = []byte("m/lastsuccess")
	keyPacked   = []byte("m/packedpush")
	keyZstd     = []byte("m/zstdpush")
	keyPipeline = []byte("m/pipelines")
	prefRecord  = []byte("r/")
	prefPending = []byte("o/")
	prefChange  = []byte("c/")
	prefReject  = []byte("q/")
)

func recordKey(ref Ref) []byte {
	return []byte("r/" + ref.Team + "\x00" + ref.Collection + "\x00" + ref.ID)
}

func u64Key(prefix []byte, n uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte{}, prefix...), n)
}

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func u64Bytes(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// deviceMemTable and deviceValueThreshold are the device's Badger
// memtable size and value threshold (Open). Until issue 17's fourth pass
// they were 16 MiB and 32 KiB; a replica written with those opens with
// these as it is (TestOpenReplicaOfOlderOptions).
// Variables for that test.
var (
	deviceMemTable       int64 = 32 << 20
	deviceValueThreshold int64 = 128 << 10
)

// Open opens or creates the replica in opts.Dir. A new replica gets a fresh
// replica ID, kept for its lifetime.
func Open(ctx context.Context, opts Options) (*Replica, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, errors.New("client: Options.Dir is required")
	}
	bopts := badger.DefaultOptions(opts.Dir).
		// Every commit synced, value log before memtable log. Not off
		// with a DB.Sync after the commits that must be durable (issue
		// 17 fifth pass tried it, to store sync replies unsynced): with
		// SyncWrites off a commit's value-log bytes (values of the value
		// threshold and over) and its memtable-log entry pointing at them
		// reach the disk in whatever order the kernel writes them back,
		// and DB.Sync itself syncs the memtable log first, so a power cut
		// could keep a pointer to value-log bytes that were never written:
		// a record that no longer reads. With it on, Badger msyncs the
		// value log before it writes the pointers (v4.9.6 value.go
		// valueLog.write, then db.go writeToLSM). docs/benchmarks.md.
		WithSyncWrites(true).
		WithLogger(nil).
		// A transaction may hold 15% of a memtable: 4.8 MiB, so that a
		// batch of creates up to MaxWriteBytes fits with its records'
		// states and its outbox group.
		WithMemTableSize(deviceMemTable).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithValueLogFileSize(64 << 20).
		// Values of 128 KiB and more (big record states, big outbox
		// groups) go to the value log, so they count only a pointer
		// against the transaction's size limit. Smaller ones, a form's
		// record and the outbox group of a batch of up to about 4,000
		// small ops among them, stay in the LSM tree: a durable batch then
		// writes one file (the memtable's log), not two (Badger still
		// msyncs the current value-log file on every commit, and finds
		// nothing to write there), and an
		// outbox group, deleted once sealed, is reclaimed by compaction,
		// where in the value log (which the device never
		// garbage-collects) it would stay on disk.
		WithValueThreshold(deviceValueThreshold).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithNumCompactors(2)
	switch n := len(opts.EncryptionKey); {
	case n == 16 || n == 24 || n == 32:
		bopts = bopts.WithEncryptionKey(opts.EncryptionKey)
	case n == 0 && opts.InsecureNoEncryption:
	case n == 0:
		return nil, ErrNoKey
	default:
		return nil, fmt.Errorf("client: encryption key is %d bytes, want 16, 24 or 32", n)
	}
	setDefaults(&opts)
	db, err := badgeropen.Open(bopts, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("client: open replica in %s: %w", opts.Dir, err)
	}
	r := &Replica{
		opts:   opts,
		db:     db,
		log:    opts.Logger,
		http:   opts.HTTPClient,
		server: strings.TrimRight(opts.ServerURL, "/"),
		sizes:  RequestSizes{PullLimit: opts.PullLimit, MaxChangesPerRequest: opts.MaxChangesPerRequest, MaxOpsPerChange: opts.MaxOpsPerChange},
		subs:   map[*subscriber]struct{}{},
		kick:   make(chan struct{}, 1),
		netUp:  make(chan struct{}, 1),
	}
	r.closeCtx, r.closeFn = context.WithCancel(context.Background())
	if err := r.rewriteStatesForLayout2(); err != nil {
		r.closeFn()
		db.Close()
		return nil, err
	}
	if from, err := layout.Migrate(db, layout.Spec{Key: keyLayout, Current: CurrentLayout, Migrations: layoutMigrations}); err != nil {
		r.closeFn()
		db.Close()
		return nil, fmt.Errorf("client: replica in %s: %w", opts.Dir, err)
	} else if from != CurrentLayout {
		r.log.Info("replica layout migrated", "from", from, "to", CurrentLayout)
	}
	if err := r.load(); err != nil {
		r.closeFn()
		db.Close()
		return nil, err
	}
	return r, nil
}

func setDefaults(o *Options) {
	if o.Validator == nil && !o.NoValidation {
		o.Validator = schema.Default()
	}
	if o.NoValidation {
		o.Validator = nil
	}
	if sc, ok := o.Validator.(*schema.Schema); ok && o.SchemaVersion == 0 {
		o.SchemaVersion = sc.Version()
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if o.Wall == nil {
		o.Wall = time.Now
	}
	if o.MaxClockSkew <= 0 {
		o.MaxClockSkew = 5 * time.Minute
	}
	if o.ClockTolerance <= 0 {
		o.ClockTolerance = 2 * time.Second
	}
	if o.MaxOpsPerChange <= 0 {
		o.MaxOpsPerChange = 500
	}
	if o.MaxChangesPerRequest <= 0 {
		o.MaxChangesPerRequest = 8
	}
	if o.PullLimit <= 0 {
		o.PullLimit = 500
	}
	if o.MaxValueBytes <= 0 {
		o.MaxValueBytes = 60 << 10
	}
	if o.MaxWriteOps <= 0 {
		o.MaxWriteOps = 10_000
	}
	if o.MaxWriteBytes <= 0 {
		o.MaxWriteBytes = maxRequestBytes
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = 64 << 20
	}
	if o.MaxRetryWait <= 0 {
		o.MaxRetryWait = 30 * time.Second
	}
	if o.AttachmentRequestTime <= 0 {
		o.AttachmentRequestTime = 10 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Minute
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// load reads or creates the replica ID, restores the clock, the offset and
// the status counters.
func (r *Replica) load() error {
	var last crdt.Timestamp
	err := r.db.Update(func(txn *badger.Txn) error {
		v, err := get(txn, keyReplica)
		switch {
		case err != nil:
			return err
		case v == nil:
			r.id = crdt.NewReplicaID()
			if err := txn.Set(keyReplica, r.id[:]); err != nil {
				return err
			}
		case len(v) != len(r.id):
			return fmt.Errorf("client: stored replica id is %d bytes", len(v))
		default:
			copy(r.id[:], v)
		}
		if v, err := get(txn, keyClock); err != nil {
			return err
		} else {
			last = crdt.Timestamp(u64(v))
		}
		if v, err := get(txn, keyOffset); err != nil {
			return err
		} else {
			r.offset = time.Duration(int64(u64(v)))
		}
		if v, err := get(txn, keySuccess); err != nil {
			return err
		} else if n := int64(u64(v)); n != 0 {
			r.status.LastSuccess = time.UnixMilli(n)
		}
		if v, err := get(txn, keyPacked); err != nil {
			return err
		} else {
			r.readsPacked.Store(len(v) == 1 && v[0] == 1)
		}
		// Absent in a replica whose last reply was stored by a build
		// before m/zstdpush (layout 3 from before issue 17's fourth
		// pass): gzip until the next reply says otherwise.
		if v, err := get(txn, keyZstd); err != nil {
			return err
		} else {
			r.zstdRequests.Store(len(v) == 1 && v[0] == 1)
		}
		if v, err := get(txn, keyPipeline); err != nil {
			return err
		} else {
			r.pipelines.Store(loadPipelines(v)) // pipeline.go
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("client: load replica state: %w", err)
	}
	// The clock must never issue an ID at or below one it issued before a
	// restart, even if the device's clock was set back: floor it at the last
	// stored reading and let the HLC count logically from there.
	r.floor = last.Time()
	r.clock = crdt.NewClock(r.now, r.opts.MaxClockSkew)
	if last != 0 {
		if err := r.clock.Update(last); err != nil {
			return fmt.Errorf("client: restore clock: %w", err)
		}
	}
	pending, err := r.countPending()
	if err != nil {
		return err
	}
	r.status.Pending = pending
	return nil
}

// SetServerURL changes the server the replica syncs with, e.g. after the
// user picks another deployment; "" makes it offline-only (Sync returns
// ErrNoServer). It takes effect from the next request. Tokens and the pull
// cursor are kept: a different server refuses the tokens (Login again) and
// answers an unknown cursor with a fresh bootstrap.
func (r *Replica) SetServerURL(url string) {
	r.serverMu.Lock()
	defer r.serverMu.Unlock()
	r.server = strings.TrimRight(url, "/")
}

func (r *Replica) serverURL() string {
	r.serverMu.Lock()
	defer r.serverMu.Unlock()
	return r.server
}

// RequestSizes are the sizes of sync requests; see the Options fields of
// the same names.
type RequestSizes struct {
	PullLimit            int
	MaxChangesPerRequest int
	MaxOpsPerChange      int
}

// RequestSizes returns the configured request sizes.
func (r *Replica) RequestSizes() RequestSizes {
	r.sizeMu.Lock()
	defer r.sizeMu.Unlock()
	return r.sizes
}

// SetRequestSizes changes the request sizes from the next request on, e.g.
// when the app learns it is on a slow link; a zero field keeps its value.
// Changes already sealed keep their size.
func (r *Replica) SetRequestSizes(s RequestSizes) {
	r.sizeMu.Lock()
	defer r.sizeMu.Unlock()
	if s.PullLimit > 0 {
		r.sizes.PullLimit = s.PullLimit
	}
	if s.MaxChangesPerRequest > 0 {
		r.sizes.MaxChangesPerRequest = s.MaxChangesPerRequest
	}
	if s.MaxOpsPerChange > 0 {
		r.sizes.MaxOpsPerChange = s.MaxOpsPerChange
	}
	r.pullLimit, r.maxChanges = r.sizes.PullLimit, r.sizes.MaxChangesPerRequest
}

// ID returns the replica's ID, which is also its device ID.
func (r *Replica) ID() crdt.ReplicaID { return r.id }

// Clock returns the replica's hybrid logical clock.
func (r *Replica) Clock() *crdt.Clock { return r.clock }

// Close stops the background loop and subscriptions, waits for them, and
// closes the store. Writes that returned before Close are durable.
func (r *Replica) Close() error {
	r.closeOnce.Do(func() {
		// Cancel under the locks Background and Subscribe hold while they
		// check closed() and call wg.Add: each either sees the replica
		// closed, or has added to wg before Wait below starts.
		r.bgMu.Lock()
		r.subsMu.Lock()
		r.closeFn()
		r.subsMu.Unlock()
		r.bgMu.Unlock()
		r.wg.Wait()
		r.syncMu.Lock() // wait for a Sync in flight (its requests are cancelled)
		r.wmu.Lock()
		r.rmu.Lock()
		r.closeErr = r.db.Close()
		r.rmu.Unlock()
		r.wmu.Unlock()
		r.syncMu.Unlock()
	})
	return r.closeErr
}

func (r *Replica) closed() bool { return r.closeCtx.Err() != nil }

// view runs fn in a read-only transaction, unless the replica is closed.
func (r *Replica) view(fn func(txn *badger.Txn) error) error {
	r.rmu.RLock()
	defer r.rmu.RUnlock()
	if r.closed() {
		return ErrClosed
	}
	return r.db.View(fn)
}

// get returns a copy of the value at key, or nil if there is none.
func get(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// countPending returns the number of ops not yet acknowledged: in unsealed
// write groups and in sealed changes.
func (r *Replica) countPending() (int, error) {
	n := 0
	err := r.view(func(txn *badger.Txn) error {
		for _, p := range [][]byte{prefChange, prefPending} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: p, PrefetchValues: true})
			for it.Rewind(); it.Valid(); it.Next() {
				err := it.Item().Value(func(v []byte) error {
					k, err := entryOps(v)
					n += k
					return err
				})
				if err != nil {
					it.Close()
					return err
				}
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("client: count outbox: %w", err)
	}
	return n, nil
}
