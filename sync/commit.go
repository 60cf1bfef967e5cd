package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

type reqKind uint8

const (
	reqPush reqKind = iota + 1
	reqResolve
	reqReapply
	reqErase
	reqExpire
	reqRestate
	reqDismiss
)

// request is one write queued for the committer. The committer fills the
// outputs and closes done after the transaction holding it has committed
// (or failed).
type request struct {
	kind   reqKind
	caller Caller

	changes []api.Change // push
	// pre[i][j] is the stateless refusal of changes[i].Ops[j] (precheck),
	// computed by Push before the request is queued so that the single
	// committer does not spend its time refusing a flood of bad ops.
	pre [][]*refusal
	// val[i][j] is the Validator's verdict on changes[i].Ops[j] (nil:
	// valid), computed with pre, used in admitChange's order.
	val [][]error
	// ahead[i] are changes[i]'s runs merged ahead (mergeAhead), computed
	// with pre; enc[i] is store.PackLogOps(changes[i].Ops) when every op
	// passed precheck and the validator (nil otherwise): the change's log
	// entry, if every op is accepted, holds exactly these bytes.
	ahead [][]newRun
	enc   []store.PackedLogOps
	// weights[i] is changeWeight(&changes[i]), computed the first time
	// writeWeight reads the request (a big push is weighed again at each
	// level of a split).
	weights []int

	ref     api.RecordRef // resolve, erase
	field   string
	value   msgpack.RawMessage
	reason  string // resolve
	cascade bool   // erase

	qid uint64 // reapply, dismiss

	states      []crdt.RecordBytes // restate
	rebase      uint64
	restateDone bool
	ownOnly     bool // restate from an unknown epoch: own entries only
	restated    int  // output: states that added something

	purged []api.RecordRef // restate output: erased records the device must purge

	scrubKeys [][]byte // erase: keys whose old versions must leave the disk

	// Outputs, overwritten on every attempt.
	results   []api.ChangeResult
	rec       *crdt.Record
	report    ErasureReport // erase
	expired   int           // expire
	dismissed QuarantinedOp // dismiss
	err       error         // request-level error (not found, forbidden, invalid)

	done chan struct{}
}

// submit queues r for the committer and waits for its outcome.
func (e *Engine) submit(ctx context.Context, r *request) error {
	r.done = make(chan struct{})
	select {
	case e.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		// The write may still commit; a device retries and the seq makes
		// the retry a duplicate.
		return ctx.Err()
	}
}

// Push applies a device's changes, in order, each exactly once and
// atomically, and reports per change (and per op not merged). It returns
// only after every applied change is durable.
//
// It is preparePush and commitPush in one call (prepare.go): a pipelined
// sync prepares its push before the request ahead of it commits.
func (e *Engine) Push(ctx context.Context, c Caller, changes []api.Change) ([]api.ChangeResult, error) {
	return e.commitPush(ctx, c, changes, nil)
}

// committer is the engine's single writer: it drains the queue into
// groups, commits each group in one transaction and answers its callers.
func (e *Engine) committer() {
	defer close(e.done)
	tick := time.NewTicker(e.bounds.QuarantineSweep)
	defer tick.Stop()
	e.lastSweep = e.wall()
	for {
		var first *request
		select {
		case first = <-e.reqs:
		case <-tick.C:
			first = &request{kind: reqExpire, done: make(chan struct{})}
			e.lastSweep = e.wall()
		case <-e.scrubKick:
			e.runPendingScrub()
			continue
		case <-e.stop:
			return
		}
		group := []*request{first}
	drain:
		for len(group) < maxGroup {
			select {
			case r := <-e.reqs:
				group = append(group, r)
			default:
				break drain
			}
		}
		if now := e.wall(); now.Sub(e.lastSweep) >= e.bounds.QuarantineSweep {
			// Expired quarantine entries go in the same commit as the
			// group; a quiet server sweeps on the ticker below.
			e.lastSweep = now
			group = append(group, &request{kind: reqExpire, done: make(chan struct{})})
		}
		// Small writes commit first, in their own transaction, and are
		// answered before large pushes are applied: a device's 1-op sync
		// does not wait for another's megabytes to be checked and fsynced.
		small, large := splitBySize(group)
		for _, g := range [][]*request{small, large} {
			if len(g) == 0 {
				continue
			}
			e.commitGroup(g)
			for _, r := range g {
				if r.kind == reqErase && r.err == nil && len(r.scrubKeys) > 0 {
					e.scrubErased(r)
				}
				close(r.done)
			}
		}
	}
}

// maxDetailsPerCode is how many OpResults of one code in one change carry
// a detail text; the rest carry the code alone.
const maxDetailsPerCode = 16

// largePush is the op count (or value bytes/1 KiB) from which a push
// commits after the small writes of its group.
const largePush = 256

// splitBySize splits a commit group into small writes and large pushes,
// each in arrival order.
func splitBySize(group []*request) (small, large []*request) {
	for _, r := range group {
		if r.kind == reqPush && pushWeight(r.changes) >= largePush {
			large = append(large, r)
		} else {
			small = append(small, r)
		}
	}
	return small, large
}

func pushWeight(changes []api.Change) int {
	n := 0
	for i := range changes {
		for j := range changes[i].Ops {
			n += 1 + len(changes[i].Ops[j].Value)>>10
		}
	}
	return n
}

// commitGroup commits reqs, splitting the group (and, for a single push,
// its changes) in halves when the store reports the transaction too big
// (store.ErrTxnTooBig). A group at least as heavy (writeWeight) as one
// the store refused before is split without trying it: a big device push
// would otherwise be checked, merged and encoded twice, once for the
// attempt the store refuses.
func (e *Engine) commitGroup(reqs []*request) {
	w := writeWeight(reqs)
	if e.splitAt > 0 && w >= e.splitAt && e.splitGroup(reqs) {
		return
	}
	err := e.tryCommit(reqs)
	if err == nil {
		return
	}
	if errors.Is(err, store.ErrTxnTooBig) {
		if e.splitAt == 0 || w < e.splitAt {
			e.splitAt = w
		}
		if e.splitGroup(reqs) {
			return
		}
		err = fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	e.log.Error("commit failed", "requests", len(reqs), "err", err)
	for _, r := range reqs {
		r.results, r.rec, r.err = nil, nil, fmt.Errorf("commit: %w", err)
	}
}

// splitGroup commits reqs in two halves (a single push: its changes in
// two halves) and reports whether it could split them.
func (e *Engine) splitGroup(reqs []*request) bool {
	if len(reqs) > 1 {
		h := len(reqs) / 2
		e.commitGroup(reqs[:h])
		e.commitGroup(reqs[h:])
		return true
	}
	r := reqs[0]
	if r.kind != reqPush || len(r.changes) < 2 {
		return false
	}
	h := len(r.changes) / 2
	weights := r.changeWeights()
	a := &request{kind: reqPush, caller: r.caller, changes: r.changes[:h], pre: r.pre[:h], val: r.val[:h], ahead: r.ahead[:h], enc: r.enc[:h], weights: weights[:h]}
	b := &request{kind: reqPush, caller: r.caller, changes: r.changes[h:], pre: r.pre[h:], val: r.val[h:], ahead: r.ahead[h:], enc: r.enc[h:], weights: weights[h:]}
	e.commitGroup([]*request{a})
	e.commitGroup([]*request{b})
	r.results, r.err = append(a.results, b.results...), errors.Join(a.err, b.err)
	return true
}

// writeWeight estimates what committing reqs writes: the bytes of the
// pushed ops (each is written to the log and merged into a state); other
// writes count for nothing.
func writeWeight(reqs []*request) int {
	n := 0
	for _, r := range reqs {
		for _, w := range r.changeWeights() {
			n += w
		}
	}
	return n
}

// changeWeights returns the write weight of each of r's changes,
// computing them once.
func (r *request) changeWeights() []int {
	if r.weights == nil && len(r.changes) > 0 {
		r.weights = make([]int, len(r.changes))
		for i := range r.changes {
			n := 0
			for j := range r.changes[i].Ops {
				op := &r.changes[i].Ops[j]
				n += 48 + len(op.Team) + len(op.Collection) + len(op.Record) + len(op.Field) + len(op.Value) + 24*len(op.Pred)
			}
			r.weights[i] = n
		}
	}
	return r.weights
}

// tryCommit applies reqs in one write transaction and commits it; on
// failure nothing of it is visible.
//
// The log position and quarantine ID counters are read in the
// transaction itself, not kept in memory: write transactions are
// serialized by the store, across processes on a shared one, so the
// counters read here are the last committed ones even when another server
// process committed a moment ago, and the positions this transaction
// assigns follow them with no gap or repeat (see the package doc,
// "Several processes on one store").
func (e *Engine) tryCommit(reqs []*request) error {
	ctx := context.Background() // the committer's work is bounded by the group, not a caller
	txn, err := e.kv.Begin(ctx, true)
	if err != nil {
		return err
	}
	defer txn.Discard()
	pos, err := store.GetU64Key(txn, store.KeyLogPos)
	if err != nil {
		return fmt.Errorf("read log position: %w", err)
	}
	qid, err := store.GetU64Key(txn, store.KeyQuarantineSeq)
	if err != nil {
		return fmt.Errorf("read quarantine sequence: %w", err)
	}
	// The records the pushes look like creating (their runs merged
	// ahead), to size the caches once instead of growing them by
	// rehashing.
	n := 0
	for _, r := range reqs {
		for _, runs := range r.ahead {
			n += len(runs)
		}
	}
	t := &txnState{
		e: e, txn: txn, now: e.wall(),
		pos: pos, qid: qid, startPos: pos, startQID: qid,
		records: make(map[string]*recState, n),
		owners:  make(map[string]string, n),
		hwm:     map[crdt.ReplicaID]uint64{},
	}
	if err := t.readErasedRange(reqs); err != nil {
		return err
	}
	for _, r := range reqs {
		r.results, r.rec, r.err, r.scrubKeys = nil, nil, nil, nil
		var err error
		switch r.kind {
		case reqPush:
			err = t.push(r)
		case reqResolve:
			err = t.resolve(r)
		case reqReapply:
			err = t.reapply(r)
		case reqErase:
			err = t.erase(r)
		case reqExpire:
			err = t.expire(r)
		case reqRestate:
			err = t.restate(r)
		case reqDismiss:
			err = t.dismiss(r)
		}
		if err != nil {
			return err
		}
	}
	if err := t.flush(); err != nil {
		return err
	}
	return txn.Commit()
}

// txnState is what one commit transaction has read and will write: records
// are cached and written once at flush.
type txnState struct {
	e   *Engine
	txn store.Tx
	now time.Time
	pos uint64 // last log position assigned
	qid uint64 // last quarantine ID assigned

	startPos, startQID uint64 // the counters as the transaction read them

	// srvClock is the persisted server clock (store.KeyServerClock), read
	// on the first server stamp of the transaction (srvClockRead) and
	// written back at flush when a stamp moved it (srvClockDirty).
	srvClock                    crdt.Timestamp
	srvClockRead, srvClockDirty bool

	records map[string]*recState                      // by record key
	owners  map[string]string                         // team-index key → owning team ("" = none)
	hwm     map[crdt.ReplicaID]uint64                 // high-water seqs read or written
	opres   map[crdt.ReplicaID][]store.ReportedChange // op results kept per replica (reported.go)
	usage   map[string]*usage                         // quarantine quota counters by key
	erased  map[string]string                         // purge marker key → team ("" none), read by range (erasedread.go)

	scrub [][]byte // keys the erase being applied must scrub from disk

	// pending are the records whose batch holds ops queued by merge,
	// for flushBatches.
	pending []*recState

	// keyBuf is reused to build the keys of cache lookups (record,
	// owner), which run several times per pushed op: a key is copied
	// only when it goes into a cache.
	keyBuf []byte
}

type recState struct {
	key         []byte
	rec         *crdt.Record
	batch       *crdt.Batch // ops merged but not yet flushed into rec (nil until merge queues one)
	exists      bool        // stored before this transaction
	updatedMS   int64       // stored change time (for the changed-since index)
	hadConflict bool
	dirty       bool
	terms       []string // index terms of the stored state (see index.go)
	sz          recSize  // encoded size estimate, from above (see checkSize)
	// ahead is the run merged ahead whose state rec is, unchanged since
	// (its encoding, conflict flag and terms stand for rec's): whatever
	// changes rec in place sets it to nil.
	ahead *newRun
	// shared: rec is a run's state merged ahead (newRun.rec), which the
	// request keeps for a retry of the commit; record copies it before
	// anything can change it.
	shared bool
}

// state returns the record's state. rec is nil while the state is a run
// merged ahead that was encoded from its ops alone (newRun.record):
// it is built on first use, so a new record that nothing reads again in
// the transaction is never built at all.
func (rs *recState) state() (*crdt.Record, error) {
	if rs.rec == nil {
		rec, err := rs.ahead.record()
		if err != nil {
			return nil, err
		}
		rs.rec, rs.shared = rec, false
	}
	return rs.rec, nil
}

func (t *txnState) set(k, v []byte) error { return t.txn.Set(k, v) }

func (t *txnState) nextPos() uint64 { t.pos++; return t.pos }

// highWater returns a replica's last applied seq.
func (t *txnState) highWater(r crdt.ReplicaID) (uint64, error) {
	if v, ok := t.hwm[r]; ok {
		return v, nil
	}
	v, err := store.GetU64Key(t.txn, store.HWMKey(r))
	if err != nil {
		return 0, fmt.Errorf("read high-water mark: %w", err)
	}
	t.hwm[r] = v
	return v, nil
}

func (t *txnState) setHighWater(r crdt.ReplicaID, seq uint64) error {
	t.hwm[r] = seq
	return t.set(store.HWMKey(r), store.PutU64(seq))
}

// owner returns the team owning collection/id, or "" for a new record.
func (t *txnState) owner(coll, id string) (string, error) {
	t.keyBuf = store.AppendTeamIndexKey(t.keyBuf[:0], coll, id)
	if team, ok := t.owners[string(t.keyBuf)]; ok {
		return team, nil
	}
	k := string(t.keyBuf)
	team, err := store.RecordOwner(t.txn, coll, id)
	if err != nil {
		return "", err
	}
	t.owners[k] = team
	return team, nil
}

// unowned reports whether this transaction knows coll/id to have no
// owner: read as none (owner) or erased in it, and not claimed since.
func (t *txnState) unowned(coll, id string) bool {
	t.keyBuf = store.AppendTeamIndexKey(t.keyBuf[:0], coll, id)
	team, ok := t.owners[string(t.keyBuf)]
	return ok && team == ""
}

// record returns the cached state of a record, loading it or starting an
// empty one.
func (t *txnState) record(team, coll, id string) (*recState, error) {
	t.keyBuf = store.AppendRecordKey(t.keyBuf[:0], team, coll, id)
	if rs, ok := t.records[string(t.keyBuf)]; ok {
		if _, err := rs.state(); err != nil {
			return nil, err
		}
		if rs.shared {
			// What reads a state through here may change it (a batch, a
			// held op, a merge): the run's own stays as it was made.
			rs.rec, rs.shared = rs.rec.Clone(), false
		}
		return rs, nil
	}
	key := bytes.Clone(t.keyBuf)
	rs := &recState{key: key}
	var sr store.StoredRecord
	var err error
	if t.unowned(coll, id) {
		// No team owns it, so no team stores it (see store.RecordOwner):
		// a new record, read without the lookup that would miss.
		err = store.ErrNotFound
	} else {
		sr, err = store.GetRecord(t.txn, team, coll, id)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		rs.rec = crdt.NewRecord(team, coll, id)
		rs.sz.total = newRecordSize(team, coll, id)
	case err != nil:
		return nil, fmt.Errorf("read record: %w", err)
	default:
		rs.updatedMS = sr.UpdatedMS
		rs.sz.total = len(sr.State)
		if rs.rec, err = crdt.UnmarshalRecord(sr.State); err != nil {
			return nil, fmt.Errorf("read record %s/%s/%s: %w", team, coll, id, err)
		}
		rs.exists = true
		rs.hadConflict = hasConflict(rs.rec)
		rs.terms = recordTerms(rs.rec)
	}
	t.records[string(key)] = rs
	return rs, nil
}

// flushBatches merges the ops queued by merge into their records. Each
// change, resolve and reapply ends with it, so the checks of the next one
// see every op before it; within a change, ops merged earlier are known
// through the change's own ID set instead. Queuing the ops of a change
// and merging each field once keeps a change of N ops to one field at
// O(N log N) (issue 9 item 2).
func (t *txnState) flushBatches() {
	for _, rs := range t.pending {
		if rs.batch != nil && rs.batch.Len() > 0 {
			rs.batch.Flush()
		}
	}
	clear(t.pending)
	t.pending = t.pending[:0]
}

// hasConflict reports whether len(r.Conflicts()) > 0, without sorting
// the record's field names to list them.
func hasConflict(r *crdt.Record) bool {
	for _, f := range r.Fields {
		if f.Conflict() {
			return true
		}
	}
	return len(r.DeleteConflicts()) > 0
}

// quarantined reports whether op id sits in the quarantine, so that a
// later op may name it in pred.
func (t *txnState) quarantined(op crdt.OpID) (bool, error) {
	return store.IsQuarantined(t.txn, op)
}

// merge queues a checked op for its record (see flushBatches). An op the
// record's field type rejects returns a non-nil refusal. The op's history
// is its log entry, written by writeLog.
func (t *txnState) merge(op *crdt.Op) (refusal error, err error) {
	rs, err := t.record(op.Team, op.Collection, op.Record)
	if err != nil {
		return nil, err
	}
	if err := checkSize(t.e.bounds, &rs.sz, rs.rec, op); err != nil {
		return err, nil
	}
	if rs.batch == nil || rs.batch.Record() != rs.rec {
		rs.batch = crdt.NewBatch(rs.rec)
	}
	if err := rs.batch.Add(op); err != nil {
		return err, nil
	}
	if rs.batch.Len() == 1 {
		t.pending = append(t.pending, rs)
	}
	rs.dirty, rs.ahead = true, nil
	t.owners[string(store.TeamIndexKey(op.Collection, op.Record))] = op.Team
	_ = t.e.clock.Update(op.ID.Time) // checked against the skew already
	return nil, nil
}

// writeLog assigns the next position to accepted ops and writes one log
// entry per team they touch (store.PutLogEntry indexes the position in
// the history of every record touched).
func (t *txnState) writeLog(author string, replica crdt.ReplicaID, seq uint64, ops []crdt.Op) error {
	return t.writeLogReason(author, replica, seq, ops, "", nil)
}

// writeLogReason is writeLog with a resolution's reason kept in the
// entry, and ops packed already (store.PackLogOps(ops)) if enc is not nil.
func (t *txnState) writeLogReason(author string, replica crdt.ReplicaID, seq uint64, ops []crdt.Op, reason string, enc store.PackedLogOps) error {
	if len(ops) == 0 {
		return nil
	}
	pos := t.nextPos()
	if oneTeam(ops) { // the usual change: its ops as they are, no copy per team
		le := &store.LogEntry{Author: author, Replica: replica, Seq: seq, ReceivedMS: t.now.UnixMilli(), Reason: reason, Ops: ops}
		return store.PutLogEntryOps(t.txn, ops[0].Team, pos, le, enc)
	}
	var teams []string
	byTeam := map[string][]crdt.Op{}
	for _, op := range ops {
		if _, ok := byTeam[op.Team]; !ok {
			teams = append(teams, op.Team)
		}
		byTeam[op.Team] = append(byTeam[op.Team], op)
	}
	for _, team := range teams {
		le := &store.LogEntry{Author: author, Replica: replica, Seq: seq, ReceivedMS: t.now.UnixMilli(), Reason: reason, Ops: byTeam[team]}
		if err := store.PutLogEntry(t.txn, team, pos, le); err != nil {
			return err
		}
	}
	return nil
}

// oneTeam reports whether every op of ops (at least one) is of one team.
func oneTeam(ops []crdt.Op) bool {
	for i := range ops {
		if ops[i].Team != ops[0].Team {
			return false
		}
	}
	return true
}

// flush writes every changed record with its indexes, and the counters.
func (t *txnState) flush() error {
	t.flushBatches()
	ms := t.now.UnixMilli()
	for _, rs := range t.records {
		if !rs.dirty {
			continue
		}
		r := rs.rec
		var now store.RecordIndex
		var b, value []byte
		var team, coll, id string
		if a := rs.ahead; a != nil && (r == nil || a.rec == r) {
			// The run's state, unchanged (rec nil: never built, see
			// recState.state): its encoding as merged ahead, in its r/
			// value if it has one (newRun.value).
			b, now = a.state, store.RecordIndex{UpdatedMS: ms, Conflict: a.conflict, Terms: a.terms}
			if a.value != nil {
				store.PutRecordValueHeader(a.value, ms)
				value = a.value
			}
			op := &a.ops[0]
			team, coll, id = op.Team, op.Collection, op.Record
		} else {
			var err error
			if b, err = crdt.MarshalRecord(r); err != nil {
				return err
			}
			now = store.RecordIndex{UpdatedMS: ms, Conflict: hasConflict(r), Terms: recordTerms(r)}
			team, coll, id = r.Team, r.Collection, r.ID
		}
		var was *store.RecordIndex
		if rs.exists {
			was = &store.RecordIndex{UpdatedMS: rs.updatedMS, Conflict: rs.hadConflict, Terms: rs.terms}
		}
		var err error
		if value != nil {
			err = store.PutRecordValue(t.txn, team, coll, id, value, was, now)
		} else {
			err = store.PutRecord(t.txn, team, coll, id, b, was, now)
		}
		if err != nil {
			return err
		}
	}
	if err := t.flushUsage(); err != nil {
		return err
	}
	if t.pos != t.startPos {
		if err := t.set(store.KeyLogPos, store.PutU64(t.pos)); err != nil {
			return err
		}
	}
	if t.srvClockDirty {
		if err := t.set(store.KeyServerClock, store.PutU64(uint64(t.srvClock))); err != nil {
			return err
		}
	}
	if t.qid != t.startQID {
		if err := t.set(store.KeyQuarantineSeq, store.PutU64(t.qid)); err != nil {
			return err
		}
	}
	return nil
}

// push applies the changes of one push request in order.
func (t *txnState) push(r *request) error {
	for i := range r.changes {
		res, err := t.pushChange(&r.caller, &r.changes[i], r.pre[i], r.val[i], r.ahead[i], r.enc[i])
		if err != nil {
			return fmt.Errorf("apply change %d: %w", r.changes[i].Seq, err)
		}
		r.results = append(r.results, res)
	}
	return t.keepReported(r.caller.Replica, r.results)
}

// pushChange admits one change (admitChange, a pure decision over the
// transaction's view) and stores the decision (applyChange).
func (t *txnState) pushChange(c *Caller, ch *api.Change, pre []*refusal, val []error, ahead []newRun, enc store.PackedLogOps) (api.ChangeResult, error) {
	d, err := t.admission().admitChangeRuns(txnView{t}, c, ch, pre, val, ahead)
	if err != nil {
		return d.result, err
	}
	if len(d.accepted) != len(ch.Ops) {
		enc = nil // the log entry holds only some of the ops
	}
	return d.result, t.applyChange(c, &d, enc)
}

// prechecks runs precheck on every op of changes, the Validator on
// those that pass it, and mergeAhead on each change, in the pushing
// request's goroutine: none needs stored state, and the single committer
// must not spend its time on them. shaped says that every op has passed
// crdt.Op.Validate already (api.SyncRequest.OpsValidated): precheck
// leaves that check out.
func (e *Engine) prechecks(c *Caller, changes []api.Change, shaped bool) (pre [][]*refusal, val [][]error, ahead [][]newRun, enc []store.PackedLogOps) {
	pre = make([][]*refusal, len(changes))
	val = make([][]error, len(changes))
	ahead = make([][]newRun, len(changes))
	enc = make([]store.PackedLogOps, len(changes))
	most := 0
	for i := range changes {
		most = max(most, len(changes[i].Ops))
	}
	// The verdicts of each change are worked out in scratch arrays; a
	// change with no refusal (or no validator error) gets a slice of one
	// array of nils shared by every such change of the push, which
	// nothing writes: a clean push of 24,000 ops allocates a few
	// change-sized arrays, not two of 24,000 pointers for the GC to scan.
	scratchPre, scratchVal := make([]*refusal, most), make([]error, most)
	var nonePre []*refusal
	var noneVal []error
	memo := precheckMemo{shaped: shaped}
	var check *opValidator
	if e.validator != nil {
		check = newOpValidator(e.validator)
	}
	for i := range changes {
		k := len(changes[i].Ops)
		sp, sv := scratchPre[:k:k], scratchVal[:k:k]
		refused, invalid := false, false
		for j := range changes[i].Ops {
			op := &changes[i].Ops[j]
			if sp[j] = memo.precheck(c, op); sp[j] == nil && check != nil {
				sv[j] = check.validate(op)
			}
			refused = refused || sp[j] != nil
			invalid = invalid || sv[j] != nil
		}
		clean := !refused && !invalid
		if refused {
			pre[i] = slices.Clone(sp)
			clear(sp)
		} else {
			if nonePre == nil {
				nonePre = make([]*refusal, most)
			}
			pre[i] = nonePre[:k:k]
		}
		if invalid {
			val[i] = slices.Clone(sv)
			clear(sv)
		} else {
			if noneVal == nil {
				noneVal = make([]error, most)
			}
			val[i] = noneVal[:k:k]
		}
		ahead[i] = mergeAhead(e.bounds, &changes[i], pre[i], val[i])
		if clean {
			enc[i] = store.PackLogOps(changes[i].Ops)
		}
	}
	return pre, val, ahead, enc
}

// precheck runs a pushed op's checks that need no stored state (shape,
// names, record ID, replica, team scope), in order, and returns why it
// must not be merged, or nil; admission.checkOp runs the rest in the committer.
func precheck(c *Caller, op *crdt.Op) *refusal {
	var m precheckMemo
	return m.precheck(c, op)
}

// precheckMemo keeps precheck's answers for the record ID and team of
// the op before, which a device's next ops nearly always repeat (a
// record's fields in a row): pure functions of the string, asked once
// per run instead of once per op.
type precheckMemo struct {
	rec, team   string
	recErr      error
	inTeam      bool
	recOK, tmOK bool
	// shaped: every op asked about has passed crdt.Op.Validate (decoded
	// and validated by api.SyncRequest.UnpackPacked), so it is not run
	// again.
	shaped bool
}

// precheck is precheck, with the answers for a record ID or team asked
// just before taken from m.
func (m *precheckMemo) precheck(c *Caller, op *crdt.Op) *refusal {
	if !m.shaped {
		if err := op.Validate(); err != nil {
			return &refusal{code: api.CodeInvalidOp, detail: err.Error()}
		}
	}
	if len(op.Team) > maxNameLen || len(op.Collection) > maxNameLen || len(op.Record) > maxNameLen || len(op.Field) > maxNameLen {
		return &refusal{code: api.CodeInvalidOp, detail: fmt.Sprintf("a name is longer than %d bytes", maxNameLen)}
	}
	if !m.recOK || m.rec != op.Record {
		m.rec, m.recErr, m.recOK = op.Record, crdt.ValidateRecordID(op.Record), true
	}
	if err := m.recErr; err != nil {
		return &refusal{code: api.CodeInvalidRecordID, detail: err.Error()}
	}
	if op.ID.Replica != c.Replica {
		return &refusal{code: api.CodeWrongReplica, detail: fmt.Sprintf("op %s names replica %s, pusher is %s", op.ID, op.ID.Replica, c.Replica)}
	}
	if !m.tmOK || m.team != op.Team {
		m.team, m.inTeam, m.tmOK = op.Team, c.InTeam(op.Team), true
	}
	if !m.inTeam {
		return &refusal{code: api.CodeForbiddenTeam, detail: fmt.Sprintf("caller is not in team %q", op.Team)}
	}
	if (op.Kind == crdt.KindAdd || op.Kind == crdt.KindAppend) && len(op.Pred) > 0 {
		// Only the server re-issuing a held-back op replaces entries so.
		return &refusal{code: api.CodeInvalidOp, detail: fmt.Sprintf("%s op %s has pred", op.Kind, op.ID)}
	}
	return nil
}
