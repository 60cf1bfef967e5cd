package sync

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/sync/review"
)

// Sentinel errors. Errors returned by the Engine wrap one of them where a
// caller may branch on it (with errors.Is).
var (
	// ErrNotFound: no such record or quarantine entry (review.ErrNotFound).
	ErrNotFound = review.ErrNotFound
	// ErrForbidden: the record or team is outside the caller's teams
	// (review.ErrForbidden).
	ErrForbidden = review.ErrForbidden
	// ErrProtocol: the request's protocol version is not supported.
	ErrProtocol = errors.New("sync: unsupported protocol")
	// ErrDeviceMismatch: the request's replica is not the caller's.
	ErrDeviceMismatch = errors.New("sync: device mismatch")
	// ErrClosed: the engine is closed.
	ErrClosed = errors.New("sync: engine closed")
	// ErrBadCursor: a pull cursor that this server did not issue
	// (review.ErrBadCursor).
	ErrBadCursor = review.ErrBadCursor
	// ErrInvalid: a resolve or re-apply whose op is not valid (wrong field
	// type, schema violation, still too far in the future; review.ErrInvalid).
	ErrInvalid = review.ErrInvalid
	// ErrTooLarge: a single change too big for one storage transaction.
	ErrTooLarge = errors.New("sync: change too large")
)

// Validator checks a pushed op against the schema; *schema.Schema
// satisfies it. An op it rejects is quarantined with api.CodeUnknownField
// when the error wraps schema.ErrUnknownField or schema.ErrUnknownCollection,
// and api.CodeInvalidValue otherwise. It must be safe for concurrent use
// and depend on the op alone: pushes run it in their own goroutines,
// before the committer.
type Validator interface {
	ValidateOp(op *crdt.Op) error
}

var _ Validator = (*schema.Schema)(nil)

// Caller is who is pushing or pulling, as the server authenticated it
// (defined in package review, the engine's vocabulary the console shares).
type Caller = review.Caller

// Options configure Open.
type Options struct {
	// Store is the records store (store/badger by default, store/memory in
	// tests, store/postgres for several servers): the engine runs the
	// layout migrations on it at Open and owns it from then on (Close
	// closes it, and so does a failed Open).
	Store store.KV
	// Validator validates pushed ops (normally the *schema.Schema); nil
	// accepts every well-formed op.
	Validator Validator
	Wall      func() time.Time // nil means time.Now
	// MaxSkew: ops stamped further ahead of the server clock are quarantined
	// (code clock_skew); 0 means 5 minutes.
	MaxSkew time.Duration
	Logger  *slog.Logger // nil means slog.Default()
	// PageBytes caps the bytes of one pulled page (at least one item is
	// always returned); 0 means 1 MiB.
	PageBytes int
	// Bounds holds the record size bounds and the quarantine quotas and
	// expiry; zero fields take DefaultBounds.
	Bounds Bounds
	// Rules are the clinical-conflict rules; nil means the Validator's, if
	// it implements ClinicalRules (a *schema.Schema does), else none.
	Rules ClinicalRules
	// OverlapCommits builds a group of pushes while the commit before it
	// is in flight, on a store that can overlap commits (store.Overlapper;
	// see the package doc, "Overlapped commits"); a shared store never
	// does. Off by default: on the 2-core machine it was measured on, the
	// committer stopped waiting for fsyncs but the process spent more CPU
	// (msync and the build, run side by side) and no less wall time
	// (docs/benchmarks.md, issue 17 fifth pass, i17-overlap).
	OverlapCommits bool
}

// Page limits.
const (
	DefaultPullLimit = 500
	MaxPullLimit     = 5000
	defaultPageBytes = 1 << 20
	maxGroup         = 256 // requests per commit group
	maxNameLen       = 256 // bytes in a team, collection, record or field name
)

// Engine is the sync engine over one store.KV. It is safe for concurrent
// use.
type Engine struct {
	kv        store.KV
	shared    bool // kv.Shared(): other processes write it too (see doc.go)
	log       *slog.Logger
	wall      func() time.Time
	clock     *crdt.Clock
	validator Validator
	rules     ClinicalRules
	server    crdt.ReplicaID
	pageBytes int
	bounds    Bounds
	lastSweep time.Time // owned by the committer
	// splitAt is the least writeWeight of a commit the store refused as
	// too big (store.ErrTxnTooBig), 0 before any; owned by the committer
	// (see commitGroup).
	splitAt int
	// overlap: the store overlaps commits (store.Overlapper) and may;
	// fly is the commit in flight, owned by the committer (overlap.go).
	overlap bool
	fly     *inflight
	// overlapped counts the groups built while the commit ahead of them
	// was in flight, and redone those built again because it failed.
	overlapped, redone atomic.Int64
	// commitWait is the time the committer spent waiting for commits to
	// be durable (Commit, or land waiting for the commit in flight), in
	// nanoseconds: what overlapping commits takes off its serial path.
	commitWait atomic.Int64
	// orderedMu guards ordered: per replica, the last seq of a push the
	// committer has taken from its queue and not yet answered (see
	// OrderedHighWater).
	orderedMu gosync.Mutex
	ordered   map[crdt.ReplicaID]uint64
	epoch     store.Epoch   // current epoch, fixed while open
	past      []store.Epoch // earlier epochs of this store, oldest first

	reqs chan *request
	stop chan struct{}
	done chan struct{}

	// scrubMu: a scrub (scrub.go) holds it exclusively while it drops and
	// rewrites keys; pulls hold it shared, so none sees a log entry
	// missing for a moment. backups counts open backup transactions,
	// during which scrubs wait in pendingScrub (run when the last ends).
	scrubMu      gosync.RWMutex
	backupMu     gosync.Mutex // guards backups and pendingScrub
	backups      int
	pendingScrub [][]byte
	scrubKick    chan struct{}

	mu       gosync.RWMutex
	closed   bool
	inflight gosync.WaitGroup
}

// Open migrates the layout of opts.Store if needed, loads the engine's
// meta keys and starts its committer.
func Open(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Store == nil {
		return nil, errors.New("sync: no store")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	wall := opts.Wall
	if wall == nil {
		wall = time.Now
	}
	skew := opts.MaxSkew
	if skew == 0 {
		skew = 5 * time.Minute
	}
	st := opts.Store
	if err := store.Migrate(ctx, st, logger); err != nil {
		st.Close()
		return nil, fmt.Errorf("sync: %w", err)
	}
	e := &Engine{
		kv: st, shared: st.Shared(), log: logger, wall: wall,
		clock:     crdt.NewClock(wall, skew),
		validator: opts.Validator,
		rules:     rulesOf(opts),
		pageBytes: opts.PageBytes,
		reqs:      make(chan *request, maxGroup),
		scrubKick: make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	if e.pageBytes <= 0 {
		e.pageBytes = defaultPageBytes
	}
	e.bounds = opts.Bounds.orDefault()
	if err := e.load(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("sync: open: %w", err)
	}
	if err := e.backfillTerms(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("sync: open: %w", err)
	}
	if opts.OverlapCommits && !e.shared {
		txn, err := st.Begin(ctx, true)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("sync: open: %w", err)
		}
		var ov store.Overlapper
		if ov, e.overlap = txn.(store.Overlapper); e.overlap {
			// Prepares the store (see store.Overlapper): the empty
			// transaction commits nothing, overlapped or not.
			if next, err := ov.CommitOverlapped(func(error) {}); err == nil {
				next.Discard()
			}
		}
		txn.Discard()
	}
	go e.committer()
	return e, nil
}

// load reads the engine's meta keys, creating the server replica ID on first
// open, and moves the HLC past the newest stored op.
func (e *Engine) load(ctx context.Context) error {
	return e.kv.Update(ctx, func(txn store.Tx) error {
		b, err := txn.Get(store.KeyServerReplica)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if _, err := rand.Read(e.server[:]); err != nil {
				return err
			}
			if err := txn.Set(store.KeyServerReplica, e.server[:]); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if len(b) != len(e.server) {
				return fmt.Errorf("%w: server replica", store.ErrBadValue)
			}
			copy(e.server[:], b)
		}
		if e.epoch, e.past, err = store.ReadEpochs(txn); err != nil {
			return err
		}
		if e.epoch.IsZero() {
			// First open (or a store from before epochs): start the first.
			if e.epoch, err = store.StartEpoch(txn); err != nil {
				return err
			}
		}
		if err := store.RecoverScrub(txn); err != nil {
			return err
		}
		return nil
	})
}

// Ping proves the store takes durable writes: it writes store.KeyPing (the
// wall time in Unix ms) in its own write transaction, durable like every
// commit, and reads it back. It does not go through the committer queue:
// a readiness probe must answer within its timeout even while many
// requests are queued, and a busy queue is not a broken store. Write
// transactions are serialized by the store, so it waits at most for the
// commit group being written. No other code writes KeyPing.
func (e *Engine) Ping(ctx context.Context) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.inflight.Done()
	if err := ctx.Err(); err != nil {
		return err
	}
	ms := uint64(e.wall().UnixMilli())
	if err := e.kv.Update(ctx, func(txn store.Tx) error { return txn.Set(store.KeyPing, store.PutU64(ms)) }); err != nil {
		return fmt.Errorf("sync: ping write: %w", err)
	}
	if err := e.kv.View(ctx, func(txn store.Tx) error {
		_, err := store.GetU64Key(txn, store.KeyPing)
		return err
	}); err != nil {
		return fmt.Errorf("sync: ping read: %w", err)
	}
	return nil
}

// ServerReplica returns the server's own replica ID, which stamps the ops
// of Resolve.
func (e *Engine) ServerReplica() crdt.ReplicaID { return e.server }

// Clock returns the server's current HLC reading without advancing it.
func (e *Engine) Clock() crdt.Timestamp { return e.clock.Last() }

// enter registers an in-flight call; the caller must call e.inflight.Done.
func (e *Engine) enter() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return ErrClosed
	}
	e.inflight.Add(1)
	return nil
}

// Close waits for in-flight calls, stops the committer and closes the
// store.
// Calls after Close return ErrClosed.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.inflight.Wait()
	close(e.stop)
	<-e.done
	if err := e.kv.Close(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// Sync handles one sync round trip: it checks the protocol and replica,
// updates the server HLC from req.Clock, pushes req.Changes, then pulls one
// page after req.Cursor (bootstrapping from a snapshot if the cursor is
// empty or expired).
//
// It is PrepareSync and SyncPrepared in one call (prepare.go).
func (e *Engine) Sync(ctx context.Context, c Caller, req *api.SyncRequest) (*api.SyncResponse, error) {
	return e.SyncPrepared(ctx, e.PrepareSync(c, req))
}

// syncPrepared is Sync of p's request, with its push prepared (p.push) if
// PrepareSync could.
func (e *Engine) syncPrepared(ctx context.Context, p *PreparedSync) (*api.SyncResponse, error) {
	c, req := p.c, p.req
	if req == nil || req.Protocol != api.ProtocolVersion {
		v := 0
		if req != nil {
			v = req.Protocol
		}
		return nil, fmt.Errorf("%w: version %d, want %d", ErrProtocol, v, api.ProtocolVersion)
	}
	if req.Replica != c.Replica || c.Replica.IsZero() {
		return nil, fmt.Errorf("%w: request names replica %s", ErrDeviceMismatch, req.Replica)
	}
	if err := e.clock.Update(req.Clock); err != nil {
		// A skewed device clock is not adopted; its ops are checked one by
		// one in the push.
		e.log.Debug("device clock ahead of server", "replica", c.Replica, "err", err)
	}
	if e.staleEpoch(req) {
		resp, err := e.syncStale(ctx, c, req)
		if resp != nil {
			resp.Scope = &api.Scope{Teams: teamSet(c.Teams)}
		}
		return resp, err
	}
	if err := e.rebaseLegacy(ctx, c, req); err != nil {
		return nil, err
	}
	var results []api.ChangeResult
	if len(req.Changes) > 0 {
		var err error
		r := p.pushFor(req.Changes)
		if r == nil {
			r = e.preparePush(c, req.Changes, false)
		}
		r.ordered = p.Ordered
		results, err = e.commitPush(ctx, c, req.Changes, r)
		p.pushed()
		if err != nil {
			return nil, err
		}
	}
	resp, err := e.pullFor(ctx, c, req) // pipeline.go: none for a push-only request
	if err != nil {
		return nil, err
	}
	resp.Results = results
	resp.Purged = purgeRefused(resp.Purged, req.Changes, results)
	resp.Scope = &api.Scope{Teams: teamSet(c.Teams)}
	if resp.Replace, err = e.replacements(ctx, req.Changes, results); err != nil {
		return nil, err
	}
	resp.Epoch = e.epoch[:]
	if resp.HighWater, err = e.replicaHighWater(ctx, c.Replica); err != nil { // highwater.go
		return nil, err
	}
	return resp, nil
}

// purgeRefused adds to purged (a reply's erasures) each record an op of
// changes was refused for as api.CodeRecordErased, once: the device may
// never pull that erasure (its cursor is past it after a restore's
// bootstrap, which lists none) and must not keep its copy.
func purgeRefused(purged []api.RecordRef, changes []api.Change, results []api.ChangeResult) []api.RecordRef {
	for i, r := range results {
		for _, o := range r.Ops {
			if o.Code != api.CodeRecordErased || i >= len(changes) || changes[i].Seq != r.Seq || o.Index < 0 || o.Index >= len(changes[i].Ops) {
				continue
			}
			op := &changes[i].Ops[o.Index]
			if ref := (api.RecordRef{Team: op.Team, Collection: op.Collection, ID: op.Record}); !slices.Contains(purged, ref) {
				purged = append(purged, ref)
			}
		}
	}
	return purged
}

// teamSet returns the caller's teams sorted and without duplicates or empty
// names.
func teamSet(teams []string) []string {
	out := slices.Clone(teams)
	out = slices.DeleteFunc(out, func(s string) bool { return s == "" })
	slices.Sort(out)
	return slices.Compact(out)
}

// itValue calls fn with the value the iterator is at.
func itValue(it store.Iterator, fn func(v []byte) error) error {
	v, err := it.Value()
	if err != nil {
		return err
	}
	return fn(v)
}
