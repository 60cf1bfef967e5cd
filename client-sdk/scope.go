package client

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

// applyScope drops what lies outside the scope the server stated: every
// record of another team, and the rejections of such records, except those
// refused forbidden_team. Those are this device's unsynced work for a team
// it has left, handed over (the server refused it, as it refuses any op
// outside the scope): they stay listed by Rejected until the app dismisses
// them, so nothing the worker typed vanishes unseen. Outbox ops for such
// teams are not dropped here: they are pushed like any other, refused, and
// so become such rejections. It runs in the reply's transaction; a nil
// scope (an older server) changes nothing.
func (r *Replica) applyScope(txn *badger.Txn, scope *api.Scope, out *applied) error {
	if scope == nil {
		return nil
	}
	teams := slices.Clone(scope.Teams)
	slices.Sort(teams)
	enc, err := msgpack.Marshal(&api.Scope{Teams: teams})
	if err != nil {
		return err
	}
	if old, err := get(txn, keyScope); err != nil {
		return err
	} else if bytes.Equal(old, enc) {
		return nil
	}
	in := func(team string) bool { _, ok := slices.BinarySearch(teams, team); return ok }
	var drop [][]byte
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefRecord})
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		ref, ok := parseRecordKey(k)
		if ok && !in(ref.Team) {
			drop = append(drop, it.Item().KeyCopy(nil))
			out.changed = append(out.changed, ref)
		}
	}
	it.Close()
	err = eachRejection(txn, func(key []byte, rj *Rejection) error {
		if !in(rj.Op.Team) && rj.Code != api.CodeForbiddenTeam {
			drop = append(drop, key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range drop {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	if n := len(out.changed); n > 0 {
		r.log.Info("records outside the device's scope dropped", "teams", teams)
	}
	return txn.Set(keyScope, enc)
}

// purgeResidue removes every trace of records erased on the server, beyond
// their record keys: their ops in the outbox (unsealed groups and sealed
// changes; a sealed change may lose ops but keeps its seq, which the
// server dedupes on whatever it carries) and their rejections. Rejections
// this reply reported for them are returned to the app without values.
func (r *Replica) purgeResidue(txn *badger.Txn, purged []api.RecordRef, out *applied) error {
	if len(purged) == 0 {
		return nil
	}
	gone := map[Ref]bool{}
	for _, p := range purged {
		gone[p] = true
	}
	hit := func(op *crdt.Op) bool { return gone[Ref{Team: op.Team, Collection: op.Collection, ID: op.Record}] }
	for _, prefix := range [][]byte{prefPending, prefChange} {
		type rewrite struct {
			key []byte
			c   *api.Change
		}
		var rw []rewrite
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		for it.Rewind(); it.Valid(); it.Next() {
			var c *api.Change
			if err := it.Item().Value(func(v []byte) (err error) { c, err = decodeChange(v); return err }); err != nil {
				it.Close()
				return err
			}
			if slices.ContainsFunc(c.Ops, func(op crdt.Op) bool { return hit(&op) }) {
				rw = append(rw, rewrite{it.Item().KeyCopy(nil), c})
			}
		}
		it.Close()
		for _, w := range rw {
			n := len(w.c.Ops)
			w.c.Ops = slices.DeleteFunc(w.c.Ops, func(op crdt.Op) bool { return hit(&op) })
			out.dropped += n - len(w.c.Ops)
			if len(w.c.Ops) == 0 && bytes.Equal(prefix, prefPending) {
				if err := txn.Delete(w.key); err != nil {
					return err
				}
				continue
			}
			b, err := encodeChange(w.c)
			if err != nil {
				return err
			}
			if err := txn.Set(w.key, b); err != nil {
				return err
			}
		}
	}
	var drop [][]byte
	err := eachRejection(txn, func(key []byte, rj *Rejection) error {
		if hit(&rj.Op) {
			drop = append(drop, key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range drop {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	for i := range out.rejected {
		if hit(&out.rejected[i].Op) {
			out.rejected[i].Op.Value, out.rejected[i].Detail = nil, "record erased"
		}
	}
	return nil
}

// eachRejection calls fn with every stored rejection and its key.
func eachRejection(txn *badger.Txn, fn func(key []byte, rj *Rejection) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefReject, PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var rj Rejection
		if err := it.Item().Value(func(v []byte) error { return msgpack.Unmarshal(v, &rj) }); err != nil {
			return fmt.Errorf("stored rejection: %w", err)
		}
		if err := fn(it.Item().KeyCopy(nil), &rj); err != nil {
			return err
		}
	}
	return nil
}

// parseRecordKey splits r/<team>\x00<collection>\x00<id>.
func parseRecordKey(k []byte) (Ref, bool) {
	parts := strings.SplitN(string(k[len(prefRecord):]), "\x00", 3)
	if len(parts) != 3 {
		return Ref{}, false
	}
	return Ref{Team: parts[0], Collection: parts[1], ID: parts[2]}, true
}
