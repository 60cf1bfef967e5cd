package client

// The rules of this file add to the reply plan (reply.go) what a reply
// removes from the device besides the records it names: the residue of
// records erased on the server, what lies outside the scope the server
// states, and the local copy of a record the server refused a clinical
// write for (restated). Like planReply they are pure: they read local state
// through residueReader and return writes in replyWrites.

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// keyScope holds the last scope applied (msgpack api.Scope), so that a
// reply stating the same scope costs no scan.
var keyScope = []byte("m/scope")

// outboxGroup is one stored outbox entry: a sealed change (c/) or an
// unsealed write group (o/), with its key.
type outboxGroup struct {
	Key    []byte
	Sealed bool
	Change api.Change
}

// storedRejection is one stored Rejection with its key.
type storedRejection struct {
	Key []byte
	Rejection
}

// keyWrite sets Key to Value, or deletes it when Value is nil.
type keyWrite struct {
	Key   []byte
	Value []byte
}

// residueReader is the local state the residue rules read, beyond
// localReader. txnReader implements it; a reader that does not skips
// the rules.
type residueReader interface {
	localReader
	// outbox returns every sealed change and unsealed group, sealed first,
	// in key order.
	outbox() ([]outboxGroup, error)
	// rejections returns the stored rejections.
	rejections() ([]storedRejection, error)
	// recordRefs returns the refs of every stored record.
	recordRefs() ([]Ref, error)
	// scope returns the stored scope (keyScope), or nil.
	scope() ([]byte, error)
}

// planRestated returns the state a device must hold for a record the
// server restated (api.SyncResponse.Replace) after refusing one of its
// writes by a clinical rule: the server's state plus this replica's own
// ops still in the outbox (not acknowledged by this reply), re-applied.
// The refused op, applied locally when it was written, so no longer hides
// the values the server kept.
func planRestated(w *replyWrites, rd localReader, raw crdt.RecordBytes) (*crdt.Record, error) {
	rec, err := raw.Record()
	if err != nil {
		return nil, fmt.Errorf("restated record: %w", err)
	}
	rr, ok := rd.(residueReader)
	if !ok {
		return rec, nil
	}
	groups, err := rr.outbox()
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		if g.Sealed && slices.Contains(w.Acked, g.Change.Seq) {
			continue
		}
		for i := range g.Change.Ops {
			op := &g.Change.Ops[i]
			if op.Team == rec.Team && op.Collection == rec.Collection && op.Record == rec.ID {
				if err := rec.Apply(op); err != nil {
					return nil, fmt.Errorf("re-apply outbox op %s: %w", op.ID, err)
				}
			}
		}
	}
	return rec, nil
}

// planResidue adds the erasure and scope rules to the plan.
func planResidue(w *replyWrites, rd localReader, resp *api.SyncResponse) error {
	rr, ok := rd.(residueReader)
	if !ok {
		return nil
	}
	if err := planErasure(w, rr, resp.Purged); err != nil {
		return err
	}
	return planScope(w, rr, resp.Scope)
}

// planErasure removes every trace of records erased on the server beyond
// their record keys: their ops in the outbox (unsealed groups and sealed
// changes; a sealed change may lose ops but keeps its seq, which the
// server dedupes on whatever it carries, and an op for an erased record
// would only be refused) and their stored rejections. Rejections this
// reply reports for them are handed to the app without their values and
// not stored.
func planErasure(w *replyWrites, rr residueReader, purged []api.RecordRef) error {
	if len(purged) == 0 {
		return nil
	}
	gone := map[Ref]bool{}
	for _, p := range purged {
		gone[p] = true
	}
	hit := func(op *crdt.Op) bool { return gone[Ref{Team: op.Team, Collection: op.Collection, ID: op.Record}] }
	groups, err := rr.outbox()
	if err != nil {
		return err
	}
	for _, g := range groups {
		if g.Sealed && slices.Contains(w.Acked, g.Change.Seq) {
			continue // leaves the outbox anyway
		}
		n := len(g.Change.Ops)
		ops := slices.DeleteFunc(slices.Clone(g.Change.Ops), func(op crdt.Op) bool { return hit(&op) })
		if len(ops) == n {
			continue
		}
		w.DroppedOps += n - len(ops)
		if len(ops) == 0 && !g.Sealed {
			w.Outbox = append(w.Outbox, keyWrite{Key: g.Key})
			continue
		}
		c := api.Change{Seq: g.Change.Seq, Ops: ops}
		b, err := encodeChange(&c)
		if err != nil {
			return err
		}
		w.Outbox = append(w.Outbox, keyWrite{Key: g.Key, Value: b})
	}
	return dropRejections(w, rr, func(rj *Rejection) bool { return hit(&rj.Op) }, func(rj *Rejection) {
		rj.Op.Value, rj.Detail = nil, "record erased"
	})
}

// planScope drops what lies outside the scope the server states: every
// record of another team, and the rejections of such records, except
// those refused forbidden_team. Those are this device's unsynced work for
// a team it has left, handed over: the server refused it as it refuses
// any op outside the scope, and it stays listed by Rejected until the app
// dismisses it, so nothing the worker typed vanishes unseen. Outbox ops
// for such teams are not dropped here: they are pushed like any other,
// refused, and so become such rejections. A nil scope (an older server)
// or the scope already applied changes nothing.
func planScope(w *replyWrites, rr residueReader, scope *api.Scope) error {
	if scope == nil {
		return nil
	}
	teams := slices.Clone(scope.Teams)
	slices.Sort(teams)
	teams = slices.Compact(teams)
	enc, err := msgpack.Marshal(&api.Scope{Teams: teams})
	if err != nil {
		return err
	}
	if old, err := rr.scope(); err != nil {
		return err
	} else if bytes.Equal(old, enc) {
		return nil
	}
	w.Scope = enc
	in := func(team string) bool { _, ok := slices.BinarySearch(teams, team); return ok }
	refs, err := rr.recordRefs()
	if err != nil {
		return err
	}
	for _, ref := range refs {
		if !in(ref.Team) {
			w.OutOfScope = append(w.OutOfScope, ref)
			w.Changed = append(w.Changed, ref)
		}
	}
	w.Records = slices.DeleteFunc(w.Records, func(rw recordWrite) bool { return !in(rw.Ref.Team) })
	return dropRejections(w, rr, func(rj *Rejection) bool { return !in(rj.Op.Team) && rj.Code != api.CodeForbiddenTeam }, nil)
}

// dropRejections plans the deletion of stored rejections matching drop,
// and moves this reply's matching rejections to Unstored (reported to the
// app, after scrub, but not stored).
func dropRejections(w *replyWrites, rr residueReader, drop func(*Rejection) bool, scrub func(*Rejection)) error {
	stored, err := rr.rejections()
	if err != nil {
		return err
	}
	for i := range stored {
		if drop(&stored[i].Rejection) {
			w.DropRejections = append(w.DropRejections, stored[i].Key)
		}
	}
	w.Rejections = slices.DeleteFunc(w.Rejections, func(rj Rejection) bool {
		if !drop(&rj) {
			return false
		}
		if scrub != nil {
			scrub(&rj)
		}
		w.Unstored = append(w.Unstored, rj)
		return true
	})
	return nil
}

// writeResidue makes the residue writes of w in txn, after the rest of the
// reply's writes.
func writeResidue(txn *badger.Txn, w *replyWrites) error {
	for _, kw := range w.Outbox {
		var err error
		if kw.Value == nil {
			err = txn.Delete(kw.Key)
		} else {
			err = txn.Set(kw.Key, kw.Value)
		}
		if err != nil {
			return err
		}
	}
	for _, k := range w.DropRejections {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	for _, ref := range w.OutOfScope {
		if err := txn.Delete(recordKey(ref)); err != nil {
			return err
		}
	}
	if w.Scope != nil {
		return txn.Set(keyScope, w.Scope)
	}
	return nil
}

func (t txnReader) outbox() ([]outboxGroup, error) {
	var out []outboxGroup
	for _, prefix := range [][]byte{prefChange, prefPending} {
		it := t.txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		for it.Rewind(); it.Valid(); it.Next() {
			g := outboxGroup{Key: it.Item().KeyCopy(nil), Sealed: bytes.Equal(prefix, prefChange)}
			err := it.Item().Value(func(v []byte) error {
				c, err := decodeChange(v)
				if err == nil {
					g.Change = *c
				}
				return err
			})
			if err != nil {
				it.Close()
				return nil, err
			}
			out = append(out, g)
		}
		it.Close()
	}
	return out, nil
}

func (t txnReader) rejections() ([]storedRejection, error) {
	var out []storedRejection
	it := t.txn.NewIterator(badger.IteratorOptions{Prefix: prefReject, PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		sr := storedRejection{Key: it.Item().KeyCopy(nil)}
		if err := it.Item().Value(func(v []byte) error { return msgpack.Unmarshal(v, &sr.Rejection) }); err != nil {
			return nil, fmt.Errorf("stored rejection: %w", err)
		}
		out = append(out, sr)
	}
	return out, nil
}

func (t txnReader) recordRefs() ([]Ref, error) {
	var out []Ref
	it := t.txn.NewIterator(badger.IteratorOptions{Prefix: prefRecord})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if ref, ok := parseRecordKey(it.Item().Key()); ok {
			out = append(out, ref)
		}
	}
	return out, nil
}

func (t txnReader) scope() ([]byte, error) { return get(t.txn, keyScope) }

// parseRecordKey splits r/<team>\x00<collection>\x00<id>.
func parseRecordKey(k []byte) (Ref, bool) {
	parts := strings.SplitN(string(k[len(prefRecord):]), "\x00", 3)
	if len(parts) != 3 {
		return Ref{}, false
	}
	return Ref{Team: parts[0], Collection: parts[1], ID: parts[2]}, true
}
