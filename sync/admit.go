package sync

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/store"
)

// Push admission as a pure decision (issue 13). What a pushed change does
// is decided by admitChange from a small read interface, admissionView,
// and handed back as a value, changeDecision: the op results, the ops to
// merge (checked and queued per record), the quarantine entries to write
// and the new high-water seq. admitChange writes nothing and keeps no
// state between calls, so its rules are tested over a map (admit_test.go)
// without a store; the committer builds the view over its transaction
// (txnView), calls it and stores the decision (txnState.applyChange), in
// the style of etcd's raft: I/O stays out of the state machine, results
// come back as values.

// admissionView is what admission reads: the state as the transaction
// sees it so far, with the changes admitted before in the same commit
// group applied. Errors are I/O errors of the view; they abort the
// transaction.
type admissionView interface {
	// HighWater is the replica's last applied seq (0: none).
	HighWater(replica crdt.ReplicaID) (uint64, error)
	// Reported returns the op results kept for seq of replica's last push
	// with ops not merged (see reported.go), or nil.
	Reported(replica crdt.ReplicaID, seq uint64) ([]api.OpResult, error)
	// Owner returns the team owning collection/id, or "" for none.
	Owner(collection, id string) (string, error)
	// Erased reports whether collection/id carries a purge marker.
	Erased(collection, id string) (bool, error)
	// Record returns the record's state (an empty record if it is not
	// stored). Admission reads it and never modifies it; the ops it
	// admits are queued in batches on it, which the caller flushes.
	Record(team, collection, id string) (*crdt.Record, error)
	// Size returns the record's encoded-size estimate (see checkSize), a
	// copy the caller may change.
	Size(team, collection, id string) (recSize, error)
	// Quarantined reports whether op id is held in the quarantine (a
	// later op may name it in pred).
	Quarantined(id crdt.OpID) (bool, error)
	// MergedOp returns the op merged under id into the record, from the
	// record's history, or false when the log no longer holds it.
	MergedOp(team, collection, record string, id crdt.OpID) (crdt.Op, bool, error)
	// DeviceUsage and TeamUsage return the quarantine charged to a
	// pushing device and to a team (quotas).
	DeviceUsage(replica crdt.ReplicaID) (store.QuarantineUsage, error)
	TeamUsage(team string) (store.QuarantineUsage, error)
}

// admission holds what the rules depend on besides the view: the
// engine's configuration and the transaction's clock reading.
type admission struct {
	rules     ClinicalRules // nil: no clinical rule
	validator Validator     // nil: every well-formed op; used by reapply (a push brings its verdicts)
	bounds    Bounds
	skew      func(remote crdt.Timestamp, wall time.Time) error // crdt.Clock.Check
	now       time.Time
}

// changeDecision is what admitChange decided for one change.
type changeDecision struct {
	// result is the reply for the change.
	result api.ChangeResult
	// apply: the change is the replica's next one; the caller stores
	// what follows and moves the replica's high-water to result.Seq. When
	// false, nothing is stored (duplicate, gap, bad seq).
	apply bool
	// accepted are the ops to merge, in push order (the change's log
	// entry); batches holds them queued per record (crdt.Batch on the
	// view's record, checked by Add), for the caller to flush. accepted
	// may share its array with the change's ops (when every op is
	// accepted): read it, never modify it.
	accepted []crdt.Op
	batches  []*crdt.Batch
	// held are reapplicable ops kept whole in the quarantine (the caller
	// marks each skipped in its record); summaries are the refused ops,
	// one entry per code. Both fit their quotas; write them in order,
	// held first.
	held      []quarantineWrite
	summaries []quarantineWrite
	// built are runs merged ahead taken as merged: each replaces the
	// view's blank state of its record (builtUse.rec) with its own.
	built []builtUse
	// sizes are the new size estimates of the records the checks
	// touched, by record key.
	sizes map[string]recSize
}

// quarantineWrite is one quarantine entry to store: the entry (with
// ReceivedMS and Charged set) and its encoding.
type quarantineWrite struct {
	entry store.QuarantineEntry
	value []byte
}

// recSize is a record's encoded-size estimate, from above: the whole
// record and the fields touched so far (see checkSize).
type recSize struct {
	total  int
	fields map[string]int
}

func (s recSize) clone() recSize {
	return recSize{total: s.total, fields: maps.Clone(s.fields)}
}

// refusal is why one op was not merged.
type refusal struct {
	code        api.Code
	detail      string
	quarantined bool
	duplicate   bool // an exact copy of a merged op: skipped, not reported
}

// changeView is the view as one change's earlier ops leave it: the
// records they claimed, the sizes and quotas they used. Admission reads
// through it; nothing of it is stored but what the decision says.
type changeView struct {
	admissionView
	owners  map[[2]string]string
	sizes   map[recRef]*recSize
	usage   map[string]*store.QuarantineUsage
	batches map[recRef]*crdt.Batch
	order   []recRef // batch keys in first-use order
	run     recRun

	// built are the runs merged ahead (newRun) the change has taken
	// whole so far, in order; builtAt indexes them by record.
	built   []*builtUse
	builtAt map[recRef]int
	// held are the records the change has held an op of (quarantined,
	// reapplicable): a run merged ahead is never taken for them (see
	// takeRun).
	held map[recRef]bool
}

// builtUse is a run merged ahead that admission takes as the queue of
// its ops: the record's state in the view was blank (rec) and every op
// of the run was accepted.
type builtUse struct {
	run *newRun
	rec *crdt.Record // the view's blank state it replaces
}

// recRun is what the change has read of one record for a run of its
// consecutive ops (a device sends a record's ops together: a new
// record's 30 fields are 30 ops in a row), so that the owner, purge
// marker, state, size and batch are looked up once per run instead of
// once per op. It only caches the answers of the maps above and of the
// view, which stay the truth: a run of another record starts afresh, and
// a claim updates both.
type recRun struct {
	ref   recRef
	next  int // index of the first op after the run
	n     int // the run's op count (a hint to size per-field maps)
	owner string
	erase bool
	rec   *crdt.Record
	sz    *recSize
	batch *crdt.Batch

	// cand is the run merged ahead for these ops, if there is one; use
	// is set once the run's first op is accepted onto a blank record:
	// its ops are then accepted without queuing them (see admitChange).
	cand *newRun
	use  *builtUse

	ownerOK, eraseOK bool
}

// enter starts the run of ops[i]'s record unless op i is in the current
// one, and reports whether it did.
//
// runs are the change's runs merged ahead, from runs[next] on not yet
// passed (see startRun). A run merged ahead holds ops of one record only
// (mergeRun merges none of another), so one that starts at i and is
// followed by another record's op (or the end) is the run of ops[i]'s
// record: its end is not looked for again op by op.
func (v *changeView) enter(ops []crdt.Op, i int, runs []newRun, next int) bool {
	if i < v.run.next {
		return false
	}
	v.endRun()
	for next < len(runs) && runs[next].start < i {
		next++
	}
	var end int
	if next < len(runs) && runs[next].start == i && runs[next].end > i &&
		(runs[next].end == len(ops) || runs[next].end < len(ops) && !sameRecord(&ops[runs[next].end], &ops[i])) {
		end = runs[next].end
	} else {
		end = runEnd(ops, i)
	}
	v.run = recRun{ref: refOf(&ops[i]), next: end, n: end - i}
	return true
}

// runEnd returns the index after the run of ops[i]'s record.
func runEnd(ops []crdt.Op, i int) int {
	j := i + 1
	for j < len(ops) && sameRecord(&ops[j], &ops[i]) {
		j++
	}
	return j
}

// endRun keeps the current run's merged-ahead state if every op of it
// was accepted.
func (v *changeView) endRun() {
	if v.run.use == nil {
		return
	}
	if v.builtAt == nil {
		v.builtAt = map[recRef]int{}
	}
	v.builtAt[v.run.ref] = len(v.built)
	v.built = append(v.built, v.run.use)
	v.run.use = nil
}

// recRef names a record: team, collection, ID.
type recRef [3]string

func refOf(op *crdt.Op) recRef { return recRef{op.Team, op.Collection, op.Record} }

func (v *changeView) inRun(collection, id string) bool {
	return v.run.ref[2] == id && v.run.ref[1] == collection
}

func (v *changeView) Owner(collection, id string) (string, error) {
	r := &v.run
	if r.ownerOK && v.inRun(collection, id) {
		return r.owner, nil
	}
	team, ok := v.owners[[2]string{collection, id}]
	if !ok {
		var err error
		if team, err = v.admissionView.Owner(collection, id); err != nil {
			return "", err
		}
	}
	if v.inRun(collection, id) {
		r.owner, r.ownerOK = team, true
	}
	return team, nil
}

func (v *changeView) Erased(collection, id string) (bool, error) {
	r := &v.run
	if r.eraseOK && v.inRun(collection, id) {
		return r.erase, nil
	}
	erased, err := v.admissionView.Erased(collection, id)
	if err != nil {
		return false, err
	}
	if v.inRun(collection, id) {
		r.erase, r.eraseOK = erased, true
	}
	return erased, nil
}

func (v *changeView) Record(team, collection, id string) (*crdt.Record, error) {
	r := &v.run
	if r.rec != nil && r.ref == (recRef{team, collection, id}) {
		return r.rec, nil
	}
	rec, err := v.admissionView.Record(team, collection, id)
	if err != nil {
		return nil, err
	}
	if r.ref == (recRef{team, collection, id}) {
		r.rec = rec
	}
	return rec, nil
}

// claim records that op's team now owns its record, as far as the rest
// of the change sees.
func (v *changeView) claim(op *crdt.Op) {
	r := &v.run
	inRun := r.ref == refOf(op)
	if inRun && r.ownerOK && r.owner == op.Team {
		return // the map or the view says so already
	}
	if v.owners == nil {
		v.owners = map[[2]string]string{}
	}
	v.owners[[2]string{op.Collection, op.Record}] = op.Team
	if inRun {
		r.owner, r.ownerOK = op.Team, true
	}
}

func (v *changeView) size(op *crdt.Op) (*recSize, error) {
	k := refOf(op)
	r := &v.run
	inRun := r.ref == k
	if inRun && r.sz != nil {
		return r.sz, nil
	}
	s, ok := v.sizes[k]
	if !ok {
		c, err := v.Size(op.Team, op.Collection, op.Record)
		if err != nil {
			return nil, err
		}
		c = c.clone()
		if c.fields == nil && inRun {
			c.fields = make(map[string]int, r.n)
		}
		if v.sizes == nil {
			v.sizes = map[recRef]*recSize{}
		}
		s = &c
		v.sizes[k] = s
	}
	if inRun {
		r.sz = s
	}
	return s, nil
}

func (v *changeView) batch(op *crdt.Op, rec *crdt.Record) *crdt.Batch {
	k := refOf(op)
	r := &v.run
	inRun := r.ref == k
	if inRun && r.batch != nil {
		return r.batch
	}
	b, ok := v.batches[k]
	if !ok {
		if v.batches == nil {
			v.batches = map[recRef]*crdt.Batch{}
		}
		b = crdt.NewBatch(rec)
		v.batches[k] = b
		v.order = append(v.order, k)
	}
	if inRun {
		r.batch = b
	}
	return b
}

// opIDSet is the set of op IDs merged or held earlier in a change. A
// device's ops come in ID order, so the set is a sorted slice that new
// IDs are appended to; an ID out of that order goes to a map. Adding and
// asking about the next op's ID are O(1), a pred is a binary search.
type opIDSet struct {
	sorted []crdt.OpID
	other  map[crdt.OpID]struct{}
}

func (s *opIDSet) add(id crdt.OpID) {
	if n := len(s.sorted); n == 0 || s.sorted[n-1].Compare(id) < 0 {
		s.sorted = append(s.sorted, id)
		return
	}
	if s.other == nil {
		s.other = map[crdt.OpID]struct{}{}
	}
	s.other[id] = struct{}{}
}

// has reports whether id is in the set; a nil set is empty.
func (s *opIDSet) has(id crdt.OpID) bool {
	if s == nil {
		return false
	}
	// A pred names an op older than the change's (an overwrite's): below
	// the first ID, no search.
	if n := len(s.sorted); n > 0 && s.sorted[n-1].Compare(id) >= 0 && s.sorted[0].Compare(id) <= 0 {
		if _, ok := slices.BinarySearchFunc(s.sorted, id, crdt.OpID.Compare); ok {
			return true
		}
	}
	_, ok := s.other[id]
	return ok
}

// usageOf returns the quota counter of a device (team "") or of a team,
// as this change has used it so far.
func (v *changeView) usageOf(replica crdt.ReplicaID, team string, isTeam bool) (*store.QuarantineUsage, error) {
	key := string(store.QuarantineDeviceKey(replica))
	if isTeam {
		key = string(store.QuarantineTeamKey(team))
	}
	if u, ok := v.usage[key]; ok {
		return u, nil
	}
	var u store.QuarantineUsage
	var err error
	if isTeam {
		u, err = v.TeamUsage(team)
	} else {
		u, err = v.DeviceUsage(replica)
	}
	if err != nil {
		return nil, err
	}
	if v.usage == nil {
		v.usage = map[string]*store.QuarantineUsage{}
	}
	v.usage[key] = &u
	return &u, nil
}

// fitQuarantine encodes q as received now and, if the device's quota (and,
// for a reapplicable op, the team's) has room, charges it in the view and
// returns the write; nil when a quota is used up.
func (a *admission) fitQuarantine(v *changeView, q store.QuarantineEntry) (*quarantineWrite, error) {
	b := a.bounds
	q.ReceivedMS = a.now.UnixMilli()
	val, err := store.Encode(&q)
	if err != nil {
		return nil, err
	}
	q.Charged = uint64(len(val))
	dev, err := v.usageOf(q.Replica, "", false)
	if err != nil {
		return nil, err
	}
	if !usageFits(*dev, len(val), b.QuarantineDeviceEntries, b.QuarantineDeviceBytes) {
		return nil, nil
	}
	var team *store.QuarantineUsage
	if q.Reapplicable {
		if team, err = v.usageOf(q.Replica, q.Op.Team, true); err != nil {
			return nil, err
		}
		if !usageFits(*team, len(val), b.QuarantineTeamEntries, b.QuarantineTeamBytes) {
			return nil, nil
		}
	}
	if val, err = store.Encode(&q); err != nil { // now with Charged
		return nil, err
	}
	usageAdd(dev, q.Charged)
	if team != nil {
		usageAdd(team, q.Charged)
	}
	return &quarantineWrite{entry: q, value: val}, nil
}

// admitChange decides one pushed change: seq against the replica's
// high-water (apply, duplicate, seq_gap), then each op's checks in order
// (see the package doc, "What a push checks"). pre and val are the
// change's stateless refusals and Validator verdicts (prechecks). It
// reads v and writes nothing.
func (a *admission) admitChange(v admissionView, c *Caller, ch *api.Change, pre []*refusal, val []error) (changeDecision, error) {
	return a.admitChangeRuns(v, c, ch, pre, val, nil)
}

// admitChangeRuns is admitChange with the change's runs merged ahead
// (mergeAhead; nil: none). A run whose record the view holds blank, and
// whose every op passes the checks, is taken as merged (changeDecision.
// built) instead of being queued op by op; any other goes the usual way,
// so the decision is the one admitChange makes without them.
func (a *admission) admitChangeRuns(v admissionView, c *Caller, ch *api.Change, pre []*refusal, val []error, runs []newRun) (changeDecision, error) {
	d := changeDecision{result: api.ChangeResult{Seq: ch.Seq}}
	res := &d.result
	hwm, err := v.HighWater(c.Replica)
	if err != nil {
		return d, err
	}
	switch {
	case ch.Seq == 0:
		res.Status, res.Code = api.ChangeRefused, api.CodeBadRequest
		return d, nil
	case ch.Seq <= hwm:
		res.Status = api.ChangeDuplicate
		res.Ops, err = v.Reported(c.Replica, ch.Seq)
		return d, err
	case ch.Seq > hwm+1:
		res.Status, res.Code, res.Expected = api.ChangeRefused, api.CodeSeqGap, hwm+1
		return d, nil
	}
	res.Status, d.apply = api.ChangeApplied, true
	cv := &changeView{admissionView: v}
	if len(runs) > 0 {
		// Each run merged ahead is most often a new record the change
		// claims and takes whole: the maps for them sized once.
		cv.owners = make(map[[2]string]string, len(runs))
		cv.builtAt = make(map[recRef]int, len(runs))
		cv.built = make([]*builtUse, 0, len(runs))
	}
	inChange := &opIDSet{sorted: make([]crdt.OpID, 0, len(ch.Ops))} // merged or quarantined earlier in this change
	var refused refusedSummaries
	perCode := map[api.Code]int{}
	// d.accepted is ch.Ops[:len(d.accepted)], not a copy, as long as
	// every op so far was accepted (the usual change).
	alias := true
	nextRun := 0 // runs[nextRun:] start at or after the current op
	for i := 0; i < len(ch.Ops); i++ {
		op := &ch.Ops[i]
		ref := pre[i]
		if cv.enter(ch.Ops, i, runs, nextRun) {
			if err := a.startRun(cv, ch.Ops, i, runs, &nextRun); err != nil {
				return d, err
			}
		}
		if ref == nil {
			if ref, err = a.checkOp(cv, op, inChange, false, val[i]); err != nil {
				return d, err
			}
			if ref == nil {
				if ref, err = a.clinicalCheck(cv, op, c.Replica, c.Role); err != nil {
					return d, err
				}
			}
		}
		if r := &cv.run; r.cand != nil {
			if err := a.takeRun(cv, ch.Ops, i, ref == nil); err != nil {
				return d, err
			}
		}
		if ref != nil && ref.duplicate {
			continue // idempotent: already merged, with the same content
		}
		if ref == nil {
			var rf error
			if cv.run.use == nil {
				if rf, err = a.queue(cv, op); err != nil {
					return d, err
				}
			} // else merged ahead: the run's ops pass the queue's checks
			if rf == nil {
				inChange.add(op.ID)
				cv.claim(op)
				end := i + 1
				if u := cv.run.use; u != nil && u.run.start == i {
					// The run merged ahead is taken at its first op: the
					// rest of it is accepted in one go as far as the
					// checks left for its ops pass (acceptRun); the slow
					// path takes over at the first that does not.
					end = acceptRun(a, ch.Ops, pre, val, i+1, u.run.end, inChange)
				}
				if alias && len(d.accepted) == i {
					d.accepted = ch.Ops[:end:end]
				} else {
					if alias {
						d.accepted, alias = slices.Clip(d.accepted), false
					}
					d.accepted = append(d.accepted, ch.Ops[i:end]...)
				}
				i = end - 1
				continue
			}
			ref = &refusal{code: api.CodeInvalidOp, detail: rf.Error()}
			if errors.Is(rf, errRecordTooLarge) {
				ref.code = api.CodeRecordTooLarge
			}
		}
		switch {
		case ref.quarantined:
			w, err := a.fitQuarantine(cv, store.QuarantineEntry{
				Op: *op, Author: c.User, Replica: c.Replica, Seq: ch.Seq, Code: string(ref.code), Reason: ref.detail, Reapplicable: true,
			})
			if err != nil {
				return d, err
			}
			if w != nil {
				// Held back: the record's causal context must keep saying
				// so once later ops of this device are merged (see reapply).
				inChange.add(op.ID)
				cv.claim(op)
				d.held = append(d.held, *w)
				if cv.held == nil {
					cv.held = map[recRef]bool{}
				}
				cv.held[refOf(op)] = true
			} else {
				ref = &refusal{code: api.CodeQuarantineFull, detail: fmt.Sprintf("%s: %s; not kept: this device's or team's quarantine quota is used up", ref.code, ref.detail)}
			}
		case ref.code != api.CodeRecordErased:
			// Refused ops are kept as a summary per code, never as their
			// values. An op for an erased record is not kept at all:
			// keeping it would store again what the erasure removed.
			refused.add(op, ref.code, ref.detail)
		}
		// A flood of ops refused for one reason gets its detail a few
		// times, not once per op: the reply stays a small multiple of
		// the op count, not of the detail text.
		detail := ref.detail
		if perCode[ref.code]++; perCode[ref.code] > maxDetailsPerCode {
			detail = ""
		}
		res.Ops = append(res.Ops, api.OpResult{Index: i, Code: ref.code, Detail: detail, Quarantined: ref.quarantined})
	}
	// The summaries, as far as the device's quota allows (a summary that
	// does not fit is dropped: the reply still tells the device).
	for _, code := range refused.order {
		q := refused.by[code]
		q.Author, q.Replica, q.Seq = c.User, c.Replica, ch.Seq
		w, err := a.fitQuarantine(cv, *q)
		if err != nil {
			return d, err
		}
		if w != nil {
			d.summaries = append(d.summaries, *w)
		}
	}
	for _, k := range cv.order {
		if b := cv.batches[k]; b.Len() > 0 {
			d.batches = append(d.batches, b)
		}
	}
	cv.endRun()
	if len(cv.sizes)+len(cv.built) > 0 {
		d.sizes = make(map[string]recSize, len(cv.sizes)+len(cv.built))
		for k, s := range cv.sizes {
			d.sizes[string(store.RecordKey(k[0], k[1], k[2]))] = *s
		}
		for _, u := range cv.built {
			if u != nil {
				d.built = append(d.built, *u)
				d.sizes[string(store.RecordKey(u.rec.Team, u.rec.Collection, u.rec.ID))] = u.run.sz.clone()
			}
		}
	}
	return d, nil
}

// startRun is called as the run of ops[i]'s record starts. A record whose
// run merged ahead was taken earlier in the change is queued the usual
// way from now on (its ops first); the run merged ahead for these ops, if
// any, becomes the candidate takeRun decides on.
func (a *admission) startRun(v *changeView, ops []crdt.Op, i int, runs []newRun, next *int) error {
	k := v.run.ref
	if at, ok := v.builtAt[k]; ok {
		u := v.built[at]
		v.built[at] = nil
		delete(v.builtAt, k)
		if err := a.queueRun(v, ops, u.run.start, u.run.end); err != nil {
			return err
		}
	}
	for *next < len(runs) && runs[*next].start < i {
		*next++
	}
	if *next < len(runs) && runs[*next].start == i && runs[*next].end == v.run.next {
		v.run.cand = &runs[*next]
	}
	return nil
}

// takeRun decides, at op i of a run with a candidate merged ahead,
// whether admission goes on taking the run as merged. At the run's first
// op it takes it if the op is accepted and the view holds the record
// blank, as a new record's, untouched by the change so far. At a later
// op that is not accepted it stops: the ops accepted before are queued
// the usual way, and so is the rest of the run.
func (a *admission) takeRun(v *changeView, ops []crdt.Op, i int, accepted bool) error {
	r := &v.run
	if r.use == nil {
		nr := r.cand
		r.cand = nil
		if !accepted || i != nr.start {
			return nil
		}
		if _, ok := v.sizes[r.ref]; ok {
			return nil
		}
		if _, ok := v.batches[r.ref]; ok {
			return nil
		}
		if v.held[r.ref] {
			// An op of the record held earlier in the change is marked
			// skipped on the record's state before the change's ops are
			// merged (applyChange); on a state merged ahead, whose clock
			// has passed it, the mark would be lost (crdt.Record.Skip).
			return nil
		}
		op := &ops[i]
		rec, err := v.Record(op.Team, op.Collection, op.Record)
		if err != nil || !rec.IsEmpty() {
			return err
		}
		sz, err := v.Size(op.Team, op.Collection, op.Record)
		if err != nil || sz.total != newRecordSize(op.Team, op.Collection, op.Record) || len(sz.fields) > 0 {
			return err
		}
		r.use = &builtUse{run: nr, rec: rec}
		r.cand = nr
		return nil
	}
	if accepted {
		return nil
	}
	u := r.use
	r.use, r.cand = nil, nil
	return a.queueRun(v, ops, u.run.start, i)
}

// acceptRun accepts ops[from:end], the rest of a run merged ahead that
// admission took at its first op (before from, see takeRun), and returns
// the end of the ops it accepted: all of them, or up to the first whose
// checks might refuse it, which admitChangeRuns then checks the usual
// way. It adds the IDs of the ops accepted to inChange.
//
// Of the checks admitChangeRuns runs on such an op, only two can refuse
// it, and acceptRun runs them: its ID used earlier in the change, and
// its clock skew. The others pass by what taking the run established:
// the op has no stateless refusal, no validator error and no pred (so
// no unknown pred and no clinical check: mergeRun merges only such ops,
// and acceptRun hands any other back); its record is the run's, owned by
// the op's own team since the run's first op claimed it (no wrong_team,
// no purge marker read), and blank in the view (stateHas false: nothing
// merged under its ID); takeRun goes on taking the run while its ops are
// accepted, and the run's ops pass the queue's checks (merged ahead from
// the same blank state). The reference tests (admitref_prop_test.go)
// hold the decisions to admission without runs merged ahead.
func acceptRun(a *admission, ops []crdt.Op, pre []*refusal, val []error, from, end int, inChange *opIDSet) int {
	for j := from; j < end; j++ {
		op := &ops[j]
		if pre[j] != nil || val[j] != nil || len(op.Pred) > 0 {
			return j
		}
		if a.skew != nil && a.skew(op.ID.Time, a.now) != nil {
			return j
		}
		// The usual op: its ID is past every ID of the change so far, so
		// not among them, and goes at the end of the sorted IDs (has and
		// add, without their calls).
		if n := len(inChange.sorted); len(inChange.other) == 0 && (n == 0 || inChange.sorted[n-1].Compare(op.ID) < 0) {
			inChange.sorted = append(inChange.sorted, op.ID)
			continue
		}
		if inChange.has(op.ID) {
			return j
		}
		inChange.add(op.ID)
	}
	return end
}

// queueRun queues ops[start:end], accepted as merged ahead, the usual way;
// each passes (the run merged ahead from the same blank state).
func (a *admission) queueRun(v *changeView, ops []crdt.Op, start, end int) error {
	for j := start; j < end; j++ {
		rf, err := a.queue(v, &ops[j])
		if err != nil {
			return err
		}
		if rf != nil {
			return fmt.Errorf("op %s merged ahead is refused when queued: %w", ops[j].ID, rf)
		}
	}
	return nil
}

// newRecordSize is the size estimate of a record not stored (see
// checkSize).
func newRecordSize(team, coll, id string) int { return 16 + len(team) + len(coll) + len(id) }

// newRun is a run of a change's consecutive ops on one record, merged
// ahead into a blank state (mergeAhead): what admission would queue and
// the committer merge for them if the record turns out to be new. It is
// never changed once made: a transaction that takes it copies rec before
// changing it (recState.shared), so a retry of the commit can take it
// again.
//
// A run of a record's first change as a device writes it (each field
// written once, no pred: crdt.AppendNewState) has its state encoded
// straight from its ops, and rec is nil: the Record is built from ops
// (record) only if the transaction reads the record again, which a new
// record's first push never does.
type newRun struct {
	start, end int          // the ops: ch.Ops[start:end]
	ops        []crdt.Op    // ch.Ops[start:end]
	rec        *crdt.Record // a blank record with the ops merged; nil: not built (see above)
	state      []byte       // crdt.MarshalRecord of that record
	// value, when not nil, is the record's r/ value with state in it:
	// store.RecordValueHeaderLen bytes, then state (value[len-of-header:]
	// is state). The transaction that stores the run writes the header,
	// its own change time, over what the one before wrote
	// (store.PutRecordValueHeader in txnState.flush) and stores value
	// without a copy. That is safe because a run is stored by one
	// transaction at a time: a request is in one commit attempt at a time,
	// tried again (a split, a failed commit) only once the attempt before
	// has ended, and a store is done with a value once the transaction
	// that set it has ended (store.Tx.Set).
	value    []byte
	conflict bool     // hasConflict(rec)
	terms    []string // recordTerms(rec)
	// sz is checkSize's estimate after the ops, from a new record's.
	// Built from ops alone (rec nil), it has no per-field estimates: each
	// field's is its state's encodedFieldSize, which checkSize takes for
	// a field it has none for (a new record's field is one entry, its
	// op's value, so the two are equal).
	sz recSize
}

// record returns a new Record holding the run's state, for the caller
// to change: a copy of rec, or for a run encoded from its ops alone
// (rec nil) the ops merged into a blank record, as mergeRun merges them.
func (nr *newRun) record() (*crdt.Record, error) {
	if nr.rec != nil {
		return nr.rec.Clone(), nil
	}
	op := &nr.ops[0]
	rec := crdt.NewRecord(op.Team, op.Collection, op.Record)
	b := crdt.NewBatch(rec)
	for i := range nr.ops {
		if err := b.Add(&nr.ops[i]); err != nil {
			// Not reached: crdt.AppendNewState took the ops, and Add
			// refuses none of that shape (TestAppendNewStateMatches).
			return nil, fmt.Errorf("op %s of a run merged ahead refused when its record is built: %w", nr.ops[i].ID, err)
		}
	}
	b.Flush()
	return rec, nil
}

// minAheadRun is the op count from which a run is merged ahead.
const minAheadRun = 4

// mergeAhead merges, each into a blank record, the runs of ch's ops that
// look like a new record's: at least minAheadRun ops, each passing
// precheck (pre) and the validator (val) and naming no pred. It reads no
// state, so a push runs it before queuing the request (prechecks): the
// single committer then only checks each op of such a run, and takes the
// state as merged when the record is new and every op passes (see
// admitChangeRuns), instead of queuing and merging them itself. A run
// the record's bounds or field types refuse is left out.
//
// The r/ values of the runs encoded from their ops (newRun.value) are
// carved from one buffer per change (slab), sized for the rest of the
// change when the first of them is encoded, instead of one allocation
// per record.
func mergeAhead(b Bounds, ch *api.Change, pre []*refusal, val []error) []newRun {
	var runs []newRun
	var slab []byte
	for i := 0; i < len(ch.Ops); {
		end := runEnd(ch.Ops, i)
		if nr, ok := mergeRun(b, ch.Ops, i, end, pre, val, &slab); ok {
			if runs == nil {
				runs = make([]newRun, 0, len(ch.Ops)/(end-i)+1)
			}
			runs = append(runs, nr)
		}
		i = end
	}
	return runs
}

// valueEstimate is about the length of the r/ value of a new record
// holding ops as crdt.AppendNewState encodes it: the header, the
// record's names and clock, and per op its field's entry. From above for
// ops of one replica, the usual push; a buffer it sizes only needs to be
// grown otherwise.
func valueEstimate(ops []crdt.Op) int {
	op := &ops[0]
	n := store.RecordValueHeaderLen + 96 + len(op.Team) + len(op.Collection) + len(op.Record)
	for j := range ops {
		n += 28 + len(ops[j].Field) + len(ops[j].Value)
	}
	return n
}

// slabSize sizes a buffer for the r/ values of the runs merged ahead
// from the op at start to the end of ops: each record's run's
// valueEstimate.
func slabSize(ops []crdt.Op, start int) int {
	n := 0
	for i := start; i < len(ops); {
		end := runEnd(ops, i)
		n += valueEstimate(ops[i:end])
		i = end
	}
	return n
}

func mergeRun(b Bounds, ops []crdt.Op, start, end int, pre []*refusal, val []error, slab *[]byte) (newRun, bool) {
	if end-start < minAheadRun {
		return newRun{}, false
	}
	for j := start; j < end; j++ {
		if pre[j] != nil || val[j] != nil || len(ops[j].Pred) > 0 {
			return newRun{}, false
		}
	}
	run := ops[start:end:end]
	op := &ops[start]
	// The r/ value's header, then the state, in the change's slab (see
	// mergeAhead): crdt.AppendNewState grows it into a buffer of its own
	// if the state does not fit, and leaves it as it was if it does not
	// take the ops.
	if need := valueEstimate(run); cap(*slab)-len(*slab) < need {
		*slab = make([]byte, 0, max(need, slabSize(ops, start)))
	}
	sl := *slab
	if value, ok := crdt.AppendNewState(sl[len(sl):len(sl)+store.RecordValueHeaderLen], run); ok {
		if len(value) <= cap(sl)-len(sl) && &value[0] == &sl[:len(sl)+1][len(sl)] {
			*slab = sl[:len(sl)+len(value)] // encoded in the slab
		}
		// Every op names a field of its own: checkSize's arithmetic for a
		// new field, with no per-field map (see newRun.sz).
		total := newRecordSize(op.Team, op.Collection, op.Record)
		for j := range run {
			fs := len(run[j].Field) + fieldBytes
			total += fs
			cost := opCost(&run[j])
			if total+cost > b.MaxRecordBytes || fs+cost > b.MaxFieldBytes {
				return newRun{}, false
			}
			total += cost
		}
		value = value[:len(value):len(value)]
		return newRun{start: start, end: end, ops: run, value: value, state: value[store.RecordValueHeaderLen:],
			terms: newRecordTerms(run), sz: recSize{total: total}}, true
	}
	rec := crdt.NewRecord(op.Team, op.Collection, op.Record)
	sz := recSize{total: newRecordSize(op.Team, op.Collection, op.Record), fields: make(map[string]int, end-start)}
	batch := crdt.NewBatch(rec)
	for j := start; j < end; j++ {
		if checkSize(b, &sz, rec, &ops[j]) != nil || batch.Add(&ops[j]) != nil {
			return newRun{}, false
		}
	}
	batch.Flush()
	state, err := crdt.MarshalRecord(rec)
	if err != nil {
		return newRun{}, false
	}
	return newRun{start: start, end: end, ops: run, rec: rec, state: state, conflict: hasConflict(rec), terms: recordTerms(rec), sz: sz}, true
}

// queue checks an op that passed every rule against the record's bounds
// and field types and queues it in the change's batch for its record. A
// non-nil refusal says why it cannot be merged.
func (a *admission) queue(v *changeView, op *crdt.Op) (refusal error, err error) {
	rec, err := v.Record(op.Team, op.Collection, op.Record)
	if err != nil {
		return nil, err
	}
	sz, err := v.size(op)
	if err != nil {
		return nil, err
	}
	if err := checkSize(a.bounds, sz, rec, op); err != nil {
		return err, nil
	}
	if err := v.batch(op, rec).Add(op); err != nil {
		return err, nil
	}
	return nil, nil
}

// checkOp runs the checks that depend on stored state: record owner,
// purge marker, duplicate op ID, preds, clock skew and the validator.
// Push and Reapply share it.
//
// verdict is the Validator's error for op when the caller ran it already
// (a push, see prechecks); reapply passes nil and the validator runs here.
func (a *admission) checkOp(v admissionView, op *crdt.Op, inChange *opIDSet, reapply bool, verdict error) (*refusal, error) {
	owner, err := v.Owner(op.Collection, op.Record)
	if err != nil {
		return nil, err
	}
	if owner != "" && owner != op.Team {
		return &refusal{code: api.CodeWrongTeam, detail: fmt.Sprintf("%s/%s belongs to another team", op.Collection, op.Record)}, nil
	}
	if owner == "" {
		// An erased record has no owner and a purge marker; it is never
		// created again.
		if erased, err := v.Erased(op.Collection, op.Record); err != nil {
			return nil, err
		} else if erased {
			return &refusal{code: api.CodeRecordErased, detail: fmt.Sprintf("%s/%s was erased", op.Collection, op.Record)}, nil
		}
	}
	if inChange.has(op.ID) {
		return &refusal{code: api.CodeInvalidOp, detail: fmt.Sprintf("op id %s used twice", op.ID)}, nil
	}
	rec, err := v.Record(op.Team, op.Collection, op.Record)
	if err != nil {
		return nil, err
	}
	// A write, add or append leaves its ID in the field state (live or
	// overwritten), so the state says whether it is already merged. A
	// remove leaves no trace; merging one twice changes nothing. A
	// re-applied op may sit among the overwritten IDs (a later op named it
	// in pred) without having been merged, and the quarantine entry it
	// comes from guarantees it is applied once, so reapply skips this.
	if !reapply && op.Kind != crdt.KindRemove && stateHas(rec, op.Field, op.ID) {
		same, err := sameAsMerged(v, op, rec)
		if err != nil {
			return nil, err
		}
		if same {
			return &refusal{duplicate: true}, nil
		}
		return &refusal{code: api.CodeOpIDReused, detail: fmt.Sprintf("op id %s is already used by an op with other content", op.ID)}, nil
	}
	for _, p := range op.Pred {
		if inChange.has(p) || stateHas(rec, op.Field, p) {
			continue
		}
		if q, err := v.Quarantined(p); err != nil {
			return nil, err
		} else if !q {
			return &refusal{code: api.CodeUnknownPred, detail: fmt.Sprintf("pred %s is not on the server", p)}, nil
		}
	}
	if a.skew != nil {
		if err := a.skew(op.ID.Time, a.now); err != nil {
			return &refusal{code: api.CodeClockSkew, detail: err.Error(), quarantined: true}, nil
		}
	}
	if verdict == nil && reapply && a.validator != nil {
		verdict = a.validator.ValidateOp(op)
	}
	if verdict != nil {
		return &refusal{code: validatorCode(verdict), detail: verdict.Error(), quarantined: true}, nil
	}
	return nil, nil
}

// sameAsMerged reports whether op, whose ID the record's state already
// holds, is an exact copy of the op merged under that ID (a device
// re-sending it) rather than a different op reusing the ID (a buggy or
// malicious device), which would make replicas keep different values
// under one ID. A live entry with another value answers at once;
// otherwise the merged op is looked up in the record's history
// (MergedOp; this path runs only for repeated IDs, so the history read
// does not cost ordinary pushes). Reuse is detected per record, where it
// would break convergence; there is no per-op index across records by
// design (see package store). When the original is no longer in the log
// it cannot be compared and the op is taken as a copy.
func sameAsMerged(v admissionView, op *crdt.Op, rec *crdt.Record) (bool, error) {
	if f := rec.Fields[op.Field]; f != nil {
		if i, ok := slices.BinarySearchFunc(f.Entries, op.ID, func(e crdt.Entry, id crdt.OpID) int { return e.ID.Compare(id) }); ok {
			if !bytes.Equal(f.Entries[i].Value, op.Value) {
				return false, nil
			}
		}
	}
	m, found, err := v.MergedOp(op.Team, op.Collection, op.Record, op.ID)
	if err != nil || !found {
		return true, err
	}
	return m.Team == op.Team && m.Collection == op.Collection && m.Record == op.Record &&
		m.Field == op.Field && m.Kind == op.Kind && bytes.Equal(m.Value, op.Value) &&
		slices.Equal(m.Pred, op.Pred), nil
}

// stateHas reports whether the record knows id (see crdt.Record.Has):
// applied (live or since overwritten), or named in a pred before it
// arrived; for a delete's pred, which spans fields, in any field.
func stateHas(r *crdt.Record, field string, id crdt.OpID) bool {
	if r.IsEmpty() {
		return false // a new record's: nothing applied, named or held
	}
	if r.Has(field, id) {
		return true
	}
	if field != crdt.DeletedField {
		return false
	}
	for name := range r.Fields {
		if r.Has(name, id) {
			return true
		}
	}
	return false
}

// validatorCode maps a validator error to an op code: unknown collections
// and fields are unknown_field, everything else (wrong type, bad value, or
// an error from a validator that is not a *schema.Schema) invalid_value.
func validatorCode(err error) api.Code {
	if errors.Is(err, schema.ErrUnknownField) || errors.Is(err, schema.ErrUnknownCollection) {
		return api.CodeUnknownField
	}
	return api.CodeInvalidValue
}
